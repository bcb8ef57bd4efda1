"""Host benchmark of .tflite models: the timing rules of toolchain notes section 6.

Variants (threads x backend) are run in interleaved trials (A, B, A, B, ...), each trial with a fresh
runner, the process pinned to `threads` CPUs, inputs set once, and only `invoke()` timed.
"""
from __future__ import annotations

import itertools
import os
import re
import time

import numpy as np

from . import machine as machine_info
from . import runtimes
from .stats import combine_trials
from .timing import PeakRss, TimingPolicy, allowed_cpus, cpus_for_threads, measure, pinned

BACKENDS = ("xnnpack", "builtin", "reference", "compiled")


def random_inputs(runner, seed=0):
    """One float array per input; quantized inputs get values inside their representable range."""
    rng = np.random.default_rng(seed)
    arrays = []
    for info in runner.input_details:
        scale, zero_point = info["quantization"]
        if info["dtype"].kind in "iu" and scale:
            limits = np.iinfo(info["dtype"])
            lo, hi = (limits.min - zero_point) * scale, (limits.max - zero_point) * scale
        else:
            lo, hi = -1.0, 1.0
        arrays.append(rng.uniform(lo, hi, size=info["shape"]).astype(np.float32))
    return arrays


def _weight_cache(weight_cache_dir, model_path, threads):
    if weight_cache_dir is None:
        return None
    os.makedirs(weight_cache_dir, exist_ok=True)
    stem = os.path.basename(model_path).rsplit(".", 1)[0]
    return os.path.join(weight_cache_dir, f"{stem}.t{threads}.xnnpack_cache")


def _one_trial(model_path, threads, backend, runtime, policy, cpus, weight_cache_dir):
    with pinned(cpus), PeakRss() as rss:
        runner = runtimes.open_runner(model_path, runtime=runtime, num_threads=threads, backend=backend,
                                      weight_cache_path=_weight_cache(weight_cache_dir, model_path, threads))
        for index, array in enumerate(random_inputs(runner)):
            runner.set_input(array, index)
        warmup, measured = measure(runner.invoke, policy)
        trial = {
            "samples": measured, "warmup_runs": len(warmup), "init_ms": runner.init_ms,
            "partitions": runner.partitions, "fully_accelerated": runner.fully_accelerated,
            "runtime": runner.runtime, "runtime_version": runner.runtime_version,
        }
    trial["peak_rss_mb"], trial["peak_rss_scope"] = rss.peak_mb, rss.scope
    return trial


_MODE_SUFFIX = re.compile(r"[._-](fp32|float32|fp16|float16|dynamic|int8|uint8|int16x8|16x8|qat)$")


def describe_model(model_path, runtime="auto", mode=None):
    """Name, quantization mode, IO type and size of a .tflite.

    Exported models carry export's metadata (architecture name, mode, io); for other files the mode is
    read from the op dtypes and the name is the file stem without a trailing mode tag, so that
    `mnv2_fp32.tflite` and `mnv2_int8.tflite` pair up in reports.
    """
    from export.metadata import read_metadata

    runner = runtimes.open_runner(model_path, runtime=runtime, backend="builtin")
    try:
        meta = read_metadata(model_path) or {}
    except (ValueError, ImportError):
        meta = {}
    stem = os.path.basename(model_path).rsplit(".", 1)[0]
    name = stem
    while _MODE_SUFFIX.search(name):
        name = _MODE_SUFFIX.sub("", name)
    return {"model": meta.get("model") or name or stem, "model_file": os.path.basename(model_path),
            "model_path": os.path.abspath(model_path), "mode": mode or meta.get("mode") or runtimes.infer_mode(runner),
            "io": meta.get("io") or runtimes.infer_io(runner), "size_bytes": os.path.getsize(model_path)}


def bench_host(model_path, *, threads=(1,), backends=("xnnpack",), trials=3, policy=TimingPolicy(),
               runtime="auto", mode=None, cpus=None, weight_cache_dir=None, log=None, machine=None):
    """Benchmark one .tflite on this host; one result row per (threads, backend)."""
    if not os.path.isfile(model_path):
        raise FileNotFoundError(f"{model_path}: model file not found")
    if trials < 1:
        raise ValueError("trials must be at least 1")
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise ValueError(f"unknown backend(s) {sorted(unknown)}; expected {BACKENDS}")
    log = log or (lambda message: None)
    machine = machine or machine_info.describe()
    info = describe_model(model_path, runtime, mode)
    pool = list(cpus) if cpus else allowed_cpus()
    variants = list(itertools.product(threads, backends))
    results = {variant: [] for variant in variants}
    for trial in range(trials):
        for variant in variants:  # interleaved: variant order repeats inside every trial
            threads_n, backend = variant
            log(f"{info['model']}: trial {trial + 1}/{trials}, {threads_n} thread(s), {backend}")
            results[variant].append(_one_trial(model_path, threads_n, backend, runtime, policy,
                                               cpus_for_threads(threads_n, pool), weight_cache_dir))
    rows = []
    for (threads_n, backend), trial_list in results.items():
        stats = combine_trials([t["samples"] for t in trial_list])
        first = trial_list[0]
        used_cpus = cpus_for_threads(threads_n, pool)
        row = dict(info)
        row.update({
            "target": "host", "runtime": first["runtime"], "runtime_version": first["runtime_version"],
            "backend": backend, "xnnpack": backend in ("xnnpack", "compiled"), "threads": threads_n,
            "cpus": used_cpus, "partitions": first["partitions"], "fully_accelerated": first["fully_accelerated"],
            "init_ms": float(np.median([t["init_ms"] for t in trial_list])),
            "init_ms_first_trial": first["init_ms"],
            "warmup_runs": first["warmup_runs"],
            "peak_rss_mb": max(t["peak_rss_mb"] for t in trial_list), "peak_rss_scope": first["peak_rss_scope"],
            "machine": machine, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "status": "ok", "warnings": [],
        })
        row.update(stats)
        if len(used_cpus) < threads_n:
            row["warnings"].append(f"{threads_n} threads on {len(used_cpus)} usable CPU(s): oversubscribed")
        if row["partitions"] is not None and row["partitions"] > 1:
            row["warnings"].append(f"partial delegation: {row['partitions']} XNNPACK partitions")
        if row["fully_accelerated"] is False:
            row["warnings"].append("CompiledModel reports the model is not fully accelerated")
        rows.append(row)
    return rows
