"""android_bench.report and `mobilecnn report`: Markdown, CSV, PNG plots, Pareto front, atomic output."""
import csv
import json
import os
import struct

import pytest
from click.testing import CliRunner

from android_bench import report
from android_bench.commands import report_command

MACHINE = {"cpu": "Test CPU", "os": "Linux", "python": "3.11"}


def row(model, mode, latency, *, size, target="host", threads=1, backend="xnnpack", **extra):
    base = {"model": model, "mode": mode, "target": target, "runtime": "ai-edge-litert", "backend": backend,
            "threads": threads, "median_ms": latency, "p90_ms": latency and latency * 1.05, "p99_ms": latency and latency * 1.1,
            "init_ms": 3.0, "partitions": 1, "size_bytes": size, "status": "ok", "machine": MACHINE, "warnings": []}
    base.update(extra)  # e.g. runtime, macs, mean_ms, warnings
    return base


@pytest.fixture
def results(tmp_path):
    rows = [
        row("mnv2", "fp32", 4.9, size=14_000_000, macs=300_000_000),
        row("mnv2", "int8", 3.1, size=4_000_000, macs=300_000_000),
        row("mnv3s", "fp32", 1.5, size=10_000_000),
        row("mnv3s", "int8", 1.8, size=2_900_000, warnings=["partial delegation: 20 XNNPACK partitions"]),
        row("effb0", "fp32", 11.3, size=21_000_000),
        row("effb0", "int8", 5.2, size=6_100_000),
        row("mnv2", "fp32", 3.0, size=14_000_000, threads=2),
        row("mnv2", "int8", 2.0, size=4_000_000, threads=2),
        # a phone row from benchmark_model: mean only
        row("mnv2", "int8", None, size=4_000_000, target="android:SIM-A", runtime="benchmark_model",
            mean_ms=266.473),
    ]
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"rows": rows}))
    accuracy = tmp_path / "accuracy.csv"
    accuracy.write_text("model,mode,accuracy\nmnv2,fp32,71.8\nmnv2,int8,70.9\nmnv3s,fp32,0.674\n"
                        "mnv3s,int8,0.66\neffb0,fp32,77.1\neffb0,int8,76.0\n")
    return path, accuracy


def png_size(path):
    with open(path, "rb") as f:
        header = f.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", header[16:24])


def test_pareto_front():
    points = [(4.9, 71.8), (3.1, 70.9), (1.5, 67.4), (1.8, 66.0), (11.3, 77.1), (5.2, 76.0)]
    assert sorted(report.pareto_front(points)) == [0, 1, 2, 4, 5]  # (1.8, 66.0) is dominated by (1.5, 67.4)


def test_int8_speedups_pair_matching_rows(results):
    rows = report.enrich(report.load_results([results[0]]))
    speedups = report.int8_speedups(rows)
    assert speedups[("mnv2", "host t1 xnnpack")] == pytest.approx(4.9 / 3.1)
    assert speedups[("mnv3s", "host t1 xnnpack")] == pytest.approx(1.5 / 1.8)
    assert speedups[("mnv2", "host t2 xnnpack")] == pytest.approx(1.5)
    assert len(speedups) == 4  # the phone row has no fp32 partner


def test_write_report(results, tmp_path):
    results_path, accuracy = results
    out = tmp_path / "report"
    written, notes = report.write_report([str(results_path)], str(out), accuracy_path=str(accuracy))
    assert sorted(os.path.basename(p) for p in written) == sorted(["report.md", "results.csv", *report.PLOTS])
    assert notes == []
    for name in report.PLOTS:
        width, height = png_size(out / name)
        assert width > 400 and height > 300
    text = (out / "report.md").read_text()
    assert "| mnv2 | int8 | host | ai-edge-litert | xnnpack | 1 | 3.1 |" in text
    assert "266.5*" in text and "mean: `benchmark_model` prints no median" in text
    assert "71.8 %" in text and "GMAC/s" in text
    assert "61.22" in text  # 300e6 MACs / 4.9 ms
    assert "partial delegation: 20 XNNPACK partitions" in text
    assert "![speedup_int8.png](speedup_int8.png)" in text
    with open(out / "results.csv") as f:
        records = list(csv.DictReader(f))
    assert len(records) == 9 and records[0]["machine_cpu"] == "Test CPU"
    assert float(records[1]["accuracy"]) == pytest.approx(0.709)
    assert not [n for n in os.listdir(out) if n.startswith(".")]  # no temporary leftovers


def test_report_refuses_to_overwrite_and_skips_plots_it_cannot_draw(results, tmp_path):
    results_path, accuracy = results
    out = tmp_path / "report"
    report.write_report([str(results_path)], str(out), accuracy_path=str(accuracy))
    with pytest.raises(report.ReportError, match="pass --force"):
        report.write_report([str(results_path)], str(out))
    written, notes = report.write_report([str(results_path)], str(out), force=True)
    assert "latency_vs_accuracy.png" not in [os.path.basename(p) for p in written]
    assert not (out / "latency_vs_accuracy.png").exists()  # a stale plot would contradict the report
    assert any("no accuracy figures" in note for note in notes)


def test_cli_report(results, tmp_path):
    results_path, accuracy = results
    out = tmp_path / "cli"
    result = CliRunner().invoke(report_command, [str(results_path), "--out-dir", str(out),
                                                 "--accuracy", str(accuracy)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'report.md'}" in result.output
    assert {"report.md", "results.csv", *report.PLOTS} <= set(os.listdir(out))


@pytest.mark.parametrize("content, message", [
    ("not json", "not a readable JSON results file"),
    ('{"rows": [{"no_model": 1}]}', "expected a results file written by `mobilecnn bench`"),
    ('{"rows": []}', "no result rows"),
])
def test_cli_report_bad_input(tmp_path, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    out = tmp_path / "out"
    result = CliRunner().invoke(report_command, [str(bad), "--out-dir", str(out)])
    assert result.exit_code == 1 and message in result.output
    assert not out.exists() or os.listdir(out) == []


def test_cli_report_missing_file(tmp_path):
    result = CliRunner().invoke(report_command, [str(tmp_path / "nope.json")])
    assert result.exit_code == 2 and "nope.json: results file not found" in result.output
