"""Layer-by-layer trace of a QAT model's int8 TFLite file against the QAT Keras model.

The model is trained exactly as the whole-model parity test trains it
(tests/test_pipelines_qat.py, `-m slow`): 8 epochs on 512 synthetic images at
32 px, quantized with calibrated ranges, one QAT epoch, biases aligned with the
int8 file (export.align_biases; `--unaligned` skips that). Then it prints the
output's deviation (int8 XNNPACK file vs QAT Keras on 32 held-out images, as
the test measures it) and, per layer, the deviation of the tensor TFLite's
reference kernels computed for it (export.layer_trace). `--xnnpack PATTERN`
also traces the layers whose names match PATTERN under XNNPACK, the kernels
the file ships with, one converted sub-model per layer. Usage:

    flock /tmp/tf.lock .venv/bin/python -m benchmarks.int8_trace --model mnasnet_a1 [--top 15]
    flock /tmp/tf.lock .venv/bin/python -m benchmarks.int8_trace --model efficientnet_b0 --xnnpack "project_bn$"

Not part of CI (minutes per model on two cores).
"""
import argparse
import sys

import numpy as np

from mobilecnn import create_model
from mobilecnn.compat import keras
from pipelines import qat, synthetic

SIZE, CLASSES = 32, 10
TRAIN_IMAGES, TEST_IMAGES = 512, 32


def synthetic_split(size=SIZE, train=TRAIN_IMAGES, test=TEST_IMAGES):
    """(train x, train y one-hot, test x) from the embedded synthetic set, normalized like the zoo's "tf"
    cards ([-1, 1])."""
    images, labels = synthetic.generate(train + test, size=size, seed=0)
    x = (images.astype(np.float32) - 127.5) / 127.5
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], keras.utils.to_categorical(labels[order], CLASSES)
    return x[test:], y[test:], x[:test]


def small_model(name, seed=None, size=SIZE):
    keras.backend.clear_session()
    if seed is not None:
        keras.utils.set_random_seed(seed)
    return create_model(name, input_shape=(size, size, 3), classes=CLASSES, classifier_activation=None)


def _learning_rate(model):
    """Adam at 3e-3, or 3e-4 for a net without batch norm: SqueezeNet lost every ReLU at 3e-3 and gave all images
    the same logits, which no int8 comparison can test."""
    normalized = any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    return 3e-3 if normalized else 3e-4


def trained_qat(name, split, epochs=8, align=True):
    """QAT model of a zoo model trained on `split` (from `synthetic_split`): a random or barely trained net
    amplifies the int8 kernels' one-step rounding differences far more than a trained one."""
    from export import align_biases
    from pipelines.train import set_bn_momentum

    x, y, _ = split
    model = set_bn_momentum(small_model(name, seed=0), 0.9)  # the weights decide which outputs round apart
    loss = keras.losses.CategoricalCrossentropy(from_logits=True)
    model.compile(keras.optimizers.Adam(_learning_rate(model)), loss)
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0, shuffle=False)
    q = qat.quantize_model(model, calibration=x[:128])
    q.compile(keras.optimizers.Adam(3e-4), loss)
    q.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
    if align:
        align_biases(q)
    return q


def output_deviation(expected, got):
    """The figures the parity test bounds: deviation in int8 steps of the output range, relative L2, same class."""
    step = (expected.max() - expected.min()) / 255
    off = np.abs(got - expected) / step
    return {"step": float(step), "mean_steps": float(off.mean()), "max_steps": float(off.max()),
            "rel_l2": float(np.linalg.norm(got - expected) / np.linalg.norm(expected)),
            "same_class": float(np.mean(got.argmax(1) == expected.argmax(1)))}


def _figures(figures):
    return ", ".join(f"{k} {v:.4g}" for k, v in figures.items())


def main(argv=None):
    from export import Runner, convert
    from export.layer_trace import trace_layers, trace_sub_models

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="registry name, e.g. mnasnet_a1")
    parser.add_argument("--samples", type=int, default=4, help="held-out images for the layer trace (default 4)")
    parser.add_argument("--top", type=int, default=0, help="also list the N layers with the largest mean deviation")
    parser.add_argument("--unaligned", action="store_true", help="keep TF-MOT's float biases (no align_biases)")
    parser.add_argument("--xnnpack", metavar="PATTERN", help="also trace the layers matching this regular expression "
                        "under XNNPACK (one conversion each)")
    args = parser.parse_args(argv)
    split = synthetic_split()
    q = trained_qat(args.model, split, align=not args.unaligned)
    tflite = convert(q, "int8", io="float").tflite
    x = split[2]
    expected = q(x, training=False).numpy()
    got = Runner(tflite).run_all(x)
    print(f"{args.model}: output, int8 XNNPACK vs QAT Keras on {len(x)} images: "
          + _figures(output_deviation(expected, got)))
    # TFLite's own kernels disagree on the same file (rounding in MEAN and requantization); in the same units
    # (steps of the XNNPACK output's range) this is the floor no QAT model can get under against all of them.
    for backend in ("builtin", "reference"):
        print(f"  same file, {backend} kernels vs XNNPACK: "
              + _figures(output_deviation(got, Runner(tflite, backend=backend).run_all(x))))
    trace = trace_layers(q, tflite, x[: args.samples])
    print(f"per layer (reference kernels, {args.samples} images; steps of each tensor's own scale):")
    for row in trace:
        print(" ", row)
    if args.top:
        print("largest mean deviation:")
        for row in sorted(trace, key=lambda r: -r.mean_steps)[: args.top]:
            print(" ", row)
    if args.xnnpack:
        print(f"per layer matching {args.xnnpack!r} (XNNPACK, the model up to the layer converted on its own, "
              f"{args.samples} images; steps of the layer's output scale):")
        for row in trace_sub_models(q, x[: args.samples], pattern=args.xnnpack):
            print(" ", row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
