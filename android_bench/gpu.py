"""Keras model latency and throughput through TensorFlow on a GPU.

The model is wrapped in a `tf.function` (XLA-compiled unless disabled). The first call of each batch
size traces and compiles; its time is reported as `compile_ms`, apart from the steady-state figures.
Every timed call ends with `.numpy()` on the output, which waits for the device to finish -- without it
only the asynchronous kernel launch would be timed.
"""
from __future__ import annotations

import time

import numpy as np

from .stats import summarize_ns
from .timing import TimingPolicy, measure


class NoGpuError(RuntimeError):
    pass


def gpu_devices():
    from mobilecnn.compat import tf

    return tf.config.list_physical_devices("GPU")


def require_gpu():
    devices = gpu_devices()
    if not devices:
        raise NoGpuError("target gpu: TensorFlow sees no GPU on this machine (tf.config.list_physical_devices('GPU') "
                         "is empty; a CUDA build of TensorFlow and a driver are needed: pip install 'mobilecnn[gpu]')")
    return devices


def with_policy(model, policy_name):
    """Rebuild `model` with every layer under the dtype policy `policy_name`, keeping its weights.

    Saved layers carry an explicit dtype, so setting the global policy would not affect them. The
    output layer stays float32 so logits (and any softmax) are computed in full precision.
    """
    from mobilecnn.compat import keras
    from mobilecnn.quantization import custom_objects

    config = model.get_config()
    output_names = {entry[0] for entry in config.get("output_layers", [])}
    for layer in config["layers"]:
        if layer["class_name"] == "InputLayer" or layer["config"]["name"] in output_names:
            continue
        layer["config"]["dtype"] = policy_name
    rebuilt = keras.Model.from_config(config, custom_objects=custom_objects())
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def _timed_first_call(fn, x):
    start = time.perf_counter_ns()
    fn(x).numpy()
    return (time.perf_counter_ns() - start) / 1e6


def bench_keras(model, *, device="/GPU:0", xla=True, mixed_precision=False, batch=32, policy=TimingPolicy(),
                seed=0):
    """Latency at batch 1 and throughput at `batch` for a tf_keras model on `device`."""
    from mobilecnn.compat import tf

    if mixed_precision:
        model = with_policy(model, "mixed_float16")
    height, width, channels = model.input_shape[1:]
    rng = np.random.default_rng(seed)
    row = {"xla": xla, "mixed_precision": mixed_precision, "device": device, "throughput_batch": batch}
    with tf.device(device):
        fn = tf.function(lambda x: model(x, training=False), jit_compile=xla)
        x1 = tf.constant(rng.uniform(-1, 1, (1, height, width, channels)).astype(np.float32))
        xb = tf.constant(rng.uniform(-1, 1, (batch, height, width, channels)).astype(np.float32))
        row["compile_ms"] = _timed_first_call(fn, x1)
        warmup, measured = measure(lambda: fn(x1).numpy(), policy)
        row.update(summarize_ns(measured))
        row["warmup_runs"] = len(warmup)
        row["compile_ms_batch"] = _timed_first_call(fn, xb)
        _, measured_batch = measure(lambda: fn(xb).numpy(), policy)
        batch_stats = summarize_ns(measured_batch)
        row["batch_median_ms"] = batch_stats["median_ms"]
        row["throughput_ips"] = batch / (batch_stats["median_ms"] / 1e3)
    return row


def device_description(device="/GPU:0"):
    from mobilecnn.compat import tf

    index = int(device.rsplit(":", 1)[-1]) if device.upper().startswith("/GPU") else None
    devices = tf.config.list_physical_devices("GPU")
    if index is None or index >= len(devices):
        return {"device": device}
    details = tf.config.experimental.get_device_details(devices[index])
    return {"device": device, "gpu": details.get("device_name"), "compute_capability": details.get("compute_capability")}
