"""What every zoo constructor shares: input resolution, the classifier head,
argument checks and weight loading, with keras.applications semantics."""
import json
import os

from .blocks import BuildConfig
from .compat import keras

L = keras.layers

# Expected input normalisation, in pixel units (0..255): (pixel - mean) / std.
NORMALIZATIONS = {
    "tf": {"mean": [127.5, 127.5, 127.5], "std": [127.5, 127.5, 127.5], "doc": "[-1, 1]: x / 127.5 - 1"},
    "torch": {
        "mean": [123.675, 116.28, 103.53],
        "std": [58.395, 57.12, 57.375],
        "doc": "ImageNet mean/std on [0, 1] RGB",
    },
    "lite": {"mean": [127.0, 127.0, 127.0], "std": [128.0, 128.0, 128.0], "doc": "(x - 127) / 128"},
}

POOLINGS = (None, "avg", "max")
CLASSIFIER_ACTIVATIONS = (None, "linear", "softmax", "sigmoid")
MIN_INPUT_SIZE = 32


def check_weights(weights):
    """Validate `weights` (None or an existing file) before anything is built."""
    if weights is None:
        return None
    if weights == "imagenet":
        raise ValueError(
            "weights='imagenet': no download exists in mobilecnn. Port a checkpoint with "
            "`mobilecnn port ... -o model.weights.h5` and pass weights='model.weights.h5'."
        )
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"weights must be None or a path to a weights file, got {type(weights).__name__}")
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"weights file not found: {os.fspath(weights)}")
    return os.fspath(weights)


PORT_RECORD = "mobilecnn_port"  # HDF5 attribute written by `mobilecnn port`


def weights_record(path):
    """The build record (model, classes, padding, bn_epsilon) stored in a ported weights file, or None."""
    import h5py

    try:
        with h5py.File(os.fspath(path), "r") as f:
            raw = f.attrs.get(PORT_RECORD)
    except OSError:  # not HDF5: nothing recorded
        return None
    return json.loads(raw) if raw is not None else None


def build_config(weights, padding=None, bn_epsilon=None, *, default_padding="symmetric", default_epsilon=1e-3,
                 bn_momentum=0.99):
    """BuildConfig for a constructor call.

    Unset `padding`/`bn_epsilon` come from the weights file's port record
    when it has one (a checkpoint only reproduces its outputs with the
    padding and epsilon it was trained with), else from the family default.
    An explicit value that contradicts the record is an error.
    """
    recorded = {}
    path = check_weights(weights)
    if path:
        recorded = (weights_record(path) or {}).get("build", {})
    chosen = {}
    for key, given, default in (("padding", padding, default_padding), ("bn_epsilon", bn_epsilon, default_epsilon)):
        if given is not None and key in recorded and given != recorded[key]:
            raise ValueError(f"{key}={given!r} contradicts weights file {path}, which was ported for "
                             f"{key}={recorded[key]!r}; leave {key} unset")
        chosen[key] = given if given is not None else recorded.get(key, default)
    return BuildConfig(padding=chosen["padding"], bn_epsilon=chosen["bn_epsilon"], bn_momentum=bn_momentum)


def check_range(name, value, low, high):
    if not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value!r}")


def resolve_input(input_shape, input_tensor, default_size, min_size=MIN_INPUT_SIZE):
    """Return the Input tensor for (input_shape, input_tensor), with a fixed height and width."""
    if input_shape is None and input_tensor is not None:
        input_shape = tuple(input_tensor.shape[1:])
    if input_shape is None:
        input_shape = (default_size, default_size, 3)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape}")
    height, width, channels = input_shape
    if height is None or width is None or channels is None:
        raise ValueError(f"input_shape must have a fixed height, width and channels, got {input_shape}")
    if min(height, width) < min_size:
        raise ValueError(f"input_shape {input_shape} is too small: height and width must be at least {min_size} px")
    if input_tensor is None:
        return L.Input(shape=input_shape, name="input"), input_shape
    if not keras.backend.is_keras_tensor(input_tensor):
        return L.Input(tensor=input_tensor, shape=input_shape, name="input"), input_shape
    return input_tensor, input_shape


def standard_head(x, *, classes, dropout, classifier_activation):
    """Global average pool, dropout, dense logits, then the activation as its own layer."""
    x = L.GlobalAveragePooling2D(name="head_pool")(x)
    if dropout:
        x = L.Dropout(dropout, name="head_dropout")(x)
    x = L.Dense(classes, name="logits")(x)
    return classifier(x, classifier_activation)


def classifier(x, classifier_activation):
    if classifier_activation in (None, "linear"):
        return x
    return L.Activation(classifier_activation, name="predictions")(x)


def pool_features(x, pooling):
    if pooling == "avg":
        return L.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return L.GlobalMaxPooling2D(name="max_pool")(x)
    return x


def build(
    features,
    *,
    default_size,
    model_name,
    input_shape=None,
    include_top=True,
    weights=None,
    input_tensor=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name=None,
    head=None,
    dropout=0.0,
    min_size=MIN_INPUT_SIZE,
):
    """Assemble a zoo model.

    `features(inputs)` builds the backbone; `head(x, classes, classifier_activation)`
    replaces the standard head when a family has its own (MobileNetV3, SqueezeNet).
    """
    weights = check_weights(weights)
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if classifier_activation not in CLASSIFIER_ACTIVATIONS:
        raise ValueError(f"classifier_activation must be one of {CLASSIFIER_ACTIVATIONS}, got {classifier_activation!r}")
    if include_top and (not isinstance(classes, int) or classes < 1):
        raise ValueError(f"classes must be a positive integer, got {classes!r}")
    inputs, shape = resolve_input(input_shape, input_tensor, default_size, min_size)
    if weights and include_top and shape[:2] != (default_size, default_size):
        raise ValueError(
            f"include_top=True with weights={weights!r} needs the size the weights were trained at, "
            f"{default_size}x{default_size}; got {shape[0]}x{shape[1]} (use include_top=False for other sizes)"
        )
    x = features(inputs)
    if include_top:
        if head is None:
            x = standard_head(x, classes=classes, dropout=dropout, classifier_activation=classifier_activation)
        else:
            x = head(x, classes, classifier_activation)
    else:
        x = pool_features(x, pooling)
    source = keras.utils.get_source_inputs(input_tensor) if input_tensor is not None else inputs
    model = keras.Model(source, x, name=name or model_name)
    if weights:
        load_weights(model, weights)
    return model


def load_weights(model, path):
    try:
        model.load_weights(path)
    except Exception as exc:  # keras raises many types here; the file is what the user needs to know
        raise ValueError(f"cannot load weights from {path} into {model.name}: {exc}") from exc
