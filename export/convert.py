"""Keras -> TFLite conversion in every mode, always with a fixed batch.

Settings follow the toolchain notes (section 4): a concrete function with
batch fixed (default 1) so Reshape/Flatten emit no SHAPE/PACK ops that split
XNNPACK; full-integer int8 through TFLITE_BUILTINS_INT8 with a representative
dataset; QAT models through `optimizations=[DEFAULT]` alone (their ranges
come from training, and asking for TFLITE_BUILTINS_INT8 would demand a
dataset); sparsity only in float modes, since XNNPACK fails to load sparse
int8 and dynamic-range models.

The classifier activation: zoo models end in `Activation("softmax",
name="predictions")` like keras.applications, and XNNPACK runs no int8
SOFTMAX. Export therefore drops a trailing softmax/sigmoid layer and ships
logits (argmax is unchanged; the dropped activation is recorded in the
metadata), unless `keep_activation=True`.
"""
from dataclasses import dataclass

import numpy as np

from .errors import ExportError

MODES = ("fp32", "fp16", "dynamic", "int8", "int16x8")
IO_TYPES = ("float", "int8", "uint8")
FLOAT_MODES = ("fp32", "fp16")
CALIBRATED_MODES = ("int8", "int16x8")
DROPPABLE_ACTIVATIONS = ("softmax", "sigmoid")
# How int8 activation ranges come from the representative data: "minmax" is the
# converter's own (extremes over every sample); "mean" is the mean of per-batch
# extremes (batches of 16), set on a QAT copy that is converted untrained
# (mobilecnn.quant_ranges), which clips rare outliers. EfficientNet-Lite0 on the
# ImageNet samples: int8 drops of 1.2 / -0.2 points (minmax) vs 0.8 / 0.4 (mean)
# on the two folds (docs/pretrained.md).
RANGE_METHODS = ("minmax", "mean")


@dataclass
class Conversion:
    tflite: bytes
    model: object  # the Keras graph that was converted (what parity compares against)
    mode: str
    io: str
    sparse: bool
    batch_size: int
    qat: bool
    dropped_activation: str = None  # "softmax"/"sigmoid" when the output is logits
    calibration_ranges: str = None  # "minmax"/"mean" for a calibrated int8/int16x8 conversion


def check_options(mode, io="float", sparse=False, batch_size=1, qat=False, calibration_ranges="minmax"):
    """Refuse mode/option combinations before any work is done."""
    if mode not in MODES:
        raise ExportError(f"mode must be one of {MODES}, got {mode!r}")
    if calibration_ranges not in RANGE_METHODS:
        raise ExportError(f"--calibration-ranges must be one of {RANGE_METHODS}, got {calibration_ranges!r}")
    if calibration_ranges != "minmax" and mode != "int8":
        raise ExportError(f"--calibration-ranges {calibration_ranges} works with --int8 only")
    if io not in IO_TYPES:
        raise ExportError(f"--io must be one of {IO_TYPES}, got {io!r}")
    if io != "float" and mode != "int8":
        raise ExportError(f"--io {io} needs --int8 (full-integer model); {mode} models have float inputs and outputs")
    if sparse and mode not in FLOAT_MODES:
        raise ExportError(
            f"--sparse works with float modes only (--fp32, --fp16): XNNPACK cannot load sparse {mode} models"
        )
    if qat and mode != "int8":
        raise ExportError(f"a quantization-aware (QAT) model converts with --int8 only, not --{mode}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ExportError(f"--batch must be a positive integer, got {batch_size!r}")


def output_activation(model):
    """The name of a trailing softmax/sigmoid layer of a single-output model, else None."""
    from mobilecnn.compat import keras

    if len(model.outputs) != 1:
        return None
    last = model.layers[-1]
    inner = getattr(last, "layer", last)  # TF-MOT QuantizeWrapper holds the real layer
    if isinstance(inner, keras.layers.Softmax):
        return "softmax"
    if isinstance(inner, keras.layers.Activation):
        name = keras.activations.serialize(inner.activation)
        name = name if isinstance(name, str) else name.get("config", name)
        if name in DROPPABLE_ACTIVATIONS:
            return name
    return None


def graph_for_export(model, keep_activation=False):
    """(model to convert, dropped activation or None)."""
    from mobilecnn.compat import keras

    activation = None if keep_activation else output_activation(model)
    if activation is None:
        return model, None
    return keras.Model(model.inputs, model.layers[-1].input, name=model.name), activation


def input_shape(model):
    if len(model.inputs) != 1:
        raise ExportError(f"model {model.name} has {len(model.inputs)} inputs; export handles single-input models")
    shape = tuple(model.inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise ExportError(f"model {model.name} has input shape {shape}; export needs a fixed height, width, channels")
    return tuple(int(d) for d in shape)


def convert(model, mode="fp32", *, io="float", sparse=False, batch_size=1, representative=None, qat=None,
            keep_activation=False, calibration_ranges="minmax"):
    """Convert a tf_keras model; return a `Conversion`.

    `representative`: float32 array (N, H, W, C) of normalized inputs, needed
    for int8/int16x8 unless the model is QAT (detected when `qat` is None).
    `calibration_ranges`: how ranges come from it, one of RANGE_METHODS
    ("mean": int8 only).
    """
    from mobilecnn.compat import tf

    if qat is None:
        from .loading import is_qat_model

        qat = is_qat_model(model)
    check_options(mode, io, sparse, batch_size, qat, calibration_ranges)
    graph, dropped = graph_for_export(model, keep_activation)
    shape = input_shape(graph)
    converted, ranges = graph, None
    if mode in CALIBRATED_MODES and not qat:
        representative = _check_representative(representative, shape, batch_size)
        ranges = calibration_ranges
        if calibration_ranges == "mean":
            converted = _mean_calibrated_qat_copy(graph, representative)

    fn = tf.function(lambda x: converted(x, training=False))
    concrete = fn.get_concrete_function(tf.TensorSpec([batch_size, *shape], tf.float32))
    # The converter saves its trackable object as a SavedModel first. Given
    # the Keras model it traces every layer's call (16 s for MobileNetV2-0.35);
    # a module holding only this function saves in under a second.
    holder = tf.Module()
    holder.serve = fn
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], holder)
    _configure(converter, mode, io, sparse, qat or converted is not graph, representative, batch_size)
    try:
        tflite = converter.convert()
    except Exception as exc:  # converter errors are long MLIR dumps; keep the first meaningful line
        raise ExportError(f"{mode} conversion of {model.name} failed: {_first_line(exc)}") from exc
    return Conversion(tflite, graph, mode, io, sparse, batch_size, qat, dropped, ranges)


def _mean_calibrated_qat_copy(graph, representative):
    """A QAT copy of `graph` whose fake-quant ranges come from `representative` (no training)."""
    from mobilecnn.quant_ranges import calibrate_ranges
    from mobilecnn.quantization import quantize

    try:
        qat_copy = quantize(graph)
    except Exception as exc:  # TF-MOT names the first layer it cannot quantize
        raise ExportError(f"--calibration-ranges mean needs a quantizable model: {_first_line(exc)}") from exc
    calibrate_ranges(qat_copy, graph, representative)
    return qat_copy


def _configure(converter, mode, io, sparse, qat, representative, batch_size):
    from mobilecnn.compat import tf

    optimizations = []
    if mode != "fp32":
        optimizations.append(tf.lite.Optimize.DEFAULT)
    if sparse:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    converter.optimizations = optimizations
    if mode == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if mode in CALIBRATED_MODES and not qat:
        converter.representative_dataset = _dataset(representative, batch_size)
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8
            if mode == "int8"
            else tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
    if io != "float":
        converter.inference_input_type = converter.inference_output_type = {"int8": tf.int8, "uint8": tf.uint8}[io]


def _check_representative(representative, shape, batch_size):
    if representative is None:
        raise ExportError("int8/int16x8 conversion needs calibration data (a representative dataset)")
    data = np.asarray(representative, np.float32)
    if data.ndim != 4 or tuple(data.shape[1:]) != shape:
        raise ExportError(f"calibration data has shape {data.shape}; expected (N, {', '.join(map(str, shape))})")
    if len(data) < batch_size:
        raise ExportError(f"calibration data has {len(data)} samples; at least the batch size ({batch_size}) is needed")
    return data


def _dataset(data, batch_size):
    def generate():
        for start in range(0, len(data) - batch_size + 1, batch_size):
            yield [data[start : start + batch_size]]

    return generate


def _first_line(exc):
    for line in str(exc).splitlines():
        line = line.strip()
        if "error:" in line:
            return line[line.index("error:") :]
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def calibrate_batchnorm(model, x):
    """Set every BatchNorm's moving statistics from one batch `x` (in place).

    A random-weight deep net's activations decay towards zero in inference
    mode (about 1e-11 at a MobileNetV2 output), so its int8 output is all
    zeros. With statistics taken from data, activations keep their scale and
    random-weight int8 checks mean something. For random-init models only.
    """
    from mobilecnn.compat import keras

    layers = [layer for layer in _all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    try:
        model(np.asarray(x, np.float32), training=True)
    finally:
        for layer, momentum in zip(layers, saved):
            layer.momentum = momentum
    return len(layers)


def _all_layers(model):
    for layer in model.layers:
        yield layer
        inner = getattr(layer, "layer", None)
        if inner is not None:
            yield inner
