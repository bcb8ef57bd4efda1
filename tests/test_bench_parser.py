"""android_bench.parser against every verbatim benchmark_model sample in ../shared, plus format edge cases.

The expected figures below are read off the sample files by eye (microseconds -> milliseconds).
"""
import pytest

from android_bench import parser

SAMPLES = "fixtures/benchmark_model"


@pytest.fixture(scope="module")
def samples(shared_dir):
    folder = shared_dir / SAMPLES
    if not folder.is_dir():
        pytest.skip(f"{folder} not found: the benchmark_model samples live in ../shared")
    return {path.name: path.read_text() for path in folder.glob("*.txt")}


def check_sample(result, name):
    """Per-sample expectations; every shared sample must have one (see test_every_sample_is_covered)."""
    if name == "classic_yocto_op_profiling.txt":
        assert result.dialect == "classic" and result.ok
        assert result.params["Num threads"] == "4" and result.params["Graph"] == "./mobilenet_v1_1.0_224.tflite"
        assert result.params["Enable op profiling"] == "1"
        assert result.model_size_mb == pytest.approx(16.9008)
        assert result.init_ms == pytest.approx(17.187)
        # single warm-up run printed as "count=1 curr=3512391"
        assert result.warmup.count == 1 and result.warmup.avg_ms == pytest.approx(3512.391)
        assert result.warmup.min_ms == result.warmup.max_ms == pytest.approx(3512.391)
        # exponent-form average
        assert result.inference.count == 50 and result.inference.avg_ms == pytest.approx(2950.34)
        assert result.inference.min_ms == pytest.approx(2727.568) and result.inference.std_ms == pytest.approx(109.798)
        assert result.avg_ms == pytest.approx(2950.34) and result.first_ms == pytest.approx(3512.391)
        assert result.warmup_avg_ms == pytest.approx(3512.39)
        assert result.memory == {"init_mb": 4.21094, "overall_mb": 46.0859, "kind": "footprint_delta"}
    elif name == "android_taskset_2021.txt":
        assert result.dialect == "classic"
        assert result.warmup.count == 2 and result.warmup.avg_ms == pytest.approx(302.814)
        assert result.inference.count == 50 and result.inference.max_ms == pytest.approx(268.116)
        assert result.inference.std_ms == pytest.approx(0.419)
        assert (result.init_ms, result.first_ms, result.warmup_avg_ms, result.avg_ms) == pytest.approx(
            (20.283, 339.304, 302.814, 266.473))
    elif name == "android_tf24_peak_memory.txt":
        assert result.inference.count == 50 and result.inference.avg_ms == pytest.approx(249.684)
        assert result.warmup is None  # the only count= line is the measured run
        assert result.init_ms == pytest.approx(16.242)
        assert result.memory == {"init_mb": 4.92969, "overall_mb": 138.809, "kind": "peak_footprint"}
    elif name == "apk_logcat_summary.txt":
        assert result.ok and result.inference is None
        assert (result.init_ms, result.first_ms, result.warmup_avg_ms, result.avg_ms) == pytest.approx(
            (5.685, 18.535, 14.4623, 14.5752))
    elif name == "apk_logcat_threadtime.txt":
        assert not result.ok and result.dialect is None
        assert result.args == ["--graph=/data/local/tmp/x.tflite", "--num_threads=1", "--use_gpu=true",
                               "--num_runs=100"]
        assert result.params == {"Min num runs": "100"}
        assert result.model_path == "/data/local/tmp/x.tflite"
    elif name == "op_profiling_tail.txt":
        assert not result.ok and result.inference is None
        assert result.op_profile.count == 50 and result.op_profile.avg_ms == pytest.approx(79.732)
        assert result.memory == {}  # "Memory (bytes): count=0" is the profiler's, not the model's
    elif name == "litert_percentiles_line.txt":
        stats = result.inference
        assert stats.count == 25 and stats.avg_ms == pytest.approx(145.528)
        assert (stats.p5_ms, stats.median_ms, stats.p95_ms) == pytest.approx((140.545, 141.253, 187.533))
    else:
        pytest.fail(f"no expectations written for new sample {name}")


def test_every_sample_is_covered(samples):
    assert len(samples) >= 7
    for name, text in samples.items():
        check_sample(parser.parse(text), name)


@pytest.mark.parametrize("transform", ["crlf", "info_prefix", "logcat_brief", "logcat_threadtime"])
def test_samples_survive_transport_prefixes(samples, transform):
    """The same output through an adb pty (\\r), TFLite logging, or logcat parses to the same result."""
    wrap = {
        "crlf": lambda line: line + "\r",
        "info_prefix": lambda line: "INFO: " + line,
        "logcat_brief": lambda line: "I/tflite  ( 4321): " + line,
        "logcat_threadtime": lambda line: "07-17 12:07:28.122 22646 22646 I tflite  : " + line,
    }[transform]
    for name, text in samples.items():
        wrapped = "\n".join(wrap(line) for line in text.splitlines())
        assert parser.parse(wrapped).to_dict() == parser.parse(text).to_dict(), name
        check_sample(parser.parse(wrapped), name)


def test_all_same_and_count_zero():
    stats = parser.parse_stats_line("count=50 curr=1234(all same)")
    assert stats.all_same and stats.count == 50
    assert stats.avg_ms == stats.min_ms == stats.max_ms == stats.first_ms == pytest.approx(1.234)
    assert stats.std_ms == 0
    empty = parser.parse_stats_line("count=0")
    assert empty.count == 0 and empty.avg_ms is None


def test_exponent_and_negative_exponent_numbers():
    stats = parser.parse_stats_line("count=3 first=1e+06 curr=9.5e5 min=9.5e+05 max=1e+06 avg=9.83333e+05 std=23570")
    assert stats.first_ms == pytest.approx(1000.0) and stats.avg_ms == pytest.approx(983.333)


def litert_block(peak="Peak memory: 42.5 MB"):
    # Layout from the LiteRT 2.x tool's source as summarised in the samples' README.
    return "\n".join([
        "INFO: Replacing 66 out of 66 node(s) with delegate (TfLiteXNNPackDelegate) node, yielding 1 partitions "
        "for the whole graph.",
        "count=100 first=5100 curr=4900 min=4800 max=6100 avg=4950 std=120 p5=4850 median=4930 p95=5150",
        "========== BENCHMARK RESULTS ==========",
        "Model initialization: 16.3 ms",
        "Warmup (first): 6.35 ms",
        "Warmup (avg): 5.2 ms (10 runs)",
        "Inference (avg): 4.95 ms (100 runs)",
        "Inference (min): 4.8 ms",
        "Inference (max): 6.1 ms",
        "Inference (std): 0.12",
        "Throughput: 2823.4 MB/s",
        "",
        "Memory Usage:",
        "Init footprint: 3.5 MB",
        "Overall footprint: 12.25 MB",
        peak,
        "======================================",
    ])


def test_litert_dialect_block_with_percentiles():
    result = parser.parse(litert_block())
    assert result.dialect == "litert" and result.ok
    assert (result.init_ms, result.first_ms, result.warmup_avg_ms, result.avg_ms) == pytest.approx(
        (16.3, 6.35, 5.2, 4.95))
    stats = result.inference
    assert stats.count == 100 and (stats.min_ms, stats.max_ms, stats.std_ms) == pytest.approx((4.8, 6.1, 0.12))
    assert stats.median_ms == pytest.approx(4.93)  # from the count= line
    assert result.warmup.count == 10 and result.warmup.avg_ms == pytest.approx(5.2)
    assert result.throughput_mb_s == pytest.approx(2823.4)
    assert result.memory == {"init_footprint_mb": 3.5, "overall_footprint_mb": 12.25, "peak_mb": 42.5,
                             "kind": "litert"}
    assert result.partitions == 1 and not result.partial_delegation


def test_litert_peak_not_available():
    result = parser.parse(litert_block("Peak memory usage not available. (peak_mem_mb <= 0)"))
    assert result.memory["peak_mb"] is None and result.ok


def test_new_memory_lines():
    text = ("Memory footprint delta from the start of the tool (MB): init=3.36719 overall=11.9297\n"
            "Overall peak memory footprint (MB) via periodic monitoring: 17.9883\n"
            "- VmRSS              : 17 MB\n")
    assert parser.parse(text).memory == {"init_mb": 3.36719, "overall_mb": 11.9297, "kind": "footprint_delta",
                                         "peak_mb": 17.9883, "vmrss_end_mb": 17.0}


def test_diagnostics_unconsumed_partial_and_failed_delegates():
    text = "\n".join([
        "WARN: Unconsumed cmdline flags: --use_hexagon=true --foo",
        "INFO: Replacing 60 out of 66 node(s) with delegate (TfLiteGpuDelegateV2) node, yielding 3 partitions.",
        "INFO: Explicitly applied GPU delegate, and the model graph will be partially executed by the delegate w/ "
        "2 delegate kernels.",
        "ERROR: Failed to apply NNAPI delegate.",
        "count=50 first=1000 curr=1000 min=900 max=1100 avg=1000 std=10",
    ])
    result = parser.parse(text)
    assert result.unconsumed_flags == ["--use_hexagon=true", "--foo"]
    assert result.partitions == 3
    assert result.delegations[0].delegate == "TfLiteGpuDelegateV2" and not result.delegations[0].complete
    assert len(result.partial_delegation) == 2
    assert result.delegate_failures == ["Failed to apply NNAPI delegate."]
    assert result.ok and result.avg_ms == pytest.approx(1.0)


def test_failed_run_reports_errors_and_no_result():
    text = "STARTING!\nERROR: Model file doesn't exist: /data/local/tmp/x.tflite\nBenchmarking failed.\n"
    result = parser.parse(text)
    assert not result.ok
    assert result.errors == ["Model file doesn't exist: /data/local/tmp/x.tflite", "Benchmarking failed."]


def test_strip_prefixes_keeps_plain_lines():
    assert parser.strip_prefixes("Graph: [./m.tflite]\r") == "Graph: [./m.tflite]"
    assert parser.strip_prefixes("I0717 12:07:28.122345  1234 benchmark.cc:42] count=1 curr=5") == "count=1 curr=5"
    assert parser.strip_prefixes("07-17 12:07:28.122 I/tflite  ( 1234): INFO: Num threads: [4]") == "Num threads: [4]"
