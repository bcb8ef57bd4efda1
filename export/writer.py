"""Atomic output: the .tflite and its JSON manifest appear whole, or not at all.

Each file is written to a temporary file in the destination directory and
then moved into place: `os.replace` with --force, otherwise a hard link,
which fails instead of overwriting a file that appeared meanwhile.
"""
import json
import os
import tempfile

from .errors import ExportError


def manifest_path(out):
    """`model.tflite` -> `model.manifest.json`, beside it."""
    root, _ = os.path.splitext(os.fspath(out))
    return root + ".manifest.json"


def check_destination(out, force):
    """Fail early (before converting) when OUT or its manifest would be overwritten or cannot be written."""
    out = os.fspath(out)
    if not out.endswith(".tflite"):
        raise ExportError(f"-o {out}: the output file name must end in .tflite")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise ExportError(f"-o {out}: directory {parent} does not exist")
    if os.path.isdir(out):
        raise ExportError(f"-o {out}: is a directory")
    if not force:
        for path in (out, manifest_path(out)):
            if os.path.exists(path):
                raise ExportError(f"{path} already exists; pass --force to overwrite it")


def write_outputs(out, tflite, manifest, force=False):
    """Write `tflite` (bytes) to `out` and `manifest` (dict) beside it; return both paths."""
    out = os.fspath(out)
    check_destination(out, force)
    meta = manifest_path(out)
    staged, placed = [], []
    try:
        staged.append((_stage(out, tflite), out))
        staged.append((_stage(meta, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()), meta))
        for tmp, final in staged:
            _place(tmp, final, force)
            placed.append(final)
    except FileExistsError as exc:
        for final in placed:
            os.unlink(final)
        raise ExportError(f"{exc.filename2 or exc.filename} already exists; pass --force to overwrite it") from None
    finally:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return out, meta


def _stage(final, data):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(final)), prefix=".", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def _place(tmp, final, force):
    if force:
        os.replace(tmp, final)
        return
    os.link(tmp, final)  # raises FileExistsError rather than overwrite
    os.unlink(tmp)
