"""Latency statistics over per-call samples (pure numpy, no timing here)."""
from __future__ import annotations

import numpy as np

STAT_FIELDS = ("mean_ms", "median_ms", "p90_ms", "p99_ms", "std_ms", "min_ms", "max_ms", "runs")


def summarize_ns(samples_ns):
    """Summary of per-call durations given in nanoseconds, reported in milliseconds."""
    samples = np.asarray(samples_ns, dtype=np.float64) / 1e6
    if samples.size == 0:
        raise ValueError("no samples to summarize")
    return {
        "mean_ms": float(samples.mean()),
        "median_ms": float(np.median(samples)),
        "p90_ms": float(np.percentile(samples, 90)),
        "p99_ms": float(np.percentile(samples, 99)),
        "std_ms": float(samples.std(ddof=1)) if samples.size > 1 else 0.0,
        "min_ms": float(samples.min()),
        "max_ms": float(samples.max()),
        "runs": int(samples.size),
    }


def combine_trials(trials):
    """Merge trials of one variant: the headline median is the median of the trial medians.

    Between-run noise (a fresh interpreter each time) is larger than within-run noise, so the
    spread of trial medians is reported as `median_min_ms`..`median_max_ms`; the other figures
    are computed over all samples of all trials.
    """
    if not trials:
        raise ValueError("no trials to combine")
    pooled = summarize_ns(np.concatenate([np.asarray(t, dtype=np.float64) for t in trials]))
    medians = [float(np.median(np.asarray(t, dtype=np.float64))) / 1e6 for t in trials]
    pooled["pooled_median_ms"] = pooled["median_ms"]
    pooled["median_ms"] = float(np.median(medians))
    pooled["median_min_ms"] = min(medians)
    pooled["median_max_ms"] = max(medians)
    pooled["trials"] = len(trials)
    return pooled
