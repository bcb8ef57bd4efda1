"""Quantization-aware training: checks, quantize, save/load.

`quantize_model` refuses, before TF-MOT is asked, any model in which a
layer would end up without a quantizer: TF-MOT's own errors name one layer
at a time (or none, for Lambda), and some cases (a conv with a fused swish)
pass silently and leave float ops in the int8 file. The check lists every
offending layer at once, with what to do about it.

QAT models are saved as .h5 or SavedModel, never .keras: in TF-MOT 0.8.1 a
QAT model saved as .keras does not reload ("Layer 'quantize_layer' expected
5 variables, but received 3").
"""
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from mobilecnn import quantization
from mobilecnn.compat import keras

from mobilecnn.quant_ranges import calibrate_ranges

# Fused activations that a conv/dense quantize config turns into a fake-quantized int8 op.
_FUSABLE = ("linear", "relu", "relu6")
_CONV_FOR_BN = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)


class QATError(ValueError):
    """The model cannot be made quantization-aware; the message lists the layers."""


def _tfmot():
    import tensorflow_model_optimization as tfmot

    return tfmot


def _registry():
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as registry,
    )

    return registry.Default8BitQuantizeRegistry()


def _activation_name(layer):
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None)


def _bn_after_conv(model, layer, producers):
    names = producers.get(layer.name, [])
    return len(names) == 1 and isinstance(model.get_layer(names[0]), _CONV_FOR_BN)


def quantization_problems(model):
    """["layer_name (Class): reason", ...] for every layer QAT would leave unquantized."""
    registry = _registry()
    supported_activations = ("relu", "swish", "gelu", "relu6", "linear", "softmax", "sigmoid", "tanh")
    problems = []
    producers = quantization.producers(model)
    for layer in model.layers:
        kind = type(layer).__name__
        if isinstance(layer, keras.layers.InputLayer) or quantization.config_for(layer) is not None:
            continue
        if isinstance(layer, keras.Model):
            problems.append(f"{layer.name} ({kind}): nested model; flatten it into one functional graph")
        elif isinstance(layer, keras.layers.Lambda):
            problems.append(f"{layer.name} (Lambda): Python code cannot be quantized; use a registered layer")
        elif isinstance(layer, keras.layers.BatchNormalization):
            if not _bn_after_conv(model, layer, producers):
                problems.append(f"{layer.name} (BatchNormalization): not directly after a Conv2D/DepthwiseConv2D, "
                                "so it cannot be folded")
        elif isinstance(layer, keras.layers.Activation):
            if _activation_name(layer) not in supported_activations:
                problems.append(f"{layer.name} (Activation): '{_activation_name(layer)}' has no int8 quantizer; "
                                "build it from single-op layers (mobilecnn.blocks)")
        elif not registry.supports(layer):
            problems.append(f"{layer.name} ({kind}): not in TF-MOT's 8-bit registry and has no QuantizeConfig")
        elif _activation_name(layer) not in (None, *_FUSABLE):
            problems.append(f"{layer.name} ({kind}): fused activation '{_activation_name(layer)}' would stay float; "
                            "use a separate Activation layer")
    return problems


def check_quantizable(model):
    problems = quantization_problems(model)
    if problems:
        raise QATError(f"model {model.name} cannot be quantized: {len(problems)} layer(s) would be left "
                       "unannotated: " + "; ".join(problems))


def quantize_model(model, scheme=None, calibration=None):
    """QAT copy of `model` (weights copied). `scheme`: a TF-MOT QuantizeScheme, default 8-bit if None.

    `calibration`: preprocessed images (N, H, W, C); when given, the fake-quant
    ranges start from `model`'s activations on them instead of TF-MOT's
    [-6, 6] (see mobilecnn.quant_ranges). Pass them whenever data is at hand:
    the concats of a ShuffleNet V2 stage hold one range that training does
    not move (mobilecnn.quantization.range_sharing_concats), so without
    calibration they keep [-6, 6], and a warning says so.
    """
    check_quantizable(model)
    qat_model = quantization.quantize(model, scheme)
    if calibration is not None:
        calibrate_ranges(qat_model, model, calibration)
    elif quantization.range_sharing_concats(model):
        warnings.warn(f"model {model.name}: its chained concats hold a fixed range during QAT, which stays at "
                      "[-6, 6] without calibration images; pass calibration= (the CLI does)", stacklevel=2)
    return qat_model


def is_qat_model(model):
    quantize_wrapper = _tfmot().quantization.keras.QuantizeWrapperV2
    return any(isinstance(layer, quantize_wrapper) for layer in model.layers)


def save_qat(model, path, overwrite=False):
    """Save a QAT model as .h5 (one file) or a SavedModel folder (any other name), atomically."""
    path = Path(path)
    if path.suffix == ".keras":
        raise QATError(f"{path}: a QAT model saved as .keras does not reload with TF-MOT 0.8.1; use .h5 or a "
                       "SavedModel folder")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --force) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".h5":
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".h5")
        os.close(fd)
        model.save(tmp, save_format="h5")
        os.replace(tmp, path)
        return path
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    model.save(tmp, save_format="tf")
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path


def load_qat(path):
    """Load a QAT model saved by `save_qat` (.h5 in Keras safe mode, or a SavedModel folder)."""
    path = Path(path)
    if path.suffix == ".keras":
        raise QATError(f"{path}: QAT models are not loadable from .keras with TF-MOT 0.8.1; save as .h5")
    if not path.exists():
        raise FileNotFoundError(f"QAT model not found: {path}")
    from tf_keras.src.saving.serialization_lib import SafeModeScope

    with quantization.quantize_scope(), SafeModeScope(True):
        return keras.models.load_model(path, compile=False)
