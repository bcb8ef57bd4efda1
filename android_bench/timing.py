"""The project's timing loop (toolchain notes section 6) and the process controls around it."""
from __future__ import annotations

import contextlib
import gc
import os
import resource
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class TimingPolicy:
    """benchmark_model's rule: warm up for N calls AND S seconds, then measure for N calls AND S seconds."""
    warmup_runs: int = 10
    warmup_seconds: float = 0.5
    min_runs: int = 50
    min_seconds: float = 1.0
    max_seconds: float = 60.0

    def __post_init__(self):
        if self.warmup_runs < 1 or self.min_runs < 1:
            raise ValueError("warm-up and measured runs must be at least 1")
        if min(self.warmup_seconds, self.min_seconds) < 0 or self.max_seconds <= 0:
            raise ValueError("durations must be non-negative and max_seconds positive")


def _loop(call, min_runs, min_seconds, max_seconds):
    """Call `call()` until both minimums are met (or max_seconds passes); per-call durations in ns."""
    samples = []
    clock = time.perf_counter_ns
    start = clock()
    min_ns, max_ns = int(min_seconds * 1e9), int(max_seconds * 1e9)
    while True:
        t0 = clock()
        call()
        t1 = clock()
        samples.append(t1 - t0)
        elapsed = t1 - start
        if (len(samples) >= min_runs and elapsed >= min_ns) or elapsed >= max_ns:
            return samples


def measure(call, policy=TimingPolicy()):
    """Warm up, then time each call; returns (warmup_ns, measured_ns). gc is off during both loops."""
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        warmup = _loop(call, policy.warmup_runs, policy.warmup_seconds, policy.max_seconds)
        measured = _loop(call, policy.min_runs, policy.min_seconds, policy.max_seconds)
    finally:
        if gc_was_enabled:
            gc.enable()
    return warmup, measured


def allowed_cpus():
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


@contextlib.contextmanager
def pinned(cpus):
    """Pin this process to `cpus` for the duration (no-op where the OS has no affinity call)."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        yield None
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(cpus))
    try:
        yield sorted(cpus)
    finally:
        os.sched_setaffinity(0, before)


def cpus_for_threads(threads, cpus=None):
    """The first `threads` CPUs this process may use (all of them when there are fewer)."""
    pool = list(cpus) if cpus else allowed_cpus()
    return pool[:max(1, threads)]


class PeakRss:
    """Peak resident set size of this process over a region, in MB.

    Linux lets a process reset its own high-water mark (`echo 5 > /proc/self/clear_refs`), so the peak
    is per region ("region" scope). Elsewhere the figure is the process lifetime peak ("process").
    """

    def __init__(self):
        self.scope = "process"
        self.peak_mb = None

    def __enter__(self):
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.scope = "region"
        except OSError:
            self.scope = "process"
        return self

    def __exit__(self, *exc):
        self.peak_mb = _vm_hwm_mb() if self.scope == "region" else _ru_maxrss_mb()
        return False


def _vm_hwm_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return _ru_maxrss_mb()


def _ru_maxrss_mb():
    # ru_maxrss is KiB on Linux (bytes on macOS, where this is only an upper bound anyway)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
