"""Our int8 export vs a plain TFLiteConverter int8 conversion of keras.applications models.

For each pair, at 224 px with random weights (BatchNorm statistics set from
one batch, so int8 outputs are not all zeros; speed does not depend on the
weight values):

* ours: `mobilecnn` zoo model through `export.convert` (int8 with float IO,
  int8 with int8 IO, and fp32; fixed batch 1, logits output, decomposed
  hard-swish);
* peer: the tf_keras.applications model of the same name through a plain
  `TFLiteConverter.from_keras_model` int8 conversion (DEFAULT optimization,
  representative dataset, TFLITE_BUILTINS_INT8; float IO like ours).

Every variant is timed in the same process with the same LiteRT Interpreter
(XNNPACK) at 1 and 2 threads, following the project's timing rules (toolchain
notes section 6): inputs set once, only `invoke()` timed, warm-up >= 10 calls
and >= 0.5 s, measurement >= 50 calls and >= 1 s, gc off, CPU affinity pinned,
3 trials with fresh interpreters interleaving the variants; the table shows
the median of the trial medians.

    python -m benchmarks.export_vs_keras_apps --out docs/bench-export.md
"""
import argparse
import gc
import importlib.metadata
import json
import os
import statistics
import sys
import time

import numpy as np

from mobilecnn.compat import keras, tf

import export
from android_bench import machine

SIZE = 224
# (our registry name, keras.applications constructor, its kwargs)
PAIRS = [
    ("mobilenet_v2_1.0", "MobileNetV2", {"alpha": 1.0}),
    ("mobilenet_v3_large_1.0", "MobileNetV3Large", {"include_preprocessing": False}),
    ("mobilenet_v3_small_1.0", "MobileNetV3Small", {"include_preprocessing": False}),
    # keras.applications has no EfficientNet-Lite; B0 is its nearest model.
    ("efficientnet_lite0", "EfficientNetB0", {}),
    ("efficientnet_b0", "EfficientNetB0", {}),
]


def calibration(n, seed):
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, SIZE, SIZE, 3)).astype(np.float32)


def ours(name, rep):
    from mobilecnn import create_model

    keras.utils.set_random_seed(0)
    model = create_model(name, input_shape=(SIZE, SIZE, 3))
    export.calibrate_batchnorm(model, rep[:16])
    int8 = export.convert(model, "int8", representative=rep).tflite
    # int8 input/output, as a camera pipeline feeds it: no float QUANTIZE/DEQUANTIZE at the ends. Timed beside the
    # float-IO file so the cost of those two ops is visible; the ours/peer column compares float IO with float IO.
    int8_io = export.convert(model, "int8", io="int8", representative=rep).tflite
    fp32 = export.convert(model, "fp32").tflite
    return int8, int8_io, fp32


def peer(constructor, kwargs, rep):
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, constructor)(weights=None, input_shape=(SIZE, SIZE, 3), **kwargs)
    export.calibrate_batchnorm(model, rep[:16])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([rep[i : i + 1]] for i in range(len(rep)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def time_once(tflite, threads, min_s=1.0, max_s=60.0):
    runner = export.Runner(tflite, num_threads=threads)
    runner.set_input(np.random.default_rng(1).uniform(-1, 1, runner.input_details[0]["shape"]).astype(np.float32))
    start = time.perf_counter()
    calls = 0
    while calls < 10 or time.perf_counter() - start < 0.5:
        runner.invoke()
        calls += 1
    samples = []
    gc.disable()
    try:
        start = time.perf_counter()
        while (len(samples) < 50 or time.perf_counter() - start < min_s) and time.perf_counter() - start < max_s:
            t0 = time.perf_counter_ns()
            runner.invoke()
            samples.append((time.perf_counter_ns() - t0) / 1e6)
    finally:
        gc.enable()
    return {
        "median_ms": statistics.median(samples),
        "p90_ms": float(np.percentile(samples, 90)),
        "n": len(samples),
        "init_ms": runner.init_ms,
        "partitions": runner.partitions,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--rep-samples", type=int, default=32)
    parser.add_argument("--only", nargs="*", help="our registry names to run (default: all pairs)")
    parser.add_argument("--out", help="write the markdown table here")
    parser.add_argument("--json", help="write raw results here")
    args = parser.parse_args(argv)

    if hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))[: max(args.threads)]
        os.sched_setaffinity(0, cores)
    rep = calibration(args.rep_samples, seed=0)
    models = {}
    peers = {}
    for name, constructor, kwargs in PAIRS:
        if args.only and name not in args.only:
            continue
        print(f"converting {name} and keras.applications.{constructor} ...", file=sys.stderr, flush=True)
        models[f"{name} int8"], models[f"{name} int8-io"], models[f"{name} fp32"] = ours(name, rep)
        key = f"keras {constructor} int8"
        if key not in peers:
            peers[key] = peer(constructor, kwargs, rep)
        models[key] = peers[key]

    results = {}
    for threads in args.threads:
        for trial in range(args.trials):
            order = list(models) if trial % 2 == 0 else list(reversed(models))  # interleave
            for key in order:
                results.setdefault((key, threads), []).append(time_once(models[key], threads))
                print(f"  {key} threads={threads} trial={trial}: {results[(key, threads)][-1]['median_ms']:.2f} ms",
                      file=sys.stderr, flush=True)

    table = render(results, models, args)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({f"{k} t{t}": v for (k, t), v in results.items()}, f, indent=2)


def summary(results, key, threads):
    trials = results[(key, threads)]
    medians = [t["median_ms"] for t in trials]
    return statistics.median(medians), min(medians), max(medians), trials[0]["partitions"]


def render(results, models, args):
    lines = [
        "# Export benchmark: mobilecnn int8 vs plain TFLiteConverter int8 of keras.applications",
        "",
        f"Command: `python -m benchmarks.export_vs_keras_apps {' '.join(sys.argv[1:])}`".rstrip(),
        "",
        f"Machine: {machine.one_line(machine.describe())}; runtime ai-edge-litert {importlib.metadata.version('ai-edge-litert')} "
        f"Interpreter + XNNPACK; tensorflow {tf.__version__}; {SIZE}x{SIZE} input, batch 1, random weights with "
        f"BatchNorm statistics from one batch; {args.rep_samples} calibration samples; median of {args.trials} "
        "interleaved trials (min-max in brackets), each the median of >= 50 invokes over >= 1 s.",
        "",
        "| model | threads | ours int8 ms | ours int8, int8 IO ms | ours fp32 ms | peer int8 ms | ours/peer | "
        "int8/fp32 | int8 IO/fp32 | partitions ours/peer | size ours/peer |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, constructor, _ in PAIRS:
        if f"{name} int8" not in models:
            continue
        peer_key = f"keras {constructor} int8"
        for threads in args.threads:
            o8, o8lo, o8hi, p_o = summary(results, f"{name} int8", threads)
            o8io, o8iolo, o8iohi, _ = summary(results, f"{name} int8-io", threads)
            o32, o32lo, o32hi, _ = summary(results, f"{name} fp32", threads)
            p8, p8lo, p8hi, p_p = summary(results, peer_key, threads)
            lines.append(
                f"| {name} vs {constructor} | {threads} | {o8:.2f} [{o8lo:.2f}-{o8hi:.2f}] | "
                f"{o8io:.2f} [{o8iolo:.2f}-{o8iohi:.2f}] | "
                f"{o32:.2f} [{o32lo:.2f}-{o32hi:.2f}] | {p8:.2f} [{p8lo:.2f}-{p8hi:.2f}] | {o8 / p8:.2f}x | "
                f"{o8 / o32:.2f}x | {o8io / o32:.2f}x | {p_o}/{p_p} | {len(models[f'{name} int8']) / 1e6:.2f}/{len(models[peer_key]) / 1e6:.2f} MB |"
            )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
