"""EfficientNet-Lite0 ImageNet check: the ported weights in Keras float, then int8 TFLite.

Data: the 1,000 images of ../shared/datasets/imagenet-samples/ (one per
class, shorter side 256), sorted by file name; the standard view (centre
crop 224) normalised with the model card's (x - 127) / 128.

* float: the Keras model built by `mobilecnn.porting.port("lukemelas", ...)`
  scored on all 1,000 images (reference: top-1 88.5 %, top-5 97.6 %).
* int8, with each range method of `export.convert` ("minmax": the
  converter's extremes; "mean": the mean of per-batch extremes):
  `export.convert(..., "int8")` calibrated on the even-indexed half
  (500 images), run with ai-edge-litert (XNNPACK) on the odd-indexed half and
  compared with float on that same half; then the halves swap roles. The
  pooled int8 score covers every image once, each by a model not calibrated
  on it (500 images per fold is noisy: one image is 0.2 points).

    flock /tmp/tf.lock python -m benchmarks.imagenet_lite0 --out /tmp/lite0.json
"""
import argparse
import json
import pathlib
import sys
import time

import numpy as np

RANGE_METHODS = ("minmax", "mean")

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MODEL = "efficientnet_lite0"


def load_samples(folder, size=224):
    """(uint8 pixels (N, size, size, 3), labels (N,), file names), in file-name order."""
    from mobilecnn.imagenet import imagenet_classes, load_image

    index = {wnid: i for i, (wnid, _) in enumerate(imagenet_classes())}
    files = sorted(p for p in pathlib.Path(folder).iterdir() if p.suffix.lower() in (".jpeg", ".jpg"))
    if not files:
        raise SystemExit(f"{folder}: no JPEG files")
    pixels = np.empty((len(files), size, size, 3), np.uint8)
    labels = np.empty(len(files), np.int64)
    for i, path in enumerate(files):
        wnid = path.name.split("_", 1)[0]
        if wnid not in index:
            raise SystemExit(f"{path}: file name does not start with an ILSVRC-2012 wnid")
        labels[i] = index[wnid]
        pixels[i] = np.round(load_image(path, size)).astype(np.uint8)
    return pixels, labels, [p.name for p in files]


def topk(logits, labels, k):
    best = np.argsort(-logits, axis=1)[:, :k]
    return float(np.mean(np.any(best == labels[:, None], axis=1)) * 100.0)


def keras_logits(model, pixels, batch=50):
    from mobilecnn.imagenet import preprocess_input

    out = [model.predict(preprocess_input(pixels[i : i + batch], MODEL), verbose=0)
           for i in range(0, len(pixels), batch)]
    return np.concatenate(out)


def tflite_logits(tflite, pixels, threads):
    from export import Runner
    from mobilecnn.imagenet import preprocess_input

    runner = Runner(tflite, num_threads=threads, backend="xnnpack")
    try:
        return np.concatenate([runner.run(preprocess_input(pixels[i : i + 1], MODEL)) for i in range(len(pixels))])
    finally:
        runner.close()


def scores(logits, labels):
    return {"top1": round(topk(logits, labels, 1), 2), "top5": round(topk(logits, labels, 5), 2)}


def int8_fold(model, pixels, calibrate, score, threads, ranges="minmax"):
    """Convert with calibration on `calibrate`, return int8 logits on `score` and the model size."""
    from export import convert
    from mobilecnn.imagenet import preprocess_input

    conversion = convert(model, "int8", representative=preprocess_input(pixels[calibrate], MODEL),
                         calibration_ranges=ranges)
    return tflite_logits(conversion.tflite, pixels[score], threads), len(conversion.tflite)


def _int8_folds(model, pixels, labels, logits, halves, threads, ranges):
    """Two folds (calibrate on one half, score the other, then swap) and the pooled score, for one range method."""
    even, odd = halves
    result = {"calibration_ranges": ranges, "folds": []}
    pooled = np.empty_like(logits)
    for calibrate, score, name in ((even, odd, "calibrate even, score odd"), (odd, even, "calibrate odd, score even")):
        int8, size = int8_fold(model, pixels, calibrate, score, threads, ranges)
        pooled[score] = int8
        tied = int(np.sum(np.sum(int8 == int8.max(axis=1, keepdims=True), axis=1) > 1))
        float_scores, int8_scores = scores(logits[score], labels[score]), scores(int8, labels[score])
        result["folds"].append({
            "fold": name,
            "float": float_scores,
            "int8": int8_scores,
            "top1_drop": round(float_scores["top1"] - int8_scores["top1"], 2),
            "argmax_agreement_pct": round(float(np.mean(int8.argmax(1) == logits[score].argmax(1)) * 100.0), 2),
            "int8_top1_ties": tied,
        })
        result["int8_bytes"] = size
    # Every image scored once, by an int8 model that was not calibrated on it.
    result["int8_pooled"] = scores(pooled, labels)
    result["int8_top1_drop_pooled"] = round(scores(logits, labels)["top1"] - result["int8_pooled"]["top1"], 2)
    return result


def evaluate(weights, samples, threads=2):
    """Float on all images; int8 in two folds (calibrate on one half, score the other, then swap)."""
    from mobilecnn.porting import port

    start = time.perf_counter()
    pixels, labels, _ = load_samples(samples)
    model = port("lukemelas", weights, MODEL, classifier_activation=None)
    logits = keras_logits(model, pixels)
    result = {"model": MODEL, "weights": str(weights), "images": int(len(pixels)),
              "float_all": scores(logits, labels)}
    even, odd = np.arange(0, len(pixels), 2), np.arange(1, len(pixels), 2)
    for ranges in RANGE_METHODS:
        result[f"int8_{ranges}"] = _int8_folds(model, pixels, labels, logits, (even, odd), threads, ranges)
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=str(SHARED / "weights" / "efficientnet_lite0_imagenet.npz"))
    parser.add_argument("--samples", default=str(SHARED / "datasets" / "imagenet-samples"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    for path in (args.weights, args.samples):
        if not pathlib.Path(path).exists():
            raise SystemExit(f"{path} not found (../shared is not part of a fresh clone)")
    result = evaluate(args.weights, args.samples, args.threads)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        pathlib.Path(args.out).write_text(text + "\n")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
