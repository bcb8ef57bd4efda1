"""Run folders: where a train/qat/prune run keeps its config, checkpoints, logs and results.

Layout of a run folder:

    config.json      what was asked (command, model, data, hyper-parameters)
    checkpoints/     one checkpoint per epoch (weights, optimizer, epoch, RNG state)
    tensorboard/     TensorBoard event files
    history.json     per-epoch metrics, rewritten after every epoch
    ...              the command's outputs (model files, reports)

Every file is written to a temporary name in the same folder and then
renamed, so a killed run never leaves a half-written file behind.
"""
import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

CONFIG = "config.json"
HISTORY = "history.json"


class RunError(ValueError):
    """A run folder cannot be created or resumed; the message names the folder."""


def write_json(path, payload):
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True, default=str)
        handle.write("\n")
    os.replace(tmp, path)


def read_json(path):
    with open(path) as handle:
        return json.load(handle)


def prepare(run_dir, config, resume=False, force=False):
    """Create (or reopen, for resume) a run folder and return (path, config).

    A new run needs an empty or missing folder unless `force`. A resumed run
    takes its config from the folder; `config` entries that are not None
    must agree with it, so a resume cannot silently change the recipe.
    """
    run_dir = Path(run_dir)
    if resume:
        saved_path = run_dir / CONFIG
        if not saved_path.is_file():
            raise RunError(f"cannot resume: {saved_path} not found (is {run_dir} a run folder?)")
        saved = read_json(saved_path)
        conflicts = {k: (saved.get(k), v) for k, v in config.items() if v is not None and saved.get(k) != v}
        if conflicts:
            detail = ", ".join(f"{k}: run has {old!r}, given {new!r}" for k, (old, new) in sorted(conflicts.items()))
            raise RunError(f"cannot resume {run_dir} with different settings ({detail})")
        return run_dir, saved
    if run_dir.exists() and any(run_dir.iterdir()) and not force:
        raise RunError(f"run folder {run_dir} is not empty; use --resume to continue it or --force to overwrite")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / CONFIG, config)
    return run_dir, config


@contextlib.contextmanager
def undone_on_error(run_dir):
    """Remove what the block adds to `run_dir` (the folder too, if the block made it) when the block raises.

    A new run that fails before it trains (bad data, unreadable model file)
    then leaves nothing behind that would make the rerun ask for --force.
    """
    run_dir = Path(run_dir)
    existed = run_dir.is_dir()
    before = set(run_dir.iterdir()) if existed else set()
    try:
        yield
    except BaseException:
        if not existed:
            shutil.rmtree(run_dir, ignore_errors=True)
        elif run_dir.is_dir():
            for entry in set(run_dir.iterdir()) - before:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        raise


def save_keras(model, path):
    """Save a float or pruning-stripped model as .keras, atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    model.save(tmp)
    os.replace(tmp, path)
    return path


def load_model_file(path, custom_objects=None):
    """Load a user's .keras/.h5 model in Keras safe mode (no Python code is unpickled)."""
    from mobilecnn.compat import keras  # here, not at the top: `mobilecnn train --help` needs no TensorFlow
    from mobilecnn.quantization import custom_objects as zoo_objects

    path = _checked_model_file(path)
    objects = {**zoo_objects(), **(custom_objects or {})}
    if path.suffix == ".keras":
        return keras.models.load_model(path, custom_objects=objects, compile=False, safe_mode=True)
    # The legacy .h5 loader has no safe_mode argument; this scope makes Lambda deserialization refuse.
    from tf_keras.src.saving.serialization_lib import SafeModeScope

    with SafeModeScope(True):
        return keras.models.load_model(path, custom_objects=objects, compile=False)


def _checked_model_file(path):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    if path.suffix not in (".keras", ".h5"):
        raise ValueError(f"model file must be .keras or .h5, got {path}")
    return path


def is_model_file(spec):
    """True when a MODEL argument names a file rather than a zoo model."""
    return os.path.sep in str(spec) or str(spec).endswith((".keras", ".h5"))


def check_model_spec(spec):
    """Fail, naming MODEL, unless `spec` is an existing .keras/.h5 file or a zoo name (checked before any work)."""
    if is_model_file(spec):
        _checked_model_file(spec)
        return
    from mobilecnn.registry import did_you_mean, registry

    if spec not in registry():
        raise ValueError(f"MODEL {spec!r}: not a model file and not a zoo name{did_you_mean(spec)}")


def resolve_model(spec, input_shape, classes):
    """A zoo model name (random init, logits output) or a model file path, as a new tf_keras Model."""
    if is_model_file(spec):
        model = load_model_file(spec)
        shape = tuple(model.inputs[0].shape[1:])
        if shape != tuple(input_shape):
            raise ValueError(f"{spec} takes inputs of shape {shape}, not {tuple(input_shape)} (check --image-size)")
        if model.outputs[0].shape[-1] != classes:
            raise ValueError(f"{spec} has {model.outputs[0].shape[-1]} outputs but the data has {classes} classes")
        return model
    from mobilecnn import create_model

    check_model_spec(spec)
    return create_model(spec, input_shape=tuple(input_shape), classes=classes, classifier_activation=None)


def normalization_for(spec):
    """The model card's normalization for a zoo name, else None (the caller picks)."""
    if is_model_file(spec):
        return None
    from mobilecnn.registry import get_card

    return get_card(spec).normalization
