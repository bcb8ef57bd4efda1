"""Runtime selection: which Python TFLite runtime executes a model on this machine.

ai-edge-litert is the project's runtime, through export.runner.Runner. A board that only has
`tflite_runtime` (old Debian/Yocto images), or a machine with only TensorFlow, still gets the same
interface: `FallbackRunner` subclasses Runner and swaps only the interpreter class, so input
quantization, output dequantization and partition counting stay the code in export/runner.py.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import time

RUNTIMES = ("auto", "litert", "tflite_runtime", "tf.lite")

# runtime -> (module that must import, distribution whose version we report)
_MODULES = {
    "litert": ("ai_edge_litert", "ai-edge-litert"),
    "tflite_runtime": ("tflite_runtime", "tflite-runtime"),
    "tf.lite": ("tensorflow", "tensorflow"),
}


class RuntimeUnavailable(RuntimeError):
    pass


def is_available(runtime):
    module, _ = _MODULES[runtime]
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def resolve(requested="auto"):
    """The runtime to use: `requested`, or for "auto" the first installed of litert, tflite_runtime, tf.lite."""
    if requested not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {requested!r}")
    candidates = ("litert", "tflite_runtime", "tf.lite") if requested == "auto" else (requested,)
    for runtime in candidates:
        if is_available(runtime):
            return runtime
    if requested == "auto":
        raise RuntimeUnavailable("no TFLite runtime installed: install ai-edge-litert (pip install ai-edge-litert)")
    raise RuntimeUnavailable(f"runtime {requested!r} is not installed (module {_MODULES[requested][0]!r} not found)")


def _version(distribution, module):
    for name in (distribution, distribution + "-cpu") if distribution == "tensorflow" else (distribution,):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return getattr(module, "__version__", None)


def _interpreter_api(runtime):
    """(Interpreter class, OpResolverType enum, top-level package) of a fallback runtime."""
    if runtime == "tflite_runtime":
        module = importlib.import_module("tflite_runtime.interpreter")
        return module.Interpreter, module.OpResolverType, importlib.import_module("tflite_runtime")
    from mobilecnn.compat import tf

    return tf.lite.Interpreter, tf.lite.experimental.OpResolverType, tf


def _base_runner():
    from export.runner import Runner

    return Runner


def open_runner(model, *, runtime="auto", num_threads=1, backend="xnnpack", weight_cache_path=None):
    """A Runner on the chosen runtime (see module doc). `backend="compiled"` exists only on litert."""
    chosen = resolve(runtime)
    if chosen == "litert":
        return _base_runner()(model, num_threads=num_threads, backend=backend, weight_cache_path=weight_cache_path)
    if backend == "compiled" or weight_cache_path is not None:
        raise RuntimeUnavailable(f"backend 'compiled' and the XNNPACK weight cache need ai-edge-litert, not {chosen}")
    return fallback_runner_class()(model, runtime=chosen, num_threads=num_threads, backend=backend)


def fallback_runner_class():
    """Build FallbackRunner lazily: export.runner is imported only when a model is opened."""
    from export import runner as runner_module

    class FallbackRunner(runner_module.Runner):
        """export.runner.Runner on tflite_runtime or tf.lite (same set_input/invoke/get_output/partitions)."""

        def __init__(self, model, *, runtime, num_threads=1, backend="xnnpack"):
            if backend not in ("xnnpack", "builtin", "reference"):
                raise ValueError(f"backend must be xnnpack, builtin or reference on {runtime}, got {backend!r}")
            self._runtime = runtime
            self._api = _interpreter_api(runtime)
            super().__init__(model, num_threads=num_threads, backend=backend)

        def _runtime_identity(self):
            return self._runtime, _version(_MODULES[self._runtime][1], self._api[2])

        def _make_interpreter(self, backend, num_threads):
            interpreter_class, resolver, _ = self._api
            interpreter = interpreter_class(model_content=self.model_bytes, num_threads=num_threads,
                                            experimental_op_resolver_type=runner_module._resolver(backend, resolver))
            interpreter.allocate_tensors()
            return interpreter

    return FallbackRunner


def infer_mode(runner):
    """Quantization mode of a model read from its op dtypes, in export's names (export.convert.MODES).

    int8: every compute op has integer outputs; int16x8: int16 activations; dynamic: float compute ops
    fed int8 weights; fp16: float16 constants dequantized at load; fp32 otherwise.
    """
    ops = runner.ops()
    compute = [op for op in ops if op["name"] not in ("QUANTIZE", "DEQUANTIZE")]
    outputs = {dtype for op in compute for dtype in op["output_dtypes"]}
    if "int16" in outputs:
        return "int16x8"
    if compute and not outputs & {"float32", "float16"}:
        return "int8"
    if any(op["name"] == "DEQUANTIZE" and "float16" in op["input_dtypes"] for op in ops):
        return "fp16"
    if any("int8" in op["input_dtypes"] and "float32" in op["output_dtypes"] for op in compute):
        return "dynamic"
    return "fp32"


def infer_io(runner):
    """export's io name for the model's first input: float, int8 or uint8."""
    dtype = runner.input_details[0]["dtype"].name if runner.input_details else "float32"
    return dtype if dtype in ("int8", "uint8") else "float"
