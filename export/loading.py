"""Load the model to export: a saved Keras model, a weights file, or a registry name.

Saved models are untrusted input. Keras' safe mode refuses a Python lambda
only in the `.keras` format; `.h5` and SavedModel load a Lambda layer's
marshalled bytecode regardless (measured with tf_keras 2.21). So the saved
configuration of every format is read as plain JSON first, and any Lambda
layer is refused before Keras deserializes anything.
"""
import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field

from .errors import ExportError

KERAS_SUFFIXES = (".keras",)
H5_SUFFIXES = (".h5", ".hdf5")


@dataclass
class LoadedModel:
    model: object  # tf_keras.Model
    source: dict  # how it was obtained: kind, path/name, sha256
    card_name: str = None  # registry card that describes it, when known
    is_qat: bool = False
    random_init: bool = False  # built from a registry name without weights
    notes: list = field(default_factory=list)


def sha256_of(path):
    digest = hashlib.sha256()
    if os.path.isdir(path):
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                digest.update(os.path.relpath(full, path).encode())
                digest.update(file_sha256(full).encode())
        return digest.hexdigest()
    return file_sha256(path)


def file_sha256(path):
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def registry_names():
    from mobilecnn import list_models

    return set(list_models())


def _not_a_name(name):
    from mobilecnn.registry import did_you_mean

    return f"not a registry model name{did_you_mean(name)}"


def load(model, *, model_name=None, input_size=None, classes=None, qat=False):
    """Return a LoadedModel for `model`, a path or a registry name.

    `model_name` (with a weights file) names the registry architecture to
    rebuild; `input_size` (int or (h, w)) and `classes` apply whenever a model
    is built from the registry; `qat` rebuilds the QAT version of it before
    loading weights (weights-only QAT checkpoints).
    """
    path = os.fspath(model)
    if os.path.exists(path):
        return _load_path(path, model_name, input_size, classes, qat)
    if model_name is not None:
        raise ExportError(f"{path}: weights file not found")
    if os.sep in path or path.endswith(KERAS_SUFFIXES + H5_SUFFIXES):
        raise ExportError(f"{path}: model file not found")
    if path not in registry_names():
        raise ExportError(f"{path}: no such model file, and {_not_a_name(path)}")
    built = _build(path, input_size, classes, qat)
    return LoadedModel(
        built,
        {"kind": "registry", "name": path},
        card_name=path,
        is_qat=qat,
        random_init=True,
        notes=["random initial weights (registry name given, no weights): for benchmarking only"],
    )


def _load_path(path, model_name, input_size, classes, qat):
    if model_name is not None:
        return _load_weights(path, model_name, input_size, classes, qat)
    if qat:
        raise ExportError("--qat applies to weights files rebuilt with --model NAME; a saved model records its own layers")
    if os.path.isdir(path):
        config = _savedmodel_config(path)
    elif path.endswith(KERAS_SUFFIXES):
        config = _keras_zip_config(path)
    elif path.endswith(H5_SUFFIXES):
        config = _h5_config(path)
        if config is None:
            raise ExportError(f"{path}: an HDF5 weights file without a model; pass the architecture with --model NAME")
    else:
        raise ExportError(
            f"{path}: not a model file; expected a .keras or .h5 file, a SavedModel directory, "
            "or a weights file with --model NAME"
        )
    _refuse_lambda(path, config)
    keras_model = _keras_load(path)
    name = keras_model.name if keras_model.name in registry_names() else None
    stem = os.path.basename(os.path.normpath(path)).split(".")[0]
    if name is None and stem in registry_names():
        name = stem
    return LoadedModel(
        keras_model,
        {"kind": "file", "path": os.path.abspath(path), "sha256": sha256_of(path)},
        card_name=name,
        is_qat=is_qat_model(keras_model),
    )


def _load_weights(path, model_name, input_size, classes, qat):
    if model_name not in registry_names():
        raise ExportError(f"--model {model_name}: {_not_a_name(model_name)}")
    if os.path.isdir(path) or path.endswith(KERAS_SUFFIXES):
        raise ExportError(f"{path}: a saved model, not a weights file; drop --model NAME")
    if path.endswith(H5_SUFFIXES) and _h5_config(path) is not None:
        raise ExportError(f"{path}: a full saved model, not a weights file; drop --model NAME")
    built = _build(model_name, input_size, classes, qat)
    try:
        built.load_weights(path)
    except Exception as exc:  # keras raises many types; the user needs the file and the reason
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"{path}: cannot load weights into {model_name}: {first}") from exc
    return LoadedModel(
        built,
        {"kind": "weights", "path": os.path.abspath(path), "sha256": sha256_of(path), "name": model_name},
        card_name=model_name,
        is_qat=qat,
    )


def _build(name, input_size, classes, qat):
    from mobilecnn import create_model
    from mobilecnn.registry import get_card

    card = get_card(name)
    size = input_size or card.default_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    kwargs = {"input_shape": (height, width, 3)}
    if classes is not None:
        kwargs["classes"] = classes
    try:
        model = create_model(name, **kwargs)
    except (ValueError, TypeError) as exc:
        raise ExportError(f"{name}: cannot build with {kwargs}: {exc}") from exc
    if qat:
        from mobilecnn.quantization import quantize

        model = quantize(model)
    return model


def _keras_load(path):
    from mobilecnn.compat import keras
    from mobilecnn.quantization import custom_objects, quantize_scope

    try:
        with quantize_scope():
            return keras.models.load_model(path, custom_objects=custom_objects(), compile=False, safe_mode=True)
    except Exception as exc:  # corrupt or foreign files raise anything from OSError to KeyError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"{path}: cannot load the Keras model: {first}") from exc


def inner_layer(layer):
    """The layer a QAT (or pruning) wrapper holds; the layer itself when unwrapped."""
    return getattr(layer, "layer", layer)


def is_qat_model(model):
    """True when any layer is a TF-MOT QuantizeWrapper or QuantizeLayer."""
    import tensorflow_model_optimization as tfmot

    wrapper = tfmot.quantization.keras.QuantizeWrapper
    return any(isinstance(layer, wrapper) or type(layer).__name__ == "QuantizeLayer" for layer in model.layers)


# -- reading saved configurations without deserializing them -------------
def _keras_zip_config(path):
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError):
        raise ExportError(f"{path}: not a Keras model file (expected a .keras zip archive holding config.json)") from None


def _h5_config(path):
    """The model config of a full-model .h5 file; None for a weights-only .h5."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
    except OSError:
        raise ExportError(f"{path}: not an HDF5 model file") from None
    if raw is None:
        return None
    try:
        return json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except ValueError:
        raise ExportError(f"{path}: its model_config attribute is not valid JSON") from None


def _savedmodel_config(path):
    from tf_keras.protobuf import saved_metadata_pb2

    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise ExportError(f"{path}: a directory, but not a SavedModel (no saved_model.pb)")
    metadata_path = os.path.join(path, "keras_metadata.pb")
    if not os.path.isfile(metadata_path):
        raise ExportError(f"{path}: a SavedModel without Keras metadata (keras_metadata.pb); export needs a Keras model")
    metadata = saved_metadata_pb2.SavedMetadata()
    try:
        with open(metadata_path, "rb") as f:
            metadata.ParseFromString(f.read())
        return [json.loads(node.metadata) for node in metadata.nodes]
    except Exception:  # protobuf DecodeError or bad JSON: the file is damaged
        raise ExportError(f"{path}: keras_metadata.pb is unreadable") from None


def _refuse_lambda(path, config):
    name = _find_lambda(config)
    if name is not None:
        raise ExportError(
            f"{path}: contains a Lambda layer ({name!r}); Lambda layers carry arbitrary Python code and are "
            "refused in safe mode. Rebuild the model with registered layers"
        )


def _find_lambda(node):
    if isinstance(node, dict):
        if node.get("class_name") == "Lambda":
            return node.get("config", {}).get("name") or node.get("name") or "lambda"
        children = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return None
    for child in children:
        found = _find_lambda(child)
        if found is not None:
            return found
    return None
