"""Model profile: parameters, multiply-accumulates per layer, peak activation memory.

MACs count the multiply-accumulates of convolutions (grouped and depthwise
included) and dense layers at batch 1, the convention of published MAC/FLOP
tables; elementwise ops, pooling and BatchNorm (folded at export) are free.
"""
from dataclasses import dataclass
import math

import numpy as np

from .compat import keras

HEAD_TOKENS = {"head", "logits", "predictions", "avg", "max"}


@dataclass
class LayerProfile:
    name: str
    kind: str
    stage: str
    output_shape: tuple
    params: int
    macs: int


def _shape(tensor_shape):
    return tuple(tensor_shape.as_list() if hasattr(tensor_shape, "as_list") else tensor_shape)


def _outputs(layer):
    outputs = layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]
    return [_shape(t.shape) for t in outputs]


def layer_macs(layer):
    """Multiply-accumulates of one layer at batch 1."""
    out = _outputs(layer)[0]
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw = layer.kernel_size
        return out[1] * out[2] * out[3] * kh * kw
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw = layer.kernel_size
        in_channels = _shape(layer.input.shape)[-1]
        return out[1] * out[2] * out[3] * kh * kw * in_channels // layer.groups
    if isinstance(layer, keras.layers.Dense):
        return _shape(layer.input.shape)[-1] * out[-1]
    return 0


def stage_of(name):
    token = name.split("_")[0]
    return "head" if token in HEAD_TOKENS else token


def _inbound(layer):
    names = []
    for node in layer._inbound_nodes:
        inbound = node.inbound_layers
        names += [l.name for l in (inbound if isinstance(inbound, (list, tuple)) else [inbound])]
    return names


def peak_activation_bytes(model, bytes_per_element=4):
    """Largest sum of live activations over a topological run of the graph at batch 1.

    A tensor is live from the layer that produces it to its last consumer;
    this is what an arena allocator without in-place reuse must hold.
    """
    order = {layer.name: i for i, layer in enumerate(model.layers)}
    last_use = {layer.name: i for i, layer in enumerate(model.layers)}
    for layer in model.layers:
        for name in _inbound(layer):
            last_use[name] = max(last_use[name], order[layer.name])
    sizes = {
        layer.name: sum(math.prod(s[1:]) for s in _outputs(layer)) * bytes_per_element for layer in model.layers
    }
    peak = 0
    for i in range(len(model.layers)):
        live = sum(size for name, size in sizes.items() if order[name] <= i <= last_use[name])
        peak = max(peak, live)
    return peak


def profile(model):
    """Per-layer table plus totals for a Keras model."""
    layers = [
        LayerProfile(
            name=layer.name,
            kind=type(layer).__name__,
            stage=stage_of(layer.name),
            output_shape=_outputs(layer)[0],
            params=layer.count_params(),
            macs=layer_macs(layer),
        )
        for layer in model.layers
        if not isinstance(layer, keras.layers.InputLayer)
    ]
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    total = model.count_params()
    return {
        "name": model.name,
        "input_shape": _shape(model.input_shape),
        "params": total,
        "trainable_params": trainable,
        "non_trainable_params": total - trainable,
        "macs": sum(l.macs for l in layers),
        "peak_activation_bytes": peak_activation_bytes(model),
        "layers": layers,
        "stages": stages(layers),
    }


def stages(layers):
    """Aggregate layer profiles by stage, in order of first appearance."""
    table = {}
    for layer in layers:
        row = table.setdefault(layer.stage, {"stage": layer.stage, "layers": 0, "params": 0, "macs": 0})
        row["layers"] += 1
        row["params"] += layer.params
        row["macs"] += layer.macs
        row["output_shape"] = layer.output_shape
    return list(table.values())


def total_macs(model):
    return sum(layer_macs(layer) for layer in model.layers if not isinstance(layer, keras.layers.InputLayer))
