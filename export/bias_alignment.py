"""Put a QAT model's biases on the int32 grid its int8 file stores them on.

TF-MOT fake-quantizes weights and activations but keeps biases float. The int8
file stores the bias of every conv, depthwise conv and fully-connected op (with
a following batch norm folded in) as int32 at scale input scale x weight scale,
per output channel. The rounding moves that channel's outputs by up to half of
that scale: a small fraction of an output step, but enough for some outputs to
land on the neighbouring int8 level, and those one-step differences add up
through a deep net. `align_biases` moves each such bias of the Keras model (the
batch norm's beta, or the layer's own bias) onto the value the file holds, so
the Keras model computes what the file computes. The file does not change: its
biases were on the grid already.
"""
import re
from dataclasses import dataclass

import numpy as np

from .errors import ExportError
from .loading import inner_layer

BIASED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
# The converter folds in float32, so its bias may differ from the one computed here by a few ulps of the largest
# term; with grid steps down to 1e-5 that is measurable (0.51 steps seen), so the check allows it on top of 0.5.
_ULPS = 16 * np.finfo(np.float32).eps


@dataclass
class BiasShift:
    layer: str  # the Keras layer whose weight moved
    channels: int
    max_grid_steps: float  # the largest move, in steps of the int32 grid (half a step, up to float32 rounding)


def align_biases(model, tflite=None):
    """Move the biases of the QAT model `model` (in place) onto the int32 values of its int8 file.

    `tflite` is that file (bytes or path); by default `model` is converted with
    `convert(model, "int8")`. Returns one BiasShift per aligned layer. Raises
    ExportError, and changes nothing, when `model` is not a QAT model, `tflite`
    is not an int8 file, a biased op of the file has no matching layer in
    `model`, or a bias is more than half a grid step from the model's (the file
    was not converted from this model).
    """
    from .convert import convert
    from .loading import is_qat_model

    if not is_qat_model(model):
        raise ExportError(f"align_biases needs a QAT model; '{model.name}' has no fake quantization")
    if tflite is None:
        tflite = convert(model, "int8", io="float").tflite
    moves = [_move(holder, stored, scales, name) for holder, stored, scales, name in _stored_biases(model, tflite)]
    return [_apply(*move) for move in moves]


def _stored_biases(model, tflite):
    """(layer holding the bias, the file's bias as float, its grid steps, op output name) for each biased op."""
    from .runner import Runner

    runner = Runner(tflite, backend="builtin")
    try:
        tensor_names = {t["index"]: t["name"] for t in runner.tensors()}
        layers = _layers_by_name(model)
        found = []
        for op in runner.ops():
            if op["name"] not in BIASED_OPS or len(op["inputs"]) < 3 or op["inputs"][2] < 0:
                continue
            values, scales = runner.constant(op["inputs"][2])
            name = tensor_names[op["outputs"][0]]
            if values.dtype != np.int32 or not scales.size:
                raise ExportError(f"{op['name']} '{name}' has a {values.dtype} bias; align_biases needs an int8 file")
            stored = values.astype(np.float64) * scales
            holder = _bias_holder(layers, name)
            if holder is not None:
                found.append((holder, stored, scales, name))
            elif np.any(stored):
                raise ExportError(f"{op['name']} '{name}' of the int8 file has a bias but no matching layer "
                                  f"in model '{model.name}'")
        return found
    finally:
        runner.close()


def _layers_by_name(model):
    """{name: layer} under both a QAT wrapper's name and its inner layer's (the converter uses the former)."""
    layers = {}
    for layer in model.layers:
        layers[layer.name] = layer
        layers[inner_layer(layer).name] = layer
    return layers


def _is_batch_norm(layer):
    return type(inner_layer(layer)).__name__ == "BatchNormalization"


def _has_bias_kernel(layer):
    return type(inner_layer(layer)).__name__ in ("Conv2D", "DepthwiseConv2D", "Dense")


def _producer(layer):
    inbound = layer.inbound_nodes[0].inbound_layers
    return inbound if not isinstance(inbound, list) else (inbound[0] if len(inbound) == 1 else None)


def _bias_holder(layers, tensor_name):
    """The layer whose weight becomes the op's bias: the batch norm folded into the op, else the conv or dense
    itself (None for a layer without a bias). The converter names the op's output after every op fused into
    it ('model/quant_x_act/Relu6;model/quant_x_bn/FusedBatchNormV3;model/quant_x/Conv2D')."""
    named = {id(layers[part]): layers[part] for part in re.split(r"[;/]", tensor_name) if part in layers}
    norms = [layer for layer in named.values()
             if _is_batch_norm(layer) and _producer(layer) is not None and _has_bias_kernel(_producer(layer))]
    if len(norms) > 1:
        raise ExportError(f"'{tensor_name}' names {len(norms)} batch norms; cannot tell which one it folded")
    if norms:
        return norms[0]
    biased = [layer for layer in named.values() if _has_bias_kernel(layer) and inner_layer(layer).use_bias]
    return biased[0] if len(biased) == 1 else None


def _folded(norm):
    """(bias the converter folds from a batch norm and its producer, the size of its terms, the norm's
    multiplier per channel)."""
    bn, producer = inner_layer(norm), inner_layer(_producer(norm))
    mean, var = bn.moving_mean.numpy().astype(np.float64), bn.moving_variance.numpy().astype(np.float64)
    gamma = bn.gamma.numpy().astype(np.float64) if bn.scale else 1.0
    beta = bn.beta.numpy().astype(np.float64) if bn.center else 0.0
    k = gamma / np.sqrt(var + bn.epsilon)
    conv_bias = producer.bias.numpy().astype(np.float64) if producer.use_bias else 0.0
    return beta + k * (conv_bias - mean), np.abs(beta) + np.abs(k * conv_bias) + np.abs(k * mean), k


def _move(holder, stored, scales, tensor_name):
    """(holder, the change to its bias, the norm's multiplier or None, grid steps moved); checks the file's bias is
    this layer's, rounded."""
    layer = inner_layer(holder)
    if _is_batch_norm(holder):
        current, terms, k = _folded(holder)
    else:
        current, k = layer.bias.numpy().astype(np.float64), None
        terms = np.abs(current)
    if current.shape != stored.shape:
        raise ExportError(f"'{tensor_name}': the file's bias has shape {stored.shape}, layer '{layer.name}' "
                          f"gives {current.shape}")
    move = stored - current
    steps = np.abs(move) / scales
    if np.any(np.abs(move) > 0.5 * scales + _ULPS * terms):
        raise ExportError(f"layer '{layer.name}': the int8 file's bias is {steps.max():.2f} grid steps from the "
                          "model's (at most 0.5 for a file converted from this model)")
    return holder, move, k, float(steps.max())


def _apply(holder, move, k, steps):
    layer = inner_layer(holder)
    if k is None:
        layer.bias.assign((layer.bias.numpy() + move).astype(np.float32))
    elif layer.center:
        layer.beta.assign((layer.beta.numpy() + move).astype(np.float32))
    else:
        layer.moving_mean.assign((layer.moving_mean.numpy() - move / k).astype(np.float32))
    return BiasShift(layer=layer.name, channels=int(move.size), max_grid_steps=steps)
