"""android_bench.stats, .timing and .machine: statistics, the timing loop's rules, process controls."""
import gc
import os
import time

import numpy as np
import pytest

from android_bench import machine, stats, timing


def test_summarize_ns_in_milliseconds():
    samples = np.arange(1, 101) * 1_000_000  # 1..100 ms
    summary = stats.summarize_ns(samples)
    assert summary["runs"] == 100
    assert summary["mean_ms"] == pytest.approx(50.5) and summary["median_ms"] == pytest.approx(50.5)
    assert summary["p90_ms"] == pytest.approx(90.1) and summary["p99_ms"] == pytest.approx(99.01)
    assert (summary["min_ms"], summary["max_ms"]) == (1.0, 100.0)
    assert summary["std_ms"] == pytest.approx(np.std(np.arange(1, 101), ddof=1))
    with pytest.raises(ValueError):
        stats.summarize_ns([])


def test_combine_trials_reports_median_of_trial_medians():
    trials = [[1e6, 2e6, 3e6], [5e6, 5e6, 5e6], [2e6, 2e6, 9e6]]  # medians 2, 5, 2 ms
    combined = stats.combine_trials(trials)
    assert combined["median_ms"] == 2.0 and combined["median_min_ms"] == 2.0 and combined["median_max_ms"] == 5.0
    assert combined["trials"] == 3 and combined["runs"] == 9
    assert combined["pooled_median_ms"] == 3.0 and combined["max_ms"] == 9.0


def test_measure_meets_both_minimums_and_disables_gc():
    gc_states = []

    def call():
        gc_states.append(gc.isenabled())
        time.sleep(0.0005)

    policy = timing.TimingPolicy(warmup_runs=10, warmup_seconds=0.05, min_runs=20, min_seconds=0.1, max_seconds=5)
    assert gc.isenabled()
    warmup, measured = timing.measure(call, policy)
    assert gc.isenabled()  # restored
    assert not any(gc_states)
    assert len(warmup) >= 10 and sum(warmup) >= 0.05e9 * 0.95
    assert len(measured) >= 20 and sum(measured) >= 0.1e9 * 0.95  # time between calls is not in the samples
    # a fast call hits the seconds minimum long after the runs minimum
    _, fast = timing.measure(lambda: None, timing.TimingPolicy(10, 0.01, 50, 0.02))
    assert len(fast) > 50


def test_measure_stops_at_max_seconds():
    _, measured = timing.measure(lambda: time.sleep(0.02), timing.TimingPolicy(1, 0, 1000, 0, max_seconds=0.1))
    assert 3 <= len(measured) < 50


def test_policy_rejects_nonsense():
    with pytest.raises(ValueError):
        timing.TimingPolicy(warmup_runs=0)
    with pytest.raises(ValueError):
        timing.TimingPolicy(max_seconds=0)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity call on this OS")
def test_pinned_restores_affinity():
    before = os.sched_getaffinity(0)
    first = min(before)
    with timing.pinned([first]) as cpus:
        assert os.sched_getaffinity(0) == {first} and cpus == [first]
    assert os.sched_getaffinity(0) == before
    assert timing.cpus_for_threads(1) == [sorted(before)[0]]
    assert timing.cpus_for_threads(64) == sorted(before)


def test_peak_rss_sees_an_allocation():
    with timing.PeakRss() as small:
        pass
    with timing.PeakRss() as big:
        block = np.ones(64 * 1024 * 1024 // 8)  # 64 MB, touched
        del block
    assert big.peak_mb > 0 and small.peak_mb > 0
    if big.scope == "region":  # Linux: the high-water mark is reset per region
        assert big.peak_mb - small.peak_mb > 50


def test_machine_description_reads_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480C\nflags\t\t: fpu avx2 avx512f "
                   "avx512_vnni amx_int8\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8480C\n")
    described = machine.describe(str(x86))
    assert described["cpu"] == "Intel(R) Xeon(R) Platinum 8480C"
    assert described["cpu_flags"] == ["avx2", "avx512f", "avx512_vnni", "amx_int8"]
    assert described["logical_cores"] == os.cpu_count() and described["python"]
    epyc = tmp_path / "epyc"
    epyc.write_text("processor\t: 0\ncpu family\t: 23\nmodel\t\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: fma avx2\n")
    assert machine.describe(str(epyc))["cpu"] == "AMD EPYC (family 23 model 1)"
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp i8mm\nCPU implementer\t: 0x41\nCPU part\t: 0xd44\n")
    described = machine.describe(str(arm))
    assert described["cpu"] == "ARM implementer 0x41 part 0xd44"
    assert described["cpu_flags"] == ["asimd", "asimddp", "i8mm"]
    assert "Python" in machine.one_line(described)
