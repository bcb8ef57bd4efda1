"""Port PyTorch checkpoints (torchvision, timm, lukemelas layouts) into zoo models.

    from mobilecnn.porting import port, save_weights
    model = port("torchvision", "mobilenet_v2.safetensors", "mobilenet_v2_1.0")
    save_weights(model, "mobilenet_v2.weights.h5")
    # later: load_ported("mobilenet_v2.weights.h5"), or
    # create_model("mobilenet_v2_1.0", weights="mobilenet_v2.weights.h5", **build_kwargs("torchvision", ...))

`port` reads the state dict (.npz, .safetensors, or .pth when torch is
installed), builds the model with the padding and BatchNorm epsilon the
checkpoint was trained with and the class count of its classifier, and
loads every tensor exactly once (see `core`).
"""
import json
import os
import tempfile

from .errors import PortError
from .readers import read_state_dict

SOURCES = ("torchvision", "timm", "lukemelas")


def _source_module(source):
    if source not in SOURCES:
        raise PortError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    from importlib import import_module

    return import_module(f".{source}", __name__)


def recipes(source):
    """{registry name: Recipe} for `source`."""
    return _source_module(source).RECIPES


def get_recipe(source, model):
    """The Recipe for `model` (a registry name or the source's own name, e.g. "shufflenet_v2_x1_0")."""
    module = _source_module(source)
    name = module.ALIASES.get(model, model)
    if name not in module.RECIPES:
        raise PortError(f"no {source} port for model {model!r}; {source} ports: {', '.join(sorted(module.RECIPES))}")
    return module.RECIPES[name]


def build_kwargs(source, model):
    """Constructor kwargs (padding, bn_epsilon) that reproduce the source framework's numerics."""
    return dict(get_recipe(source, model).build)


def classes_of(recipe, state, where):
    if recipe.classifier not in state:
        raise PortError(f"{where} has no classifier tensor '{recipe.classifier}' "
                        f"(is it a {recipe.model} checkpoint in this layout?)")
    return int(state[recipe.classifier].shape[0])


def port(source, checkpoint, model, *, classifier_activation="softmax"):
    """Build `model` and load `checkpoint` (a path or a {name: array} state dict) into it."""
    from ..registry import create_model
    from .core import load_state_dict

    recipe = get_recipe(source, model)
    if isinstance(checkpoint, dict):
        state, where = checkpoint, "state dict"
    else:
        state, where = read_state_dict(checkpoint), f"checkpoint {os.fspath(checkpoint)}"
    keras_model = create_model(recipe.model, classes=classes_of(recipe, state, where),
                               classifier_activation=classifier_activation, **recipe.build)
    load_state_dict(keras_model, state, recipe.assign(keras_model), source=f"{where} ({source} layout)")
    return keras_model


def save_weights(model, out, *, force=False, provenance=None):
    """Write `model`'s weights to `out` (.h5) atomically; refuse to replace a file unless `force`.

    `provenance` (a dict) is stored as the HDF5 attribute "mobilecnn_port".
    """
    import h5py

    from ..base import PORT_RECORD

    out = os.fspath(out)
    if not out.endswith(".h5"):
        raise PortError(f"output {out}: expected a .h5 file name (e.g. model.weights.h5)")
    if os.path.exists(out) and not force:
        raise PortError(f"output {out} exists; pass force=True (--force) to replace it")
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise PortError(f"output {out}: directory {folder} does not exist")
    # tf_keras picks the format from the name: "*.weights.h5" is the Keras v3
    # weights file, any other "*.h5" the legacy HDF5 one; the temp name keeps it.
    suffix = ".weights.h5" if out.endswith(".weights.h5") else ".h5"
    fd, tmp = tempfile.mkstemp(suffix=suffix, prefix=".port-", dir=folder)
    os.close(fd)
    try:
        model.save_weights(tmp)
        if provenance:
            with h5py.File(tmp, "a") as f:
                f.attrs[PORT_RECORD] = json.dumps(provenance, sort_keys=True)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return out


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_provenance(path):
    """The "mobilecnn_port" record of a weights file written by `save_weights`, or None."""
    from ..base import weights_record

    return weights_record(path)


def load_ported(path, **kwargs):
    """Rebuild the model a `mobilecnn port` file came from (same padding, epsilon and classes) and load it.

    `kwargs` go to the constructor (e.g. classifier_activation=None).
    """
    from ..registry import create_model

    record = read_provenance(path)
    if record is None:
        raise PortError(f"{os.fspath(path)} carries no 'mobilecnn_port' record; build the model yourself "
                        "and pass weights=PATH")
    return create_model(record["model"], weights=os.fspath(path), classes=record["classes"],
                        **{**record["build"], **kwargs})


__all__ = ["SOURCES", "PortError", "build_kwargs", "get_recipe", "load_ported", "port", "read_provenance", "read_state_dict",
           "recipes", "save_weights"]
