"""Host figures for the mobile zoo: fp32 and int8 at 224 px, 1 and 2 threads, with MACs per second.

Each model is exported from the registry with random weights (export sets the BatchNorm statistics from
synthetic images; int8 is calibrated on synthetic images too) -- latency does not depend on weight
values, so this is what the docs/benchmarks.md record uses. Timing follows android_bench.host (warm-up
>= 10 runs and >= 0.5 s, >= 50 runs and >= 1 s, 3 interleaved trials, pinned CPUs, only invoke() timed).

    flock /tmp/tf.lock .venv/bin/python -m benchmarks.host_zoo --out /tmp/host_zoo.json
    .venv/bin/python -m benchmarks.host_zoo --markdown /tmp/host_zoo.json   # the table for docs/

Results are written after every model (atomically), so an interrupted run keeps what it measured.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

ZOO = ("mobilenet_v1_1.0", "mobilenet_v2_1.0", "mobilenet_v3_small_1.0", "mobilenet_v3_large_1.0",
       "shufflenet_v1_g3_1.0", "shufflenet_v2_1.0", "squeezenet_1.1", "mnasnet_1.0", "efficientnet_lite0",
       "efficientnet_b0")
MODES = ("fp32", "int8")


def log(message):
    print(time.strftime("%H:%M:%S"), message, file=sys.stderr, flush=True)


def model_macs(name, size):
    from mobilecnn import create_model
    from mobilecnn.profiling import total_macs

    return int(total_macs(create_model(name, input_shape=(size, size, 3))))


def export(name, mode, size, workdir):
    from export.pipeline import export_model

    out = os.path.join(workdir, f"{name}_{size}_{mode}.tflite")
    if not os.path.exists(out):
        # verify=False: with random weights export's parity check is only a perturbation check, and the
        # latency is what is measured here; rep_samples=32 (more samples change nothing, toolchain notes s.4)
        export_model(name, out, mode=mode, input_size=size, io="int8" if mode == "int8" else "float",
                     rep_samples=32, verify=False)
    return out


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, default=str)
    os.replace(tmp, path)


def run(models, size, threads, trials, out, workdir):
    from android_bench import machine
    from android_bench.host import bench_host

    os.makedirs(workdir, exist_ok=True)
    data = {"schema": "mobilecnn-bench/1", "machine": machine.describe(), "size": size, "rows": [], "failures": []}
    if os.path.exists(out):  # resume: keep what an earlier run measured
        with open(out) as f:
            data = json.load(f)
    done = {(r["model"], r["mode"]) for r in data["rows"]}
    for name in models:
        try:
            macs = model_macs(name, size)
        except Exception as exc:  # a zoo model that does not build is recorded, the rest go on
            data["failures"].append({"model": name, "error": f"MACs: {type(exc).__name__}: {exc}"})
            continue
        for mode in MODES:
            if (name, mode) in done:
                continue
            log(f"{name} {mode}: export")
            try:
                path = export(name, mode, size, workdir)
                log(f"{name} {mode}: timing")
                rows = bench_host(path, threads=threads, trials=trials, mode=mode)
            except Exception as exc:
                data["failures"].append({"model": name, "mode": mode, "error": f"{type(exc).__name__}: {exc}"})
                log(f"{name} {mode}: FAILED {exc}")
                continue
            for row in rows:
                row["model"] = name
                row["macs"] = macs
                row["gmacs_per_s"] = macs / (row["median_ms"] / 1e3) / 1e9
                data["rows"].append(row)
            write_atomic(out, data)
    write_atomic(out, data)
    return data


def markdown(data):
    """The docs table: one line per model and mode, both thread counts side by side."""
    rows = {(r["model"], r["mode"], r["threads"]): r for r in data["rows"]}
    threads = sorted({r["threads"] for r in data["rows"]})
    models = list(dict.fromkeys(r["model"] for r in data["rows"]))
    head = ["model", "MMACs", "mode", "size MB", "partitions"]
    for t in threads:
        head += [f"{t}T median ms (trials min-max)", f"{t}T p99 ms", f"{t}T GMAC/s"]
    head += [f"int8 speed-up {t}T" for t in threads]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model in models:
        for mode in MODES:
            first = rows.get((model, mode, threads[0]))
            if first is None:
                continue
            cells = [model, f"{first['macs'] / 1e6:.0f}", mode, f"{first['size_bytes'] / 1e6:.2f}",
                     str(first["partitions"])]
            for t in threads:
                r = rows.get((model, mode, t))
                cells += ([f"{r['median_ms']:.2f} ({r['median_min_ms']:.2f}-{r['median_max_ms']:.2f})",
                           f"{r['p99_ms']:.2f}", f"{r['gmacs_per_s']:.1f}"] if r else ["-", "-", "-"])
            for t in threads:
                fp32, int8 = rows.get((model, "fp32", t)), rows.get((model, "int8", t))
                cells.append(f"{fp32['median_ms'] / int8['median_ms']:.2f}x" if mode == "int8" and fp32 and int8
                             else "")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="host_zoo.json", help="results JSON (resumed if it exists)")
    parser.add_argument("--workdir", default="host_zoo_models", help="where the exported .tflite files go")
    parser.add_argument("--models", nargs="+", default=list(ZOO))
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--markdown", metavar="RESULTS", help="print the docs table for RESULTS and exit")
    args = parser.parse_args(argv)
    if args.markdown:
        with open(args.markdown) as f:
            print(markdown(json.load(f)))
        return 0
    data = run(args.models, args.size, tuple(args.threads), args.trials, args.out, args.workdir)
    print(markdown(data))
    return 1 if data["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
