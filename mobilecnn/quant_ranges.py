"""Start QAT from calibrated fake-quant ranges instead of TF-MOT's [-6, 6].

TF-MOT 0.8.1 creates every activation range at [-6, 6] and moves it by an
exponential moving average with decay 0.999, so after 1,000 fine-tuning
steps 37 % of that arbitrary start is still in the range (ReLU6 outputs keep
a negative half they never use; wide tensors clip). Fine-tuning then adapts
the weights to wrong ranges, and a briefly trained QAT model's int8 file
does not match it. `calibrate_ranges` sets each range to what the EMA would
converge to on the float model's activations (the mean of per-batch
min/max), as post-training quantization does, and each weight range to the
current weights, before any QAT step. The input's range (an all-values
quantizer that starts at [0, 0], i.e. a QAT model whose first step has not
run maps every input to zero) becomes the min/max over all images, widened
by a step where that grid would put the images halfway between two int8
levels (uint8 pixels scaled to [-1, 1] all land there). TF's fake quant
rounds such ties up, TFLite's QUANTIZE away from zero and XNNPACK to even,
so on ties the int8 file's input differs from the QAT model's by a step for
half of the pixels, and that difference grows through the net. Concats
that must share one range (mobilecnn.quantization.range_sharing_concats)
all get the union of theirs; training does not move it.
"""
import numpy as np

from mobilecnn import quantization
from mobilecnn.compat import keras


class RangeCalibrationError(ValueError):
    """The QAT model does not correspond to the float model given."""


def _tfmot_types():
    from tensorflow_model_optimization.python.core.quantization.keras import (
        quantize_layer, quantize_wrapper, quantizers)

    ranged = (quantizers.MovingAverageQuantizer, quantizers.AllValuesQuantizer)
    return quantize_layer.QuantizeLayer, quantize_wrapper.QuantizeWrapper, ranged


def _activation_slots(qat_model):
    """[(float layer name, "input"|"output"|"model_input", quantizer, vars)] for every data-set range."""
    quantize_layer, wrapper_type, ranged = _tfmot_types()
    slots = []
    for layer in qat_model.layers:
        if isinstance(layer, quantize_layer) and isinstance(layer.quantizer, ranged):
            slots.append((None, "model_input", layer.quantizer, layer.quantizer_vars))
        if not isinstance(layer, wrapper_type):
            continue
        name = layer.layer.name
        for activation in layer._quantize_activations:
            if isinstance(activation.quantizer, ranged):
                if activation._should_pre_quantize():
                    # The pre-activation range is the activation's input; only a whole
                    # Activation layer has that tensor in the float model.
                    where = "input" if isinstance(layer.layer, keras.layers.Activation) else None
                    slots.append((name, where, activation.quantizer, activation._pre_activation_vars))
                if activation._should_post_quantize():
                    slots.append((name, "output", activation.quantizer, activation._post_activation_vars))
        if layer._output_quantizers and isinstance(layer._output_quantizers[0], ranged):
            slots.append((name, "output", layer._output_quantizers[0], layer._output_quantizer_vars))
    return slots


def _own_graph(model):
    """A copy of `model` whose layers belong to it alone.

    Layers of a model made from another one (e.g. by strip_pruning) keep the
    other graph's tensors as `.output`; a probe built on those is disconnected.
    """
    with quantization.quantize_scope():
        copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def _probe(float_model, slots):
    """A model giving every float tensor the slots need, and each slot's index in its outputs."""
    float_model = _own_graph(float_model)
    tensors, index, where_of = [], [], {}
    for name, where, _, _ in slots:
        if where is None:
            index.append(None)
            continue
        key = (name, where)
        if key not in where_of:
            if where == "model_input":
                tensor = float_model.inputs[0]
            else:
                try:
                    layer = float_model.get_layer(name)
                except ValueError:
                    raise RangeCalibrationError(f"QAT layer {name!r} has no float counterpart in model "
                                                f"{float_model.name!r}; pass the model the QAT copy was made from")
                tensor = layer.input if where == "input" else layer.output
            where_of[key] = len(tensors)
            tensors.append(tensor)
        index.append(where_of[key])
    return keras.Model(float_model.inputs, tensors), index


def _batch_ranges(probe, images, batch_size):
    """Per probe output: the (batch min, batch max) of every batch, shape (batches, outputs) each."""
    import tensorflow as tf

    @tf.function
    def ranges(x):
        outputs = probe(x, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return tf.stack([tf.reduce_min(o) for o in outputs]), tf.stack([tf.reduce_max(o) for o in outputs])

    lows, highs = [], []
    for start in range(0, len(images), batch_size):
        low, high = ranges(tf.constant(images[start:start + batch_size], tf.float32))
        lows.append(low.numpy())
        highs.append(high.numpy())
    return np.array(lows), np.array(highs)


def _range_for(quantizer, lows, highs):
    """What the quantizer's own update converges to: the EMA's mean batch range, or all values' extremes."""
    _, _, (ema_type, _) = _tfmot_types()
    if isinstance(quantizer, ema_type):
        low, high = float(np.mean(lows)), float(np.mean(highs))
    else:
        low, high = float(np.min(lows)), float(np.max(highs))
    # The adjustments quant_ops makes to a batch range: zero inside, symmetric if asked.
    if quantizer.symmetric:
        ratio = -1.0 if quantizer.narrow_range else -((1 << quantizer.num_bits) - 2) / (1 << quantizer.num_bits)
        return min(low, high / ratio), max(high, low * ratio)
    return min(low, 0.0), max(high, 0.0)


def _nudged_grid(low, high, levels=255):
    """(scale, lowest level) of the grid TF's FakeQuantWithMinMaxVars puts on [low, high] (8 bits, not narrow)."""
    scale = (high - low) / levels
    zero_point = min(max(np.round(-low / scale), 0), levels)
    return scale, -zero_point * scale


def _share_at_ties(values, low, high):
    scale, start = _nudged_grid(low, high)
    position = (values - start) / scale
    return float(np.mean(np.abs(position - np.floor(position) - 0.5) < 1e-3))


def _off_tie_range(images, low, high, max_values=1 << 20, tolerated=0.01):
    """The input range [low, high], its top widened one step at a time (at most 3) while more than
    `tolerated` of the images' values sit halfway between two levels of its grid."""
    values = images.reshape(-1)
    values = values[:: max(1, len(values) // max_values)].astype(np.float64)
    for _ in range(3):
        if high <= low or _share_at_ties(values, low, high) <= tolerated:
            break
        high += (high - low) / 255
    return low, high


def _set_weight_ranges(qat_model):
    _, wrapper_type, _ = _tfmot_types()
    for layer in qat_model.layers:
        if isinstance(layer, wrapper_type):
            for weight, quantizer, quantizer_vars in layer._weight_vars:
                quantizer(weight, True, weights=quantizer_vars)  # training mode assigns the weights' range


def _share_ranges(ranges, slots, groups):
    """Give the output ranges of each group of concats their union (what every member's values need)."""
    for group in groups:
        members = [slot for slot in ranges if slots[slot][0] in group and slots[slot][1] == "output"]
        if members:
            union = min(ranges[slot][0] for slot in members), max(ranges[slot][1] for slot in members)
            ranges.update(dict.fromkeys(members, union))


def calibrate_ranges(qat_model, float_model, images, batch_size=16):
    """Set the QAT model's fake-quant ranges from `float_model` run on `images` (N, H, W, C, preprocessed).

    `float_model` is the model `qat_model` was quantized from (same layer names
    and weights). Returns {"activation_ranges": n, "weight_ranges": m}.
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or not len(images):
        raise RangeCalibrationError(f"calibration images: expected a non-empty (N, H, W, C) array, got shape "
                                    f"{images.shape}")
    slots = _activation_slots(qat_model)
    probe, index = _probe(float_model, slots)
    lows, highs = _batch_ranges(probe, images, batch_size)
    ranges = {}
    for slot, ((_, where, quantizer, _), i) in enumerate(zip(slots, index)):
        if i is None:
            continue
        ranges[slot] = _range_for(quantizer, lows[:, i], highs[:, i])
        if where == "model_input":
            ranges[slot] = _off_tie_range(images, *ranges[slot])
    _share_ranges(ranges, slots, quantization.range_sharing_concats(float_model))
    for slot, (low, high) in ranges.items():
        quantizer_vars = slots[slot][3]
        quantizer_vars["min_var"].assign(np.full(quantizer_vars["min_var"].shape, low, np.float32))
        quantizer_vars["max_var"].assign(np.full(quantizer_vars["max_var"].shape, high, np.float32))
    _set_weight_ranges(qat_model)
    weights = sum(len(layer._weight_vars) for layer in qat_model.layers if isinstance(layer, _tfmot_types()[1]))
    return {"activation_ranges": len(ranges), "weight_ranges": weights}
