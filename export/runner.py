"""The project's one LiteRT runner.

Everything that executes a .tflite (export verification, the benchmarks in
android_bench) goes through `Runner`, so that one place decides how inputs
are quantized, how outputs are dequantized, and how XNNPACK partitions are
counted. Only ai-edge-litert is used: tf.lite.Interpreter is deprecated and
tflite-runtime does not work with numpy 2 (toolchain notes, section 5).
"""
import contextlib
import ctypes
import importlib.metadata
import os
import sys
import tempfile
import time

import numpy as np

BACKENDS = ("xnnpack", "builtin", "reference", "compiled")


def _resolver(backend, resolver_type=None):
    """The OpResolverType for `backend`, from ai-edge-litert's enum or another runtime's (`resolver_type`)."""
    if resolver_type is None:
        from ai_edge_litert.interpreter import OpResolverType as resolver_type
    OpResolverType = resolver_type
    return {
        # AUTO = built-in kernels with XNNPACK applied as the default delegate.
        "xnnpack": OpResolverType.AUTO,
        "builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        "reference": OpResolverType.BUILTIN_REF,
    }[backend]


def _interpreter(model_bytes, backend, num_threads, keep_tensors=False):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(
        model_content=model_bytes, num_threads=num_threads, experimental_op_resolver_type=_resolver(backend),
        experimental_preserve_all_tensors=keep_tensors,
    )
    interpreter.allocate_tensors()
    return interpreter


def _tensor_info(detail):
    scale, zero_point = detail["quantization"]
    return {
        "name": detail["name"],
        "index": int(detail["index"]),
        "shape": tuple(int(d) for d in detail["shape"]),
        "dtype": np.dtype(detail["dtype"]),
        "quantization": (float(scale), int(zero_point)),
    }


def _dtype_name(dtype):
    return None if dtype is None else np.dtype(dtype).name


def quantize(x, info):
    """Float array -> the tensor's integer dtype with its (scale, zero_point)."""
    scale, zero_point = info["quantization"]
    limits = np.iinfo(info["dtype"])
    q = np.round(np.asarray(x, np.float32) / scale) + zero_point
    return np.clip(q, limits.min, limits.max).astype(info["dtype"])


def dequantize(q, info):
    scale, zero_point = info["quantization"]
    if scale == 0.0:  # not a quantized tensor
        return np.asarray(q, np.float32)
    return (np.asarray(q, np.float32) - zero_point) * np.float32(scale)


class Runner:
    """Run a .tflite model with ai-edge-litert.

    `model` is a path or the model's bytes. `backend`:

    * ``"xnnpack"``: Interpreter with XNNPACK (the default delegate);
    * ``"builtin"``: Interpreter, built-in optimized kernels only;
    * ``"reference"``: Interpreter, reference kernels (slow; numerics oracle);
    * ``"compiled"``: `CompiledModel` on CPU (XNNPACK), the only way to use an
      XNNPACK weight cache (`weight_cache_path`, a file) and to ask
      `is_fully_accelerated()`.

    `keep_tensors=True` (builtin and reference backends) keeps every
    intermediate tensor readable after `invoke` (`tensors`, `read_tensor`);
    XNNPACK computes its partitions in buffers of its own, so it has none to keep.
    """

    def __init__(self, model, *, num_threads=1, backend="xnnpack", weight_cache_path=None, keep_tensors=False):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if weight_cache_path is not None and backend != "compiled":
            raise ValueError("weight_cache_path needs backend='compiled' (the Interpreter has no weight cache option)")
        if keep_tensors and backend not in ("builtin", "reference"):
            raise ValueError(f"keep_tensors needs backend 'builtin' or 'reference', got {backend!r}")
        self.keep_tensors = keep_tensors
        if not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"num_threads must be a positive integer, got {num_threads!r}")
        self.runtime, self.runtime_version = self._runtime_identity()
        self.model_bytes = _read_model(model)
        self.backend = backend
        self.num_threads = num_threads
        self._introspection = None
        start = time.perf_counter()
        if backend == "compiled":
            self._init_compiled(weight_cache_path)
        else:
            self._interp = self._make_interpreter(backend, num_threads)
            self.input_details = [_tensor_info(d) for d in self._interp.get_input_details()]
            self.output_details = [_tensor_info(d) for d in self._interp.get_output_details()]
        self.init_ms = (time.perf_counter() - start) * 1e3

    def _init_compiled(self, weight_cache_path):
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator
        from ai_edge_litert.options import CpuOptions, Options

        cpu = CpuOptions(num_threads=self.num_threads, xnnpack_weight_cache_path=os.fspath(weight_cache_path or ""))
        options = Options(hardware_accelerators=HardwareAccelerator.CPU, cpu_options=cpu)
        with _native_stderr_captured() as captured:
            try:
                self._cm = CompiledModel.from_buffer(self.model_bytes, options=options)
            except Exception as exc:
                raise RuntimeError(f"CompiledModel creation failed: {exc}; runtime log: {captured()[-2000:]}") from exc
        signature = next(iter(self._cm.get_signature_list()))
        # CompiledModel reports no quantization parameters; take them from the
        # model's tensors, in the signature's order (the order run_by_index uses).
        by_name = {
            d["name"]: _tensor_info(d)
            for d in self._inspector().get_tensor_details()
        }
        self.input_details = [by_name[d["name"]] for d in self._cm.get_input_tensor_details(signature).values()]
        self.output_details = [by_name[d["name"]] for d in self._cm.get_output_tensor_details(signature).values()]
        self._inputs = self._cm.create_input_buffers(0)
        self._outputs = self._cm.create_output_buffers(0)

    def _inspector(self):
        """A delegate-free interpreter: every op stays visible (not hidden in DELEGATE nodes)."""
        if self._introspection is None:
            self._introspection = self._make_interpreter("builtin", 1)
        return self._introspection

    # Runtimes other than ai-edge-litert (android_bench.runtimes) override these two.
    def _runtime_identity(self):
        """(runtime name, version); read when a runner is made, so importing this module needs no runtime."""
        return "ai-edge-litert", importlib.metadata.version("ai-edge-litert")

    def _make_interpreter(self, backend, num_threads):
        return _interpreter(self.model_bytes, backend, num_threads, self.keep_tensors)

    # -- running ---------------------------------------------------------
    def set_input(self, x, index=0):
        """Set input `index` from a float array (quantized here when the input is int8/uint8)."""
        info = self.input_details[index]
        x = np.asarray(x)
        if x.shape != info["shape"]:
            raise ValueError(f"input '{info['name']}' expects shape {info['shape']}, got {x.shape}")
        if np.issubdtype(x.dtype, np.floating) and info["dtype"] in (np.int8, np.uint8):
            x = quantize(x, info)
        else:
            x = x.astype(info["dtype"], copy=False)
        if self.backend == "compiled":
            self._inputs[index].write(x)
        else:
            self._interp.set_tensor(info["index"], x)

    def invoke(self):
        """Run the model once on the inputs already set (the call benchmarks time)."""
        if self.backend == "compiled":
            self._cm.run_by_index(0, self._inputs, self._outputs)
        else:
            self._interp.invoke()

    def get_output(self, index=0):
        """Output `index` as a float array (dequantized when the output is quantized)."""
        info = self.output_details[index]
        if self.backend == "compiled":
            raw = self._outputs[index].read(int(np.prod(info["shape"])), info["dtype"]).reshape(info["shape"])
        else:
            raw = self._interp.get_tensor(info["index"])
        if info["dtype"] in (np.int8, np.uint8, np.int16):
            return dequantize(raw, info)
        return np.array(raw, np.float32, copy=True)

    def run(self, x):
        self.set_input(x)
        self.invoke()
        return self.get_output()

    def run_all(self, x):
        """Outputs for every sample of `x`, run in chunks of the file's fixed batch (len(x) must be a multiple)."""
        batch = self.input_details[0]["shape"][0]
        if len(x) % batch:
            raise ValueError(f"run_all needs a multiple of the model's batch {batch} samples, got {len(x)}")
        return np.concatenate([self.run(x[start : start + batch]) for start in range(0, len(x), batch)])

    # -- inspection ------------------------------------------------------
    def tensors(self):
        """Every tensor of the model (name, index, shape, dtype, quantization), in the file's order."""
        return [_tensor_info(d) for d in self._inspector().get_tensor_details()]

    def read_tensor(self, info):
        """Tensor `info` (from `tensors`) after the last `invoke`, dequantized with its per-tensor (scale, zero
        point), raw where it has none (floats, int32, per-channel weights); needs keep_tensors=True."""
        if not self.keep_tensors:
            raise ValueError("read_tensor needs a Runner made with keep_tensors=True")
        return dequantize(self._interp.get_tensor(info["index"]), info)

    @property
    def partitions(self):
        """Number of DELEGATE nodes after allocation (None for the compiled backend)."""
        if self.backend == "compiled":
            return None
        return sum(op["op_name"] == "DELEGATE" for op in self._interp._get_ops_details())

    @property
    def fully_accelerated(self):
        """CompiledModel.is_fully_accelerated(); None for interpreter backends."""
        if self.backend != "compiled":
            return None
        return self._cm.is_fully_accelerated()

    def ops(self):
        """Every op of the model with its input and output dtypes (names such as 'int8')."""
        return [
            {
                "index": int(op["index"]),
                "name": op["op_name"],
                "inputs": [int(i) for i in op["inputs"]],  # tensor indices; -1 for an omitted optional input
                "outputs": [int(i) for i in op["outputs"]],
                "input_dtypes": [_dtype_name(t) for t in op["operand_types"]],
                "output_dtypes": [_dtype_name(t) for t in op["result_types"]],
            }
            for op in self._inspector()._get_ops_details()
        ]

    def constant(self, index):
        """(values, per-channel scales) of the constant tensor `index` (a weight or bias), as stored."""
        interpreter = self._inspector()
        detail = interpreter._get_tensor_details(index, 0)
        scales = np.asarray(detail["quantization_parameters"]["scales"], np.float64)
        return interpreter.get_tensor(index), scales

    def close(self):
        """Release the runtime (quietly: CompiledModel logs its accelerators' teardown)."""
        with _native_stderr_captured():
            self._cm = self._interp = self._introspection = self._inputs = self._outputs = None

    def __repr__(self):
        return f"Runner(backend={self.backend!r}, num_threads={self.num_threads}, size={len(self.model_bytes)} B)"


@contextlib.contextmanager
def _native_stderr_captured():
    """Hold back what native code writes to fd 2 (CompiledModel logs a page of
    plugin-discovery INFO lines on every creation); yields a reader for it."""
    sys.stderr.flush()
    _flush_c_stdio()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lambda: (sink.seek(0), sink.read().decode(errors="replace"))[1]
        finally:
            _flush_c_stdio()
            os.dup2(saved, 2)
            os.close(saved)


def _flush_c_stdio():
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no C library handle on this platform: nothing to flush
        pass


def _read_model(model):
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    path = os.fspath(model)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file not found: {path}")
    with open(path, "rb") as f:
        return f.read()
