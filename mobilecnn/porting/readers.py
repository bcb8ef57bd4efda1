"""Read a PyTorch-layout state dict (name -> array) from .npz, .safetensors or .pth.

Nothing here unpickles arbitrary objects: .npz is opened with
`allow_pickle=False`, .safetensors is a JSON header plus raw little-endian
buffers (parsed here, so the `safetensors` package is not needed), and .pth
is read only through `torch.load(weights_only=True)`, PyTorch's restricted
unpickler, when torch is installed.
"""
import json
import os
import struct

import numpy as np

from .errors import PortError

SUFFIXES = (".npz", ".safetensors", ".pth", ".pt", ".bin")

# safetensors dtype tag -> numpy dtype (BF16 is widened by hand below).
_SAFETENSORS_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?",
}
_HEADER_LIMIT = 100 * 2**20  # the format caps headers at 100 MB


def read_state_dict(path):
    """Return {name: numpy array} from a checkpoint file, chosen by its suffix."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise PortError(f"checkpoint not found: {path}")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".npz":
        state = read_npz(path)
    elif suffix == ".safetensors":
        state = read_safetensors(path)
    elif suffix in (".pth", ".pt", ".bin"):
        state = read_pth(path)
    else:
        raise PortError(f"checkpoint {path}: unknown format {suffix or '(no suffix)'}; expected one of {SUFFIXES}")
    if not state:
        raise PortError(f"checkpoint {path} holds no tensors")
    return strip_data_parallel(state)


def strip_data_parallel(state):
    """Drop the "module." prefix that nn.DataParallel puts on every name."""
    if all(name.startswith("module.") for name in state):
        return {name[len("module."):]: value for name, value in state.items()}
    return state


def read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: np.asarray(archive[name]) for name in archive.files}
    except (OSError, ValueError) as exc:
        raise PortError(f"checkpoint {path} is not a readable .npz of plain arrays: {exc}") from None


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise PortError(f"checkpoint {path} is not a .safetensors file (shorter than its 8-byte header size)")
        (size,) = struct.unpack("<Q", raw)
        if size > _HEADER_LIMIT:
            raise PortError(f"checkpoint {path} is not a .safetensors file (header size {size} is implausible)")
        try:
            header = json.loads(f.read(size))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise PortError(f"checkpoint {path} is not a .safetensors file (header is not JSON)") from None
        data = f.read()
    header.pop("__metadata__", None)
    return {name: _safetensors_array(path, name, info, data) for name, info in header.items()}


def _safetensors_array(path, name, info, data):
    try:
        dtype, shape, (start, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
    except (KeyError, TypeError, ValueError):
        raise PortError(f"checkpoint {path}: malformed header entry for tensor '{name}'") from None
    if not 0 <= start <= end <= len(data):
        raise PortError(f"checkpoint {path}: tensor '{name}' lies outside the file (truncated?)")
    buffer = data[start:end]
    if dtype == "BF16":
        # bfloat16 is the top half of a float32.
        words = np.frombuffer(buffer, "<u2").astype(np.uint32) << 16
        array = words.view(np.float32)
    elif dtype in _SAFETENSORS_DTYPES:
        array = np.frombuffer(buffer, _SAFETENSORS_DTYPES[dtype])
    else:
        raise PortError(f"checkpoint {path}: tensor '{name}' has unsupported dtype {dtype}")
    if array.size != int(np.prod(shape, dtype=np.int64)):
        raise PortError(f"checkpoint {path}: tensor '{name}' has {array.size} values for shape {shape}")
    return array.reshape(shape)


def read_pth(path):
    try:
        import torch
    except ImportError:
        raise PortError(
            f"checkpoint {path}: reading .pth files needs PyTorch (pip install torch), which is not installed; "
            "without it mobilecnn will not unpickle the file. Convert it where torch is available, e.g. "
            "numpy.savez('ckpt.npz', **{k: v.numpy() for k, v in torch.load(p, weights_only=True).items()})"
        ) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, ... for bad or unsafe files
        raise PortError(f"checkpoint {path}: torch.load(weights_only=True) refused it: {exc}") from None
    # Training checkpoints often wrap the weights: {"state_dict": {...}} or {"model": {...}}.
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise PortError(f"checkpoint {path} holds a {type(obj).__name__}, not a state dict")
    state = {}
    for name, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise PortError(f"checkpoint {path}: entry '{name}' is a {type(value).__name__}, not a tensor")
        state[name] = value.detach().to("cpu").float().numpy() if value.is_floating_point() else value.numpy()
    return state
