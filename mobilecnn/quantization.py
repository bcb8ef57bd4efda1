"""QuantizeConfigs for the layer kit, the quantize scope, model annotation, and the QAT scheme.

TF-MOT's default registry rejects custom layers and `Multiply`. Two configs
cover them: data movement (shuffle, split) keeps its input's quantization
(NoOp), single-op arithmetic gets a fake-quant on its output (Output). A
third puts sigmoids on the int8 LOGISTIC's fixed grid (Logistic), a fourth
holds one range through each chain of ShuffleNet V2 concats (SharedRange),
and `scheme` corrects one of TF-MOT's layout transforms: the changes each make
the QAT model compute what the int8 file computes (docs/pipelines.md).
"""
import functools

from .compat import keras
from .layers import CUSTOM_LAYERS, AddConst, ChannelShuffle, ChannelSplit, GateMultiply, MulConst


@functools.lru_cache(maxsize=None)
def _tfq():
    import tensorflow_model_optimization as tfmot

    return tfmot.quantization.keras


def _config_classes():
    tfq = _tfq()

    class NoOpQuantizeConfig(tfq.QuantizeConfig):
        """Quantize nothing: the layer only moves data."""

        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return []

        def get_config(self):
            return {}

    class OutputQuantizeConfig(NoOpQuantizeConfig):
        """Fake-quantize the output, as the default registry does for Add."""

        def get_output_quantizers(self, layer):
            return [tfq.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

    class LogisticQuantizeConfig(NoOpQuantizeConfig):
        """Fake-quantize a sigmoid's output on the grid of TFLite's int8 LOGISTIC (scale 1/256, zero point
        -128, fixed by the kernel); TF-MOT's default leaves it float, so QAT trained a gate the int8 file
        rounds."""

        def get_output_quantizers(self, layer):
            return [tfq.quantizers.FixedQuantizer(num_bits=8, init_min=0.0, init_max=255 / 256, narrow_range=False)]

    class HeldRangeQuantizer(tfq.quantizers.MovingAverageQuantizer):
        """A MovingAverageQuantizer whose range training never moves (calibration sets it)."""

        def __call__(self, inputs, training, weights, **kwargs):
            return super().__call__(inputs, False, weights, **kwargs)

    class SharedRangeQuantizeConfig(NoOpQuantizeConfig):
        """Fake-quantize a concat's output with a held range, which calibration makes the same for every concat
        of its group (`range_sharing_concats`), so that the int8 file needs no requantize between them."""

        def get_output_quantizers(self, layer):
            return [HeldRangeQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

    classes = (NoOpQuantizeConfig, OutputQuantizeConfig, LogisticQuantizeConfig, SharedRangeQuantizeConfig)
    for cls in classes:
        keras.utils.register_keras_serializable("mobilecnn")(cls)
    return classes


@functools.lru_cache(maxsize=None)
def quantize_configs():
    """{name: class} of the project's QuantizeConfigs (created once, after TF-MOT is imported)."""
    return {cls.__name__: cls for cls in _config_classes()}


# Which config each custom layer gets.
LAYER_CONFIG = {
    AddConst: "OutputQuantizeConfig",
    MulConst: "OutputQuantizeConfig",
    GateMultiply: "OutputQuantizeConfig",
    ChannelShuffle: "NoOpQuantizeConfig",
    ChannelSplit: "NoOpQuantizeConfig",
}


def custom_objects():
    """Everything needed to deserialize zoo models, QAT models included."""
    return {**CUSTOM_LAYERS, **quantize_configs()}


def quantize_scope():
    """Context manager for `quantize_apply`, and for loading QAT models."""
    return _tfq().quantize_scope(custom_objects())


def config_for(layer):
    """A fresh QuantizeConfig instance for a custom layer or a sigmoid, or None for other standard layers."""
    name = LAYER_CONFIG.get(type(layer))
    if isinstance(layer, keras.layers.Activation) and keras.activations.serialize(layer.activation) == "sigmoid":
        name = "LogisticQuantizeConfig"
    return quantize_configs()[name]() if name else None


def producers(model):
    """{layer name: [names of the layers feeding it]} from the model's own graph config.

    (A layer's `_inbound_nodes` also lists nodes of other models that reuse
    it, e.g. the wrapped copies made for pruning, so the config is used.)
    """
    feeds = {}
    for entry in model.get_config().get("layers", []):
        names = []
        for node in entry.get("inbound_nodes", []):
            names.extend(item[0] for item in (node if isinstance(node, list) else node.get("args", [])))
        feeds[entry["name"]] = names
    return feeds


def consumers(model, feeds=None):
    """{layer name: [names of the layers it feeds]} (from `feeds`, `producers(model)`, when given)."""
    fed = {}
    for name, inputs in (producers(model) if feeds is None else feeds).items():
        for producer in inputs:
            fed.setdefault(producer, []).append(name)
    return fed


def _only_feeds(model, layer, kind, fed):
    return bool(fed.get(layer.name)) and all(isinstance(model.get_layer(c), kind) for c in fed[layer.name])


def concat_fed_convs(model, fed=None):
    """Names of the convs with a linear activation whose every consumer is a Concatenate.

    TFLite's int8 CONCATENATION gives such a conv's output the concat's scale,
    so a range of the conv's own would exist only in the QAT model, where it
    clips what the int8 file keeps (7 int8 steps in the ShuffleNet V1
    stride-2 unit's average-pool path, measured). TF-MOT's ConcatTransform
    drops the output quantizers of a concat's inputs but not a conv's
    activation quantizer.
    """
    fed = consumers(model) if fed is None else fed
    convs = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
    return {
        layer.name
        for layer in model.layers
        if isinstance(layer, convs) and keras.activations.serialize(layer.activation) == "linear"
        and _only_feeds(model, layer, keras.layers.Concatenate, fed)
    }


def relu_fed_adds(model, fed=None):
    """Names of the AddConst layers whose every consumer is a ReLU.

    The converter fuses the pair into one ADD with a fused RELU6 at the
    ReLU's scale; a range of the add's own would round a second time in the
    QAT model only (hard-swish's relu6 output was 0.5-0.8 int8 steps off on
    average, measured).
    """
    fed = consumers(model) if fed is None else fed
    return {layer.name for layer in model.layers
            if isinstance(layer, AddConst) and _only_feeds(model, layer, keras.layers.ReLU, fed)}


def _moved_from_concat(model, name, feeds):
    """The Concatenate whose output layer `name` only moves (through shuffles and splits), or None."""
    layer = model.get_layer(name)
    while isinstance(layer, (ChannelShuffle, ChannelSplit)) and len(feeds.get(layer.name, [])) == 1:
        layer = model.get_layer(feeds[layer.name][0])
        if isinstance(layer, keras.layers.Concatenate):
            return layer.name
    return None


def range_sharing_concats(model, feeds=None):
    """Groups (sorted name lists) of Concatenates that must share one int8 range.

    A concat fed a shuffled, split part of another concat's output (the
    ShuffleNet V2 stride-1 unit) gets that part at the other concat's scale;
    with a range of its own the int8 file requantizes the part, and XNNPACK
    does that with an 8-bit multiplier, lrintf(256 * scale ratio), which puts
    5 % of the part a step from the rounding QAT does (measured). One range
    held through each chain (a ShuffleNet V2 stage) leaves no requantize.
    `feeds`: `producers(model)`, when the caller has it.
    """
    feeds = producers(model) if feeds is None else feeds
    parent = {}

    def root(name):
        while parent.setdefault(name, name) != name:
            name = parent[name]
        return name

    for layer in model.layers:
        if isinstance(layer, keras.layers.Concatenate):
            for producer in feeds.get(layer.name, []):
                source = _moved_from_concat(model, producer, feeds)
                if source is not None:
                    parent[root(layer.name)] = root(source)
    groups = {}
    for name in parent:
        groups.setdefault(root(name), []).append(name)
    return [sorted(group) for group in groups.values() if len(group) > 1]


def unmatched_concat_relus(model, quantize_map):
    """Names of the ReLUs that feed only a concat and still have no QuantizeConfig after TF-MOT's layout
    transform: its ConcatTransform, which takes a concat input's range away, does not match a concat whose
    other input also feeds another layer (the ShuffleNet V2 split half). Such a ReLU's range exists only in the
    QAT model; the int8 file computes it at its own scale and requantizes it to the concat's (measured in a
    ShuffleNet V2 stage whose concats share a range: up to 7 int8 steps off)."""
    fed = consumers(model)
    return [layer.name for layer in model.layers
            if isinstance(layer, keras.layers.ReLU) and _only_feeds(model, layer, keras.layers.Concatenate, fed)
            and layer.name in quantize_map and not quantize_map[layer.name].get("quantize_config")]


def _weights_only_config(layer):
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit.default_8bit_quantize_registry \
        import Default8BitConvQuantizeConfig

    kernel = "depthwise_kernel" if isinstance(layer, keras.layers.DepthwiseConv2D) else "kernel"
    return Default8BitConvQuantizeConfig([kernel], [], False)


@functools.lru_cache(maxsize=None)
def _layout_classes():
    """TF-MOT's 8-bit layout transform with its relu-fusion transforms corrected.

    TF-MOT's `LayerReLUQuantize` (Add/Conv2D/DepthwiseConv2D/Dense followed by
    a ReLU) replaces the producer's whole QuantizeConfig with a no-op to keep
    a fake quant off the tensor the converter fuses away, and so also leaves
    its **weights** float: QAT trains a conv whose int8 file has rounded
    weights (measured: 7 % of a conv+relu6's int8 outputs a step away from
    the QAT model's). For a conv or dense with a linear activation the
    corrected transform does what TF-MOT does for conv + BN + ReLU: it
    swaps the activation for `NoOpActivation` (no output fake quant) and
    keeps the layer's config (or the scheme's: PQAT/CQAT keep their weight
    quantizers). An Add keeps TF-MOT's handling. After TF-MOT's transforms,
    the ReLUs its ConcatTransform missed lose their output range
    (`unmatched_concat_relus`), as the ones it matched do.
    """
    from tensorflow_model_optimization.python.core.quantization.keras import quantize_aware_activation
    from tensorflow_model_optimization.python.core.quantization.keras import utils as quantize_utils
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_layout_transform as layout, default_8bit_transforms as transforms)
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit.default_8bit_quantize_registry \
        import Default8BitQuantizeConfig

    weighted = ("Conv2D", "DepthwiseConv2D", "Dense")

    class KeepWeightsQuantized:
        def replacement(self, match_layer):
            producer = match_layer.input_layers[0]
            config = producer.layer["config"]
            if producer.layer["class_name"] not in weighted or config.get("activation") != "linear":
                return super().replacement(match_layer)
            config["activation"] = quantize_utils.serialize_activation(
                quantize_aware_activation.NoOpActivation(), use_legacy_format=True)
            return match_layer

        def custom_objects(self):
            return {**super().custom_objects(), "NoOpActivation": quantize_aware_activation.NoOpActivation}

    class LayerReLUQuantize(KeepWeightsQuantized, transforms.LayerReLUQuantize):
        pass

    class LayerReluActivationQuantize(KeepWeightsQuantized, transforms.LayerReluActivationQuantize):
        pass

    class LayoutTransform(layout.Default8BitQuantizeLayoutTransform):
        def apply(self, model, layer_quantize_map):
            # TF-MOT builds its transform list inside apply() from the module's names; swap the two for the
            # call instead of copying a list that changes between TF-MOT versions.
            saved = transforms.LayerReLUQuantize, transforms.LayerReluActivationQuantize
            transforms.LayerReLUQuantize, transforms.LayerReluActivationQuantize = (
                LayerReLUQuantize, LayerReluActivationQuantize)
            try:
                transformed, quantize_map = super().apply(model, layer_quantize_map)
            finally:
                transforms.LayerReLUQuantize, transforms.LayerReluActivationQuantize = saved
            for name in unmatched_concat_relus(transformed, quantize_map):
                quantize_map[name]["quantize_config"] = Default8BitQuantizeConfig([], [], False)
            return transformed, quantize_map

    class Scheme(_tfq().QuantizeScheme):
        def __init__(self, base):
            self.base = base

        def get_layout_transformer(self):
            return LayoutTransform()

        def get_quantize_registry(self):
            return self.base.get_quantize_registry()

    return Scheme


def scheme(base=None):
    """`base` (a TF-MOT QuantizeScheme; default 8-bit) with the corrected layout transform (`_layout_classes`)."""
    if base is None:
        from tensorflow_model_optimization.python.core.quantization.keras.default_8bit.default_8bit_quantize_scheme \
            import Default8BitQuantizeScheme

        base = Default8BitQuantizeScheme()
    return _layout_classes()(base)


def annotate(model):
    """Return a copy of `model` with every layer annotated for QAT.

    Custom layers get their paired config, except that an AddConst feeding
    only ReLUs gets no range (`relu_fed_adds`); convs that feed only concats
    quantize their weights alone (`concat_fed_convs`); concats that must
    share a range hold it (`range_sharing_concats`); all other layers are
    annotated without a config, which leaves them to TF-MOT's default
    registry. One clone does what `quantize_annotate_model` would do with a
    second one (each clone of a large zoo model takes seconds).
    """
    tfq = _tfq()
    # Reading a large model's graph config takes about a second; once serves all three checks.
    feeds = producers(model)
    fed = consumers(model, feeds)
    weights_only, unranged = concat_fed_convs(model, fed), relu_fed_adds(model, fed)
    shared = {name for group in range_sharing_concats(model, feeds) for name in group}

    def clone(layer):
        if isinstance(layer, keras.Model):
            raise ValueError(f"layer {layer.name!r} is a nested model; flatten it into one functional graph to "
                             "quantize it")
        fresh = layer.__class__.from_config(layer.get_config())
        if isinstance(layer, keras.layers.Lambda):
            return fresh  # TF-MOT cannot quantize Python code either; pipelines.qat names such layers
        config = config_for(layer)
        if config is None and layer.name in weights_only:
            config = _weights_only_config(layer)
        if layer.name in unranged:
            config = quantize_configs()["NoOpQuantizeConfig"]()
        if layer.name in shared:
            config = quantize_configs()["SharedRangeQuantizeConfig"]()
        return tfq.quantize_annotate_layer(fresh, config)

    with keras.utils.custom_object_scope(custom_objects()):
        annotated = keras.models.clone_model(model, clone_function=clone)
    annotated.set_weights(model.get_weights())
    return annotated


def quantize(model, base_scheme=None):
    """QAT-ready copy of a zoo model (fake-quant everywhere, weights copied); `base_scheme`: a TF-MOT
    QuantizeScheme (PQAT, CQAT), default 8-bit, applied with the corrected layout transform (`scheme`)."""
    annotated = annotate(model)
    with quantize_scope():
        return _tfq().quantize_apply(annotated, scheme(base_scheme))
