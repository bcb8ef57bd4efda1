"""Helpers shared by the tests: registry models at small sizes, a tiny hand-built model, one training step."""
import re

import numpy as np

from mobilecnn import blocks
from mobilecnn.compat import keras, tf
from mobilecnn.quantization import producers
from mobilecnn.registry import create_model, get_card

SMALL = 64
WIDTH_KWARGS = ("alpha", "scale")
# EfficientNetB3, EfficientNetLite2, EfficientNetV2S ...: compound scalings of B0/Lite0/V2-B0's stage table.
COMPOUND_SCALING = re.compile(r"^(EfficientNet(?:Lite|V2)?)(?:B?\d|[SML])$")


def graph_key(name):
    """What decides a registry model's layer types and wiring: its builder and arguments other than scaling.

    Width variants (mobilenet_v2_0.35 ... _1.4, shufflenet_v1_g3_0.5 ... _2.0) differ only in channel counts, the
    EfficientNet compound scalings in channel counts, block repeats and resolution, and ShuffleNet V1 with 2-8
    groups in the grouped convs' group count, not in layer kinds. (Extra repeats can still add wiring: in
    EfficientNet-B1 a depthwise conv takes a batch norm's output directly; see `wiring_motifs`.)
    """
    card = get_card(name)
    builder = COMPOUND_SCALING.sub(r"\1", card.constructor)
    kwargs = {k: v for k, v in card.kwargs.items() if k not in WIDTH_KWARGS}
    if "groups" in kwargs:  # ShuffleNet V1: 2-8 groups only change Conv2D(groups=); 1 group drops the shuffle
        kwargs["groups"] = min(kwargs["groups"], 2)
    return builder, tuple(sorted(kwargs.items()))


def split_by_graph(names):
    """(first name of each distinct graph, the other width variants), both in registry order."""
    seen, first, rest = set(), [], []
    for name in names:
        key = graph_key(name)
        (rest if key in seen else first).append(name)
        seen.add(key)
    return first, rest


# Registry models whose wiring motifs together cover those of one model per graph (split_by_graph): chosen greedily
# by new motifs per layer (QAT and a .keras reload take ~0.1 s per layer on two cores), then rid of the models the
# others cover. test_zoo_registry.py::test_motif_sample_covers_every_graph checks the cover under -m slow.
MOTIF_SAMPLE = [
    "efficientnet_lite0", "efficientnet_v2_b0", "mnasnet_small", "mobilenet_v2_0.35", "mobilenet_v3_large_0.75",
    "mobilenet_v3_small_minimalistic", "shufflenet_v1_g1_1.0", "shufflenet_v1_g2_1.0", "shufflenet_v2_0.5",
    "squeezenet_1.0",
]


def layer_kind(layer):
    """A layer's class and what else decides how TF-MOT quantizes it: groups, bias, ReLU cap, activation."""
    config = layer.get_config()
    kind = type(layer).__name__
    if config.get("groups", 1) > 1:
        kind += "/grouped"
    if config.get("use_bias") is False:
        kind += "/no_bias"
    if isinstance(layer, keras.layers.ReLU):
        kind += f"/max={config['max_value']}"
    if isinstance(layer, keras.layers.Activation):
        kind += f"/{config['activation']}"
    return kind


def wiring_motifs(model):
    """The model's local wiring: each layer's kind with the sorted kinds of its inputs, and every chain of three
    connected layers' kinds. TF-MOT's layout transforms and quantize configs match patterns of this reach
    (conv-BN-activation, add-ReLU, a concat's inputs)."""
    feeds = producers(model)
    kinds = {layer.name: layer_kind(layer) for layer in model.layers}
    motifs = set()
    for name, inputs in feeds.items():
        motifs.add((kinds[name], tuple(sorted(kinds[i] for i in inputs))))
        motifs.update((kinds[first], kinds[middle], kinds[name]) for middle in inputs for first in feeds[middle])
    return motifs


def small_model(name, size=SMALL, classes=10):
    """A registry model at a small size with seeded random weights (runs are reproducible)."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    return create_model(name, input_shape=(size, size, 3), classes=classes, classifier_activation=None)


def tiny_model():
    """32 px, 10 classes: conv-BN, one MBConv block and a dropout head; every kind of state a resume restores,
    built in well under a second (for the commands' tests, where the model is not what is tested)."""
    cfg = blocks.BuildConfig()
    inputs = keras.Input((32, 32, 3))
    x = blocks.conv_bn_act(inputs, 8, 3, 2, cfg=cfg, name="stem")
    x = blocks.inverted_residual(x, 8, expanded=16, cfg=cfg, name="block1")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(0.3, name="drop")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x), name="tiny")


def train_step(model, x, y, lr=0.05):
    """One plain SGD step; returns the trainable variables' values before the step."""
    before = [v.numpy().copy() for v in model.trainable_variables]
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
    grads = tape.gradient(loss, model.trainable_variables)
    for var, grad in zip(model.trainable_variables, grads):
        if grad is not None:
            var.assign_sub(lr * tf.convert_to_tensor(grad))
    return before


def trainable_count(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def print_motif_coverage():
    """The motif counts docs/pipelines.md quotes: the registry's, one model per graph's, MOTIF_SAMPLE's, and the
    models with motifs outside the sample."""
    from mobilecnn import list_models

    names = list_models()
    motifs = {name: wiring_motifs(small_model(name)) for name in names}
    sample = set().union(*(motifs[name] for name in MOTIF_SAMPLE))
    per_graph = set().union(*(motifs[name] for name in split_by_graph(names)[0]))
    print(f"wiring motifs: registry {len(set().union(*motifs.values()))}, one model per graph {len(per_graph)}, "
          f"MOTIF_SAMPLE {len(sample)}")
    for name in names:
        outside = sorted(motifs[name] - sample, key=str)
        if outside:
            print(f"{name}: {len(outside)} outside the sample, e.g. {outside[0]}")


if __name__ == "__main__":
    print_motif_coverage()
