"""`export_model`: load -> calibrate -> convert -> embed metadata -> verify -> write.

Verification runs on the final bytes (metadata included); nothing is written
unless every check passes, and then the .tflite and its manifest are placed
atomically.
"""
import contextlib
import datetime
import importlib.metadata
import os
import platform
from dataclasses import dataclass

import numpy as np

from . import data as data_lib
from .bias_alignment import align_biases
from .convert import CALIBRATED_MODES, calibrate_batchnorm, check_options, convert, input_shape
from .errors import ExportError
from .loading import LoadedModel, is_qat_model, load, registry_names
from .metadata import embed
from .runner import Runner
from .verify import verify as verify_model
from .writer import check_destination, manifest_path, write_outputs

BN_CALIBRATION_SAMPLES = 32


@dataclass
class ExportResult:
    path: str
    manifest_path: str
    manifest: dict


def export_model(
    model,
    out,
    *,
    mode="fp32",
    io="float",
    sparse=False,
    batch_size=1,
    model_name=None,
    input_size=None,
    classes=None,
    qat=False,
    rep_data=None,
    rep_samples=200,
    calibration_ranges="minmax",
    normalization=None,
    mean=None,
    std=None,
    labels=None,
    keep_activation=False,
    verify=True,
    verify_samples=16,
    allow_float_ops=False,
    allow_partial_delegation=False,
    eval_data=None,
    eval_limit=None,
    force=False,
):
    """Export `model` (path, registry name or tf_keras Model) to `out` (.tflite); see docs/export.md."""
    check_options(mode, io, sparse, batch_size, calibration_ranges=calibration_ranges)
    check_destination(out, force)
    if not isinstance(rep_samples, int) or rep_samples < 1:
        raise ExportError(f"--rep-samples must be a positive integer, got {rep_samples!r}")
    loaded = _load(model, model_name, input_size, classes, qat)
    check_options(mode, io, sparse, batch_size, loaded.is_qat, calibration_ranges)
    shape = input_shape(loaded.model)
    norm = data_lib.resolve_normalization(loaded.card_name, normalization=normalization, mean=mean, std=std)
    label_list = _read_labels(labels, loaded.model)

    rep, calibration = _calibration(loaded, mode, shape, norm, rep_data, rep_samples)
    if loaded.random_init:
        # Random weights decay to ~zero activations in inference mode; give
        # the BatchNorms statistics from data so outputs have a real scale.
        batch = data_lib.synthetic_samples(shape, norm or _fallback_norm(), BN_CALIBRATION_SAMPLES)
        calibrate_batchnorm(loaded.model, batch)
        loaded.notes.append(
            f"BatchNorm moving statistics set from {BN_CALIBRATION_SAMPLES} synthetic images (random weights)"
        )

    conversion = convert(
        loaded.model,
        mode,
        io=io,
        sparse=sparse,
        batch_size=batch_size,
        representative=rep,
        qat=loaded.is_qat,
        keep_activation=keep_activation,
        calibration_ranges=calibration_ranges,
    )
    info = model_metadata(loaded, conversion, norm, label_list)
    tflite = embed(conversion.tflite, info)

    verification = None
    if verify:
        samples = _verification_samples(rep, shape, norm, verify_samples, batch_size)
        eval_batches = None
        if eval_data is not None:
            eval_batches = data_lib.labelled_batches(eval_data, shape, norm, labels=label_list, limit=eval_limit)
        with _qat_biases_aligned(conversion, loaded.notes):
            verification = verify_model(
                conversion.model,
                tflite,
                mode=mode,
                samples=samples,
                perturbation=loaded.random_init,
                allow_float_ops=allow_float_ops,
                allow_partial_delegation=allow_partial_delegation,
                eval_batches=eval_batches,
            )
        if not verification.ok:
            raise ExportError(f"verification failed, nothing written: {'; '.join(verification.failures)}")

    manifest = build_manifest(out, tflite, loaded, conversion, info, calibration, verification)
    path, meta = write_outputs(out, tflite, manifest, force=force)
    return ExportResult(path, meta, manifest)


@contextlib.contextmanager
def _qat_biases_aligned(conversion, notes):
    """Inside, a QAT model's biases sit on the file's int32 grid, so parity shows what the conversion did rather
    than the bias rounding QAT leaves out (see bias_alignment); afterwards the model is as it came (it may be the
    caller's own object)."""
    if not conversion.qat:
        yield
        return
    saved = [variable.numpy() for variable in conversion.model.weights]
    try:
        shifts = align_biases(conversion.model, conversion.tflite)
        notes.append(f"QAT biases of {len(shifts)} layers moved onto the int8 file's int32 grid for the parity check")
    except ExportError as error:
        notes.append(f"QAT biases not aligned with the int8 file, so parity includes their rounding: {error}")
    try:
        yield
    finally:
        for variable, value in zip(conversion.model.weights, saved):
            variable.assign(value)


def _load(model, model_name, input_size, classes, qat):
    from mobilecnn.compat import keras

    if isinstance(model, keras.Model):
        name = model.name if model.name in registry_names() else None
        return LoadedModel(model, {"kind": "keras-object", "name": model.name}, card_name=name,
                           is_qat=is_qat_model(model))
    return load(model, model_name=model_name, input_size=input_size, classes=classes, qat=qat)


def _fallback_norm():
    # Only for synthetic inputs to random-weight models, where any fixed range will do.
    return data_lib.named_normalization("tf", "the 'tf' normalization ([-1, 1]; the model's own is unknown)")


def _calibration(loaded, mode, shape, norm, rep_data, rep_samples):
    """(representative array or None, description or None)."""
    needed = mode in CALIBRATED_MODES and not loaded.is_qat
    if rep_data is not None:
        rep = data_lib.folder_samples(rep_data, shape, norm, rep_samples, "--rep-data")
        return rep, f"{len(rep)} images from {os.path.abspath(rep_data)}, preprocessed with {norm['source']}"
    if not needed:
        return None, ("none: QAT model (ranges learned in training)" if loaded.is_qat and mode == "int8" else None)
    if not loaded.random_init:
        raise ExportError(
            f"--{mode} needs calibration data for this trained, non-QAT model: pass --rep-data DIR "
            "(a folder of images like the training data)"
        )
    use = norm or _fallback_norm()
    return data_lib.synthetic_samples(shape, use, rep_samples), data_lib.synthetic_description(rep_samples, use)


def _verification_samples(rep, shape, norm, count, batch_size):
    count = max(batch_size, count - count % batch_size)
    if rep is not None and len(rep) >= count:
        picks = np.linspace(0, len(rep) - 1, count).round().astype(int)
        return rep[picks]
    return data_lib.synthetic_samples(shape, norm or _fallback_norm(), count)


def _read_labels(labels, model):
    if labels is None:
        return None
    if isinstance(labels, (str, os.PathLike)):
        try:
            with open(labels, encoding="utf-8") as f:
                labels = [line.strip() for line in f if line.strip()]
        except OSError as exc:
            raise ExportError(f"--labels {labels}: cannot read: {exc.strerror}") from None
    labels = list(labels)
    outputs = int(model.outputs[0].shape[-1])
    if len(labels) != outputs:
        raise ExportError(f"--labels: {len(labels)} labels, but the model has {outputs} outputs")
    return labels


def _tensor_spec(info):
    scale, zero_point = info["quantization"]
    return {
        "name": info["name"],
        "shape": list(info["shape"]),
        "dtype": info["dtype"].name,
        "quantization": {"scale": scale, "zero_point": zero_point} if scale else None,
    }


def model_metadata(loaded, conversion, norm, labels):
    """The JSON embedded in the .tflite: what a consumer needs to feed and read the model."""
    import mobilecnn

    runner = Runner(conversion.tflite, backend="builtin")
    output = _tensor_spec(runner.output_details[0])
    output["kind"] = "logits" if conversion.dropped_activation else "model output"
    output["dropped_activation"] = conversion.dropped_activation
    return {
        "mobilecnn_version": mobilecnn.__version__,
        "model": loaded.card_name or loaded.model.name,
        "mode": conversion.mode,
        "io": conversion.io,
        "sparse": conversion.sparse,
        "qat": conversion.qat,
        "input": {**_tensor_spec(runner.input_details[0]), "layout": "NHWC", "color": "RGB"},
        "output": output,
        "normalization": None
        if norm is None
        else {"mean": norm["mean"], "std": norm["std"], "source": norm["source"],
              "formula": "(pixel - mean) / std, RGB pixels in 0..255"},
        "preprocessing": "central square crop, bilinear resize to the input size, then normalization",
        "labels": labels,
    }


def versions():
    from mobilecnn.compat import tf

    import mobilecnn

    found = {"mobilecnn": mobilecnn.__version__, "tensorflow": tf.__version__, "python": platform.python_version()}
    for package in ("tf-keras", "tensorflow-model-optimization", "ai-edge-litert", "numpy"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def build_manifest(out, tflite, loaded, conversion, info, calibration, verification):
    import hashlib

    source_size = None
    if "path" in loaded.source:
        path = loaded.source["path"]
        source_size = os.path.getsize(path) if os.path.isfile(path) else _dir_size(path)
    return {
        "file": os.path.basename(os.fspath(out)),
        "manifest": os.path.basename(manifest_path(out)),
        "sha256": hashlib.sha256(tflite).hexdigest(),
        "mode": conversion.mode,
        "io": conversion.io,
        "sparse": conversion.sparse,
        "batch_size": conversion.batch_size,
        "source": loaded.source,
        "model": {
            "name": info["model"],
            "card": loaded.card_name,
            "qat": loaded.is_qat,
            "random_init": loaded.random_init,
            "keras_params": int(conversion.model.count_params()),
            "output": info["output"]["kind"],
            "dropped_activation": conversion.dropped_activation,
        },
        "sizes": {"tflite_bytes": len(tflite), "source_bytes": source_size},
        "calibration": calibration,
        "calibration_ranges": conversion.calibration_ranges,
        "metadata": info,
        "verification": verification.as_dict() if verification is not None else {"skipped": True},
        "versions": versions(),
        "notes": loaded.notes,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _dir_size(path):
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)
