"""`mobilecnn bench` and `mobilecnn report` (click command objects; mobilecnn/cli.py registers them)."""
from __future__ import annotations

import json
import os
import tempfile
import time

import click

from . import report as report_module
from .timing import TimingPolicy

TFLITE_SUFFIX = ".tflite"


def write_json_atomic(path, data, force):
    """Write JSON via a temporary file in the same directory; refuse to replace a file without --force."""
    if os.path.exists(path) and not force:
        raise click.UsageError(f"--out {path}: file exists; pass --force to overwrite it")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".bench-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, default=str)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _err(message):
    click.echo(message, err=True)


def _run_host(models, options, machine, rows, failures):
    from .host import bench_host

    policy = options["policy"]
    for model in models:
        if not model.endswith(TFLITE_SUFFIX):
            failures.append({"target": "host", "model": model, "error": "host target needs a .tflite file"})
            continue
        try:
            rows += bench_host(model, threads=options["threads"], backends=options["backends"],
                               trials=options["trials"], policy=policy, runtime=options["runtime"],
                               mode=options["mode"], weight_cache_dir=options["weight_cache"],
                               log=None if options["quiet"] else _err, machine=machine)
        except Exception as exc:  # one bad model must not lose the others' results; the error is reported
            failures.append({"target": "host", "model": model, "error": f"{type(exc).__name__}: {exc}"})


def _run_gpu(models, options, machine, rows, failures):
    from . import gpu

    try:
        gpu.require_gpu()
    except gpu.NoGpuError as exc:
        failures.append({"target": "gpu", "model": None, "error": str(exc)})
        return
    from export.errors import ExportError
    from export.loading import load

    for model in models:
        if model.endswith(TFLITE_SUFFIX):
            failures.append({"target": "gpu", "model": model, "error": "gpu target needs a Keras model "
                             "(.keras/.h5/SavedModel or a registry name), not a .tflite"})
            continue
        try:
            loaded = load(model, input_size=options["input_size"])
            row = gpu.bench_keras(loaded.model, device=options["gpu_device"], xla=options["xla"],
                                  mixed_precision=options["mixed_precision"], batch=options["batch"],
                                  policy=options["policy"])
        except ExportError as exc:
            failures.append({"target": "gpu", "model": model, "error": str(exc)})
            continue
        name = os.path.basename(os.path.normpath(model)).split(".")[0]
        row.update({"model": name, "model_path": model, "mode": "mixed_float16" if options["mixed_precision"]
                    else "fp32", "target": "gpu", "runtime": "tensorflow" + (" XLA" if options["xla"] else ""),
                    "runtime_version": machine["packages"].get("tensorflow")
                    or machine["packages"].get("tensorflow-cpu"), "backend": options["gpu_device"], "threads": None,
                    "partitions": None, "status": "ok", "warnings": [], "notes": loaded.notes,
                    "machine": dict(machine, **gpu.device_description(options["gpu_device"]))})
        rows.append(row)


def _run_android(models, options, rows, failures):
    from . import adb as adb_module
    from . import android
    from .host import describe_model

    tflite = [m for m in models if m.endswith(TFLITE_SUFFIX)]
    failures += [{"target": "android", "model": m, "error": "android target needs a .tflite file"}
                 for m in models if not m.endswith(TFLITE_SUFFIX)]
    if not tflite:
        return
    try:
        android.check_binary(options["benchmark_binary"])
        client = adb_module.Adb(options["adb"], retries=options["retries"], log=_err)
        serials, problems = android.select_devices(client, options["serials"])
    except (adb_module.AdbError, android.BenchSetupError) as exc:
        failures.append({"target": "android", "model": None, "error": str(exc)})
        return
    failures += [{"target": "android", "model": None, "error": problem} for problem in problems]
    if not serials:
        return
    infos = []
    for model in tflite:
        try:
            info = describe_model(model, options["runtime"], options["mode"])
        except Exception:  # no host runtime: the phone can still run it, the mode is just unknown
            info = {"mode": options["mode"] or "unknown", "model": None}
        infos.append(android.ModelInfo(model, mode=info["mode"], name=info["model"]))
    android_options = android.AndroidOptions(
        benchmark_binary=options["benchmark_binary"], threads=options["threads"], delegates=options["delegates"],
        num_runs=options["policy"].min_runs, warmup_runs=options["policy"].warmup_runs,
        min_secs=options["policy"].min_seconds, warmup_min_secs=options["policy"].warmup_seconds,
        fixed_performance=options["fixed_performance"], taskset=options["taskset"],
        extra_flags=options["extra_flags"])
    for device_report in android.benchmark_devices(client, serials, infos, android_options,
                                                   log=(lambda m: None) if options["quiet"] else _err):
        rows += device_report.rows
        failures += [{"target": row["target"], "model": row["model"], "error": f"benchmark_model {row['status']}: "
                      + "; ".join(row["errors"] or row["warnings"] or [f"exit code {row['exit_code']}"])}
                     for row in device_report.rows if row["status"] != "ok"]
        if device_report.error:
            failures.append({"target": f"android:{device_report.serial}", "model": None,
                             "error": f"{device_report.status}: {device_report.error}"})


@click.command("bench")
@click.argument("models", nargs=-1, required=True)
@click.option("--target", "targets", type=click.Choice(["host", "gpu", "android"]), multiple=True,
              default=("host",), show_default=True, help="Repeat for several targets.")
@click.option("--threads", type=click.IntRange(min=1), multiple=True, default=(1,), show_default=True,
              help="Repeat to sweep: --threads 1 --threads 2.")
@click.option("--backend", "backends", type=click.Choice(["xnnpack", "builtin", "reference", "compiled"]),
              multiple=True, default=("xnnpack",), show_default=True,
              help="Host kernels; repeat to compare. builtin = XNNPACK off; compiled = CompiledModel.")
@click.option("--runtime", type=click.Choice(["auto", "litert", "tflite_runtime", "tf.lite"]), default="auto",
              show_default=True, help="Host runtime; auto takes ai-edge-litert, then tflite_runtime, then tf.lite.")
@click.option("--trials", type=click.IntRange(min=1), default=3, show_default=True,
              help="Fresh-runner trials per variant, interleaved.")
@click.option("--warmup-runs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--warmup-seconds", type=click.FloatRange(min=0), default=0.5, show_default=True)
@click.option("--min-runs", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--min-seconds", type=click.FloatRange(min=0), default=1.0, show_default=True)
@click.option("--max-seconds", type=click.FloatRange(min=0.001), default=60.0, show_default=True)
@click.option("--mode", default=None, help="Label for the quantization mode (default: read from the model).")
@click.option("--weight-cache", type=click.Path(file_okay=False), default=None,
              help="Directory for XNNPACK weight-cache files (backend compiled).")
@click.option("--batch", type=click.IntRange(min=1), default=32, show_default=True, help="GPU throughput batch.")
@click.option("--xla/--no-xla", default=True, show_default=True, help="GPU: compile with XLA.")
@click.option("--mixed-precision", is_flag=True, help="GPU: mixed_float16 compute.")
@click.option("--input-size", type=click.IntRange(min=8), default=None, help="GPU: size for registry names.")
@click.option("--gpu-device", default="/GPU:0", show_default=True)
@click.option("--benchmark-binary", type=click.Path(dir_okay=False), default=None,
              help="Android: path of a benchmark_model binary built for the device.")
@click.option("--serial", "serials", multiple=True, help="Android: device serial (repeat; default: all ready).")
@click.option("--delegate", "delegates", type=click.Choice(["xnnpack", "cpu", "gpu", "nnapi"]), multiple=True,
              default=("xnnpack",), show_default=True, help="Android: repeat to compare.")
@click.option("--fixed-performance", is_flag=True, help="Android: enable fixed performance mode while running.")
@click.option("--taskset/--no-taskset", default=True, show_default=True, help="Android: pin to the big cores.")
@click.option("--extra-flag", "extra_flags", multiple=True, help="Android: extra benchmark_model flag (repeat).")
@click.option("--adb", default=None, help="Android: adb client to use (default: $ADB or adb on PATH).")
@click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True,
              help="Android: retries after a transient adb failure.")
@click.option("--out", "out_path", default="bench-results.json", show_default=True, type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Overwrite --out.")
@click.option("--quiet", is_flag=True, help="No progress lines on stderr.")
def bench_command(models, targets, threads, backends, runtime, trials, warmup_runs, warmup_seconds, min_runs,
                  min_seconds, max_seconds, mode, weight_cache, batch, xla, mixed_precision, input_size, gpu_device,
                  benchmark_binary, serials, delegates, fixed_performance, taskset, extra_flags, adb, retries,
                  out_path, force, quiet):
    """Benchmark MODELS (.tflite files; Keras models or registry names for --target gpu)."""
    from . import machine as machine_module

    if os.path.exists(out_path) and not force:
        raise click.UsageError(f"--out {out_path}: file exists; pass --force to overwrite it")
    for model in models:
        if model.endswith(TFLITE_SUFFIX) and not os.path.isfile(model):
            raise click.UsageError(f"{model}: model file not found")
    if "android" in targets and not benchmark_binary:
        raise click.UsageError("--target android needs --benchmark-binary PATH (a benchmark_model built for the "
                               "device; it cannot be downloaded here)")
    if "android" in targets and not os.path.isfile(benchmark_binary):
        raise click.UsageError(f"--benchmark-binary {benchmark_binary}: file not found")
    options = dict(threads=tuple(dict.fromkeys(threads)), backends=tuple(dict.fromkeys(backends)), runtime=runtime,
                   trials=trials, mode=mode, weight_cache=weight_cache, batch=batch, xla=xla,
                   mixed_precision=mixed_precision, input_size=input_size, gpu_device=gpu_device,
                   benchmark_binary=benchmark_binary, serials=serials, delegates=tuple(dict.fromkeys(delegates)),
                   fixed_performance=fixed_performance, taskset=taskset, extra_flags=extra_flags, adb=adb,
                   retries=retries, quiet=quiet,
                   policy=TimingPolicy(warmup_runs, warmup_seconds, min_runs, min_seconds, max_seconds))
    machine = machine_module.describe()
    rows, failures = [], []
    for target in dict.fromkeys(targets):
        if target == "host":
            _run_host(models, options, machine, rows, failures)
        elif target == "gpu":
            _run_gpu(models, options, machine, rows, failures)
        else:
            _run_android(models, options, rows, failures)
    if rows:
        write_json_atomic(out_path, {"schema": "mobilecnn-bench/1", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                     "machine": machine, "rows": rows, "failures": failures}, force)
        click.echo(report_module.text_table(report_module.enrich(rows)))
        click.echo(f"\nwrote {len(rows)} row(s) to {out_path}")
    for failure in failures:
        where = failure["target"] + (f" {failure['model']}" if failure.get("model") else "")
        _err(f"error: {where}: {failure['error']}")
    if failures:
        raise SystemExit(1)


@click.command("report")
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out-dir", default="bench-report", show_default=True, type=click.Path(file_okay=False),
              help="Directory for report.md, results.csv and the PNG plots.")
@click.option("--accuracy", "accuracy_path", default=None, type=click.Path(dir_okay=False),
              help="CSV/JSON with model, mode, accuracy columns for the latency-vs-accuracy plot.")
@click.option("--force", is_flag=True, help="Overwrite an existing report in --out-dir.")
def report_command(results, out_dir, accuracy_path, force):
    """Write a Markdown table, a CSV and PNG plots from `mobilecnn bench` RESULTS files."""
    for path in results:
        if not os.path.isfile(path):
            raise click.UsageError(f"{path}: results file not found")
    try:
        written, notes = report_module.write_report(list(results), out_dir, accuracy_path=accuracy_path, force=force)
    except report_module.ReportError as exc:
        raise click.ClickException(str(exc)) from None
    for note in notes:
        _err(f"note: {note}")
    for path in written:
        click.echo(f"wrote {path}")
