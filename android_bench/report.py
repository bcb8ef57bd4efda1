"""Reports over benchmark result files: a Markdown table, a CSV and three PNG plots."""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections import defaultdict

TABLE_COLUMNS = [
    ("model", "model"), ("mode", "mode"), ("target", "target"), ("runtime", "runtime"), ("backend", "backend"),
    ("threads", "thr"), ("latency", "latency ms"), ("p90_ms", "p90"), ("p99_ms", "p99"), ("init_ms", "init ms"),
    ("partitions", "parts"), ("size_mb", "size MB"), ("gmacs_per_s", "GMAC/s"), ("accuracy", "accuracy"),
    ("status", "status"),
]
PLOTS = ("latency_vs_accuracy.png", "size_per_mode.png", "speedup_int8.png")


class ReportError(ValueError):
    pass


# -- loading ----------------------------------------------------------------------------------------------
def load_results(paths):
    rows = []
    for path in paths:
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError) as exc:
            raise ReportError(f"{path}: not a readable JSON results file ({exc})") from None
        found = data.get("rows") if isinstance(data, dict) else data
        if not isinstance(found, list) or not all(isinstance(row, dict) and "model" in row for row in found):
            raise ReportError(f"{path}: expected a results file written by `mobilecnn bench` (a 'rows' list)")
        rows.extend(found)
    if not rows:
        raise ReportError("no result rows in " + ", ".join(map(str, paths)))
    return rows


def load_accuracy(path):
    """{(model, mode): accuracy} from a CSV or JSON list with model, mode and accuracy (0..1 or percent)."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as exc:
        raise ReportError(f"--accuracy {path}: cannot read ({exc.strerror})") from None
    try:
        records = json.loads(text) if path.endswith(".json") else list(csv.DictReader(io.StringIO(text)))
        table = {}
        for record in records:
            value = float(record["accuracy"])
            table[(record["model"], record["mode"])] = value / 100.0 if value > 1.0 else value
        return table
    except (ValueError, KeyError, TypeError) as exc:
        raise ReportError(f"--accuracy {path}: expected records with model, mode and accuracy ({exc})") from None


def latency_ms(row):
    """The headline latency: the median, or the mean where the tool gave no median (benchmark_model)."""
    if row.get("median_ms") is not None:
        return row["median_ms"], "median"
    if row.get("mean_ms") is not None:
        return row["mean_ms"], "mean"
    return None, None


def enrich(rows, accuracy=None):
    """Add derived columns: latency, size_mb, gmacs_per_s, accuracy."""
    out = []
    for row in rows:
        row = dict(row)
        value, kind = latency_ms(row)
        row["latency"] = value
        row["latency_kind"] = kind
        if row.get("size_bytes"):
            row["size_mb"] = row["size_bytes"] / 1e6
        if row.get("macs") and value:
            row["gmacs_per_s"] = row["macs"] / (value / 1e3) / 1e9
        if accuracy and (row["model"], row.get("mode")) in accuracy:
            row["accuracy"] = accuracy[(row["model"], row.get("mode"))]
        out.append(row)
    return out


# -- tables -----------------------------------------------------------------------------------------------
def _cell(row, key):
    value = row.get(key)
    if value is None:
        return "-"
    if key == "latency" and row.get("latency_kind") == "mean":
        return _number(value) + "*"
    if key == "accuracy":
        return f"{100 * value:.1f} %"
    if isinstance(value, float):
        return _number(value)
    return str(value)


def _number(value):
    """Four significant digits without exponents: 4.931, 0.003015, 266.5, 2950."""
    if value == 0 or abs(value) >= 100:
        return f"{value:.1f}" if abs(value) < 1000 else f"{value:.0f}"
    return f"{value:.4g}" if abs(value) >= 1e-4 else f"{value:.2e}"


def _columns(rows):
    """Drop optional columns that no row fills."""
    optional = {"gmacs_per_s", "accuracy", "p90_ms", "p99_ms", "partitions"}
    return [(key, title) for key, title in TABLE_COLUMNS
            if key not in optional or any(row.get(key) is not None for row in rows)]


def markdown_table(rows):
    columns = _columns(rows)
    lines = ["| " + " | ".join(title for _, title in columns) + " |",
             "| " + " | ".join("---" for _ in columns) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row, key).replace("|", "\\|") for key, _ in columns) + " |")
    return "\n".join(lines)


def text_table(rows):
    """The same table aligned for a terminal."""
    columns = _columns(rows)
    cells = [[title for _, title in columns]] + [[_cell(row, key) for key, _ in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in cells)


def _flat(row):
    flat = {}
    for key, value in row.items():
        if key in ("output_tail", "delegations"):
            continue
        if isinstance(value, dict):
            for sub, subvalue in value.items():
                flat[f"{key}_{sub}"] = json.dumps(subvalue) if isinstance(subvalue, (dict, list)) else subvalue
        elif isinstance(value, list):
            flat[key] = "; ".join(map(str, value))
        else:
            flat[key] = value
    return flat


def csv_text(rows):
    flats = [_flat(row) for row in rows]
    fields = []
    for flat in flats:
        fields += [key for key in flat if key not in fields]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flats)
    return buffer.getvalue()


def markdown_report(rows, plots, notes):
    machines = []
    for row in rows:
        machine = row.get("machine") or {}
        text = ", ".join(f"{k}={v}" for k, v in machine.items() if k in ("cpu", "model", "soc", "abi", "android",
                                                                            "os", "python", "gpu", "cores"))
        line = f"- `{row.get('target')}`: {text}"
        if text and line not in machines:
            machines.append(line)
    parts = ["# Benchmark report", "", markdown_table(rows), ""]
    if any(row.get("latency_kind") == "mean" for row in rows):
        parts += ["\\* mean: `benchmark_model` prints no median for this run.", ""]
    parts += ["## Machines", ""] + machines + [""]
    warnings = [f"- {row['model']} {row.get('mode')} {row.get('target')} t{row.get('threads')} "
                f"{row.get('backend')}: {w}" for row in rows for w in row.get("warnings") or []]
    if warnings:
        parts += ["## Warnings", ""] + warnings + [""]
    parts += ["## Plots", ""] + [f"![{name}]({name})" for name in plots] + [""]
    parts += [f"- {note}" for note in notes]
    return "\n".join(parts).rstrip() + "\n"


# -- plots ------------------------------------------------------------------------------------------------
def _series_key(row):
    return f"{row.get('target')} t{row.get('threads')} {row.get('backend')}"


def pareto_front(points):
    """Indices of points not dominated in (lower latency, higher accuracy)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _figure(title, xlabel, ylabel):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def plot_latency_vs_accuracy(rows, path):
    usable = [r for r in rows if r.get("accuracy") is not None and r.get("latency")]
    if not usable:
        return False
    fig, ax = _figure("Latency vs accuracy (Pareto front per series marked)", "latency (ms)", "accuracy (%)")
    series = defaultdict(list)
    for row in usable:
        series[_series_key(row)].append(row)
    for name, members in sorted(series.items()):
        points = [(r["latency"], 100 * r["accuracy"]) for r in members]
        dots = ax.scatter(*zip(*points), label=name, alpha=0.8)
        for (x, y), r in zip(points, members):
            ax.annotate(f"{r['model']} {r.get('mode')}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        front = sorted(points[i] for i in pareto_front(points))
        ax.step(*zip(*front), where="post", color=dots.get_facecolor()[0], linewidth=1.5)
        ax.scatter(*zip(*front), s=110, facecolors="none", edgecolors=dots.get_facecolor()[0], linewidths=1.5)
    latencies = [r["latency"] for r in usable]
    if max(latencies) > 10 * min(latencies):  # phones and desktops on one axis
        ax.set_xscale("log")
    ax.legend(fontsize=8, title="circled + line: Pareto front")
    fig.tight_layout()
    fig.savefig(path)
    return True


def _grouped_bars(ax, groups, series_names, values, fmt):
    import numpy as np

    width = 0.8 / max(1, len(series_names))
    x = np.arange(len(groups))
    for i, name in enumerate(series_names):
        heights = [values.get((group, name)) for group in groups]
        positions = x + (i - (len(series_names) - 1) / 2) * width
        bars = ax.bar([p for p, h in zip(positions, heights) if h is not None],
                      [h for h in heights if h is not None], width, label=name)
        ax.bar_label(bars, fmt=fmt, fontsize=7)
    ax.set_xticks(x, groups, rotation=30, ha="right", fontsize=8)
    ax.legend(fontsize=8)


def plot_size_per_mode(rows, path):
    sizes = {(r["model"], r.get("mode")): r["size_mb"] for r in rows if r.get("size_mb")}
    if not sizes:
        return False
    models = sorted({model for model, _ in sizes})
    modes = sorted({mode for _, mode in sizes})
    fig, ax = _figure("Model file size per quantization mode", "model", "size (MB)")
    _grouped_bars(ax, models, modes, sizes, "%.2f")
    fig.tight_layout()
    fig.savefig(path)
    return True


def int8_speedups(rows):
    """{(model, series): fp32 latency / int8 latency} for rows that match on everything but the mode."""
    latency = {}
    for row in rows:
        if row.get("latency") and row.get("status", "ok") == "ok" and row.get("mode") in ("fp32", "int8"):
            latency[(row["model"], _series_key(row), row["mode"])] = row["latency"]
    return {(model, series): latency[(model, series, "fp32")] / value
            for (model, series, mode), value in latency.items()
            if mode == "int8" and (model, series, "fp32") in latency}


def plot_speedup(rows, path):
    speedups = int8_speedups(rows)
    if not speedups:
        return False
    models = sorted({model for model, _ in speedups})
    series = sorted({name for _, name in speedups})
    fig, ax = _figure("Speed-up of int8 over fp32 (fp32 latency / int8 latency)", "model", "speed-up (x)")
    _grouped_bars(ax, models, series, speedups, "%.2fx")
    ax.axhline(1.0, color="black", linewidth=0.8)
    fig.tight_layout()
    fig.savefig(path)
    return True


# -- writing ----------------------------------------------------------------------------------------------
def write_report(result_paths, out_dir, *, accuracy_path=None, force=False):
    """Write report.md, results.csv and the plots into out_dir; returns the paths written.

    Everything is rendered into a temporary directory first and moved into place only when all of it
    succeeded, so a failure leaves no partial report; existing files need `force`.
    """
    rows = enrich(load_results(result_paths), load_accuracy(accuracy_path) if accuracy_path else None)
    os.makedirs(out_dir, exist_ok=True)
    names = ["report.md", "results.csv", *PLOTS]
    existing = [n for n in names if os.path.exists(os.path.join(out_dir, n))]
    if existing and not force:
        raise ReportError(f"{out_dir}: would overwrite {', '.join(existing)}; pass --force")
    notes = []
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".report-") as tmp:
        plotters = {"latency_vs_accuracy.png": (plot_latency_vs_accuracy,
                                                "no accuracy figures: latency-vs-accuracy plot skipped "
                                                "(give --accuracy FILE or rows with an accuracy field)"),
                    "size_per_mode.png": (plot_size_per_mode, "no model sizes: size plot skipped"),
                    "speedup_int8.png": (plot_speedup, "no fp32/int8 pair with matching target, threads and "
                                                       "backend: speed-up plot skipped")}
        written = []
        for name, (plot, skipped) in plotters.items():
            if plot(rows, os.path.join(tmp, name)):
                written.append(name)
            else:
                notes.append(skipped)
        with open(os.path.join(tmp, "report.md"), "w") as f:
            f.write(markdown_report(rows, written, notes))
        with open(os.path.join(tmp, "results.csv"), "w") as f:
            f.write(csv_text(rows))
        outputs = []
        for name in set(PLOTS) - set(written):  # a plot this report does not show must not linger from an old one
            stale = os.path.join(out_dir, name)
            if os.path.exists(stale):
                os.remove(stale)
        for name in ["report.md", "results.csv", *written]:
            os.replace(os.path.join(tmp, name), os.path.join(out_dir, name))
            outputs.append(os.path.join(out_dir, name))
    return outputs, notes
