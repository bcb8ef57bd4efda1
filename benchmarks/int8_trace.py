"""Layer-by-layer trace of a QAT model's int8 TFLite file against the QAT Keras model.

The model is trained exactly as the whole-model parity test trains it
(tests/test_pipelines_qat.py, `-m slow`): 8 epochs on 5,408 synthetic images at
32 px (Adam 1e-3), its batch norms' statistics re-estimated in inference mode
(inference_batchnorm), quantized with calibrated ranges, one QAT epoch, biases aligned with the
int8 file (export.align_biases; `--unaligned` skips that). Then it prints the
output's deviation (int8 XNNPACK file vs QAT Keras on 32 held-out images, as
the test measures it), the QAT Keras model's own spread (its XLA against its
eager outputs) with the bounds the test derives from it, the test's verdict
(parity_verdict), and, per layer, the
deviation of the tensor TFLite's reference kernels computed for it
(export.layer_trace). `--xnnpack PATTERN`
also traces the layers whose names match PATTERN under XNNPACK, the kernels
the file ships with, one converted sub-model per layer. `--first-divergence`
finds, for each held-out image whose output the file changes, the first layer
whose int8 output differs and how far the Keras model's unrounded values there
lie from a rounding midpoint (export.layer_trace.first_divergence). `--gains PATTERN`
explains a layer's deviation by its input's: per output channel, the gain
(|int8 weight| x weight scale x input scale / output scale, summed over the
inputs) and the deviation the weights predict from the input's (XNNPACK). Usage:

    flock /tmp/tf.lock .venv/bin/python -m benchmarks.int8_trace --model mnasnet_a1 [--top 15]
    flock /tmp/tf.lock .venv/bin/python -m benchmarks.int8_trace --model efficientnet_b0 --xnnpack "project_bn$"
    flock /tmp/tf.lock .venv/bin/python -m benchmarks.int8_trace --model mnasnet_0.5 --first-divergence
    flock /tmp/tf.lock .venv/bin/python -m benchmarks.int8_trace --model mnasnet_0.75 --gains "stage7_block1_dwact$|head_act$|logits$"

Not part of CI (minutes per model on two cores).
"""
import argparse
import sys
from dataclasses import dataclass

import numpy as np

from mobilecnn import create_model
from mobilecnn.compat import keras
from pipelines import qat, synthetic

SIZE, CLASSES = 32, 10
# 5,408 training images: the test has trained on these since it was written. 512 (128 steps, tried with warm-up and
# cosine decay) left the models far noisier (docs/pipelines.md, "The test's training").
TRAIN_IMAGES, TEST_IMAGES, BATCH = 5408, 32, 32


def synthetic_split(size=SIZE, train=TRAIN_IMAGES, test=TEST_IMAGES):
    """(train x, train y one-hot, test x) from the embedded synthetic set, normalized like the zoo's "tf"
    cards ([-1, 1])."""
    # `generate` counts images per class: draw enough of each, then keep `train + test` of them in a seeded order.
    images, labels = synthetic.generate(-(-(train + test) // CLASSES), size=size, seed=0)
    x = (images.astype(np.float32) - 127.5) / 127.5
    order = np.random.default_rng(0).permutation(len(x))[: train + test]
    x, y = x[order], keras.utils.to_categorical(labels[order], CLASSES)
    return x[test:], y[test:], x[:test]


def small_model(name, seed=None, size=SIZE):
    keras.backend.clear_session()
    if seed is not None:
        keras.utils.set_random_seed(seed)
    return create_model(name, input_shape=(size, size, 3), classes=CLASSES, classifier_activation=None)


def _learning_rate(model):
    """Adam at 1e-3, or 3e-4 for a net without batch norm: SqueezeNet lost every ReLU at 3e-3 and gave all images
    the same logits, which no int8 comparison can test. At 3e-3 the deeper EfficientNets never left chance in 8
    epochs (efficientnet_v2_b1: loss 2.5, 6 % of its training images right), and a net that has learned nothing
    amplifies one-step roundings into whole steps of its narrow outputs (docs/pipelines.md, "The test's learning
    rate")."""
    normalized = any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    return 1e-3 if normalized else 3e-4


def trained_qat(name, split, epochs=8, align=True):
    """QAT model of a zoo model trained on `split` (from `synthetic_split`): a random or barely trained net
    amplifies the int8 kernels' one-step rounding differences far more than a trained one."""
    from export import align_biases
    from pipelines.train import set_bn_momentum

    x, y, _ = split
    model = set_bn_momentum(small_model(name, seed=0), 0.9)  # the weights decide which outputs round apart
    loss = keras.losses.CategoricalCrossentropy(from_logits=True)
    model.compile(keras.optimizers.Adam(_learning_rate(model)), loss)
    model.fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0, shuffle=False)
    inference_batchnorm(model, x[:512])
    q = qat.quantize_model(model, calibration=x[:128])
    q.compile(keras.optimizers.Adam(3e-4), loss)
    q.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
    if align:
        align_biases(q)
    return q


def inference_batchnorm(model, x):
    """Set each batch norm's moving statistics, in graph order, to the mean and variance of its inputs over `x` in
    inference mode (the earlier ones already set), in place. After the test's 8 epochs, efficientnet_b0's batch
    norms' outputs were 1.03 times as spread in inference mode as in training mode at the stem, growing layer by
    layer to 6.3 times at the head (each moving average is a few per cent off its batch statistics, and each
    layer's input carries the earlier layers' differences). Its float logits spanned [-915, 617] in inference mode,
    efficientnet_v2_b2's [-2345, 1213]: QAT ranges calibrated there left v2_b2's fine-tuned QAT model a logits grid
    20 times the test's step, which no comparison could test (docs/pipelines.md, "The float model's batch
    norms")."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            inputs = keras.Model(model.inputs, layer.input).predict(x, batch_size=BATCH, verbose=0)
            axes = tuple(range(inputs.ndim - 1))
            layer.moving_mean.assign(inputs.mean(axis=axes))
            layer.moving_variance.assign(inputs.var(axis=axes))
    return model


def training_accuracy(model, split, count=512):
    """Share of the first `count` training images of `split` that `model` classifies right in inference mode: how
    far the test's training got (0.1 is chance)."""
    x, y, _ = split
    return float(np.mean(model.predict(x[:count], batch_size=BATCH, verbose=0).argmax(1) == y[:count].argmax(1)))


def output_step(expected):
    """One int8 step of the expected outputs' range: the unit the parity tests count deviations in."""
    return (expected.max() - expected.min()) / 255


def output_deviation(expected, got):
    """The figures the parity test bounds: deviation in int8 steps of the output range, relative L2, same class."""
    step = output_step(expected)
    off = np.abs(got - expected) / step
    return {"step": float(step), "mean_steps": float(off.mean()), "max_steps": float(off.max()),
            "rel_l2": float(np.linalg.norm(got - expected) / np.linalg.norm(expected)),
            "same_class": float(np.mean(got.argmax(1) == expected.argmax(1)))}


# The whole-model parity test's bounds on the int8 file against the QAT Keras model, in output steps: mean and max.
MEAN_STEPS, MAX_STEPS = 1, 4
# A QAT Keras model whose own evaluations differ by more than this (an eighth of its outputs' range) is too close to
# constant or too chaotic for any comparison with it to test the file: the parity test fails it as untestable.
TESTABLE_SPREAD_STEPS = 32


def xla_outputs(model, x):
    """`model`'s outputs for `x` compiled by XLA: the same float32 model, its arithmetic fused and ordered otherwise
    than by TF's eager kernels, so it rounds elsewhere."""
    from mobilecnn.compat import tf

    return tf.function(lambda t: model(t, training=False), jit_compile=True)(tf.constant(x)).numpy()


def parity_bounds(spread):
    """The parity test's (mean, max) bounds, given the QAT Keras model's own float32 spread (`output_deviation` of
    its eager outputs against `xla_outputs`): MEAN_STEPS and MAX_STEPS, or the spread's mean and twice its max where
    the model's two evaluations already differ by more. A max is a handful of amplified rounding flips on the
    file's output grid, and one draw of it is not the noise's extreme (the file's max was up to twice the spread's
    on the models measured; docs/pipelines.md), hence twice."""
    return max(MEAN_STEPS, spread["mean_steps"]), max(MAX_STEPS, 2 * spread["max_steps"])


# Both models' outputs lie on the file's output grid, so the spread and twice it are multiples of its step that a
# deviation can equal; this slack absorbs only the float32 rounding of those multiples.
SLACK_STEPS = 1e-3
# A value this close (in steps) to the midpoint between two int8 levels lies on it to within float32 rounding: which
# level it takes is decided by how an evaluation rounds, not by the file's arithmetic. mnasnet_0.5's file first
# departs from its QAT Keras model at values 0 and 6e-6 steps from one; biases left unaligned (export.align_biases,
# which the test applies) first move values up to 2e-3 steps from one, at least 2e-4 per image (docs/pipelines.md).
TIE_STEPS = 1e-4


def tie_started(model, x, expected, got, spread):
    """{image: export.layer_trace.Divergence} for the images of `x` whose outputs the file moves past the max bound
    and whose first departure from the QAT Keras `model` is at values within TIE_STEPS of a rounding midpoint: the
    file and the model disagree there only on how to round a value that lies between two levels, and every
    difference after it is that one rounding carried through the net (one conversion per layer up to it)."""
    from export.layer_trace import first_divergence

    _, max_bound = parity_bounds(spread)
    over = np.abs(got - expected).max(axis=1) / output_step(expected) > max_bound + SLACK_STEPS
    found = {int(image): first_divergence(model, x[image]) for image in np.flatnonzero(over)}
    return {image: d for image, d in found.items() if d is not None and d.tie_distance <= TIE_STEPS}


def parity_failures(expected, got, spread, excused=()):
    """The whole-model parity test's rule, as reasons the int8 file's outputs `got` fail against the QAT Keras
    model's eager outputs `expected` (empty when they pass), given the model's own `spread` (`output_deviation` of
    `expected` against `xla_outputs`): the untestable guard, then the class wherever the top two logits are further
    apart than the max bound (near-ties may swap), then `parity_bounds`' mean and max. The images in `excused`
    (from `tie_started`) are left out of the max only."""
    if spread["max_steps"] > TESTABLE_SPREAD_STEPS:
        return [f"untestable: the QAT Keras model's XLA and eager outputs differ by {spread['max_steps']:.1f} steps "
                f"of its outputs' range (at most {TESTABLE_SPREAD_STEPS}); no bound against it would test the file"]
    figures = output_deviation(expected, got)
    if len(excused):
        kept = np.setdiff1d(np.arange(len(expected)), list(excused))
        figures["max_steps"] = float(np.abs(got - expected)[kept].max(initial=0) / figures["step"])
    mean_bound, max_bound = parity_bounds(spread)
    ranked = np.sort(expected, axis=1)
    clear = ranked[:, -1] - ranked[:, -2] > max_bound * figures["step"]
    changed = int(np.sum(got.argmax(1)[clear] != expected.argmax(1)[clear]))
    failures = []
    if changed:
        failures.append(f"{changed} of the {int(clear.sum())} images whose top two logits are over {max_bound:.3g} "
                        "steps apart change class")
    for kind, bound in (("mean", mean_bound), ("max", max_bound)):
        if figures[f"{kind}_steps"] > bound + SLACK_STEPS:
            failures.append(f"{kind} deviation {figures[f'{kind}_steps']:.4g} steps, over the bound {bound:.4g}")
    return failures


def parity_verdict(model, x, expected, got, spread):
    """(failures, {image: Divergence} excused from the max): the whole-model parity test's rule, `parity_failures`
    with the images `tie_started` finds left out of the max; the first divergences are only looked for when the
    file fails without them."""
    failures = parity_failures(expected, got, spread)
    ties = tie_started(model, x, expected, got, spread) if failures else {}
    return (parity_failures(expected, got, spread, excused=list(ties)) if ties else failures), ties


def verdict_text(failures, ties):
    return (("; ".join(failures) if failures else "passes")
            + "".join(f"; image {image} past the max bound from a rounding tie at {d}" for image, d in ties.items()))


def _figures(figures):
    return ", ".join(f"{k} {v:.4g}" for k, v in figures.items())


WEIGHTED_OPS = ("DEPTHWISE_CONV_2D", "CONV_2D", "FULLY_CONNECTED")


def weighted_source(layer):
    """(the conv or dense wrapper that `layer`'s output comes from, through batch norm and activations; the layer
    feeding it)."""
    from export.loading import inner_layer

    def inbound(node_layer):
        source = node_layer._inbound_nodes[0].inbound_layers
        if not isinstance(source, keras.layers.Layer):
            raise ValueError(f"--gains: {inner_layer(node_layer).name} has no single input to trace back through")
        return source

    while not isinstance(inner_layer(layer), (keras.layers.Conv2D, keras.layers.DepthwiseConv2D,
                                              keras.layers.Dense)):
        layer = inbound(layer)
    return layer, inbound(layer)


def signed_steps(model, layer, x):
    """(XNNPACK minus QAT Keras for the model up to `layer`, in steps of the file's output scale, per image and
    element; the file's Runner, still open)."""
    from export.layer_trace import dequantized_output, sub_model_file

    sub_model, runner = sub_model_file(model, layer)
    output = dequantized_output(runner)
    if output is None:
        runner.close()
        raise ValueError(f"--gains: the file computes {layer.name}'s output in float; no int8 steps to count")
    off = runner.run_all(x) - sub_model(x, training=False).numpy()
    return off.reshape(len(x), -1) / output["quantization"][0], runner


def last_weighted_op(runner):
    """The file's last conv, depthwise conv or dense op (the one that makes a sub-model's output)."""
    return [op for op in runner.ops() if op["name"] in WEIGHTED_OPS][-1]


def _gain_matrix(runner):
    """(out, in) gains of the file's last conv / dense op in output steps per input step; a depthwise conv's centre
    tap only, which is all that sees data on a 1x1 map."""
    op = last_weighted_op(runner)
    scale = {t["index"]: t["quantization"][0] for t in runner.tensors()}
    weights, weight_scales = runner.constant(op["inputs"][1])
    ratio = weight_scales * scale[op["inputs"][0]] / scale[op["outputs"][0]]
    if op["name"] == "DEPTHWISE_CONV_2D":
        kh, kw = weights.shape[1:3]
        return op["name"], np.diag(weights[0, kh // 2, kw // 2, :].astype(np.float64) * ratio)
    return op["name"], weights.reshape(len(weights), -1).astype(np.float64) * ratio[:, None]


def _correlation(a, b):
    """Pearson correlation as text; "undefined" when either side is constant (e.g. no deviation at all)."""
    a, b = a.ravel(), b.ravel()
    if a.std() == 0 or b.std() == 0:
        return "undefined (constant)"
    return f"{np.corrcoef(a, b)[0, 1]:.2f}"


@dataclass
class ChannelGains:
    """A layer's XNNPACK deviation explained by its input's, through the weights of the op that makes it; signed
    steps of each tensor's own scale, XNNPACK minus QAT Keras."""
    layer: str
    source: str
    kind: str
    gains: np.ndarray  # (out, in): output steps per input step
    in_off: np.ndarray  # (images, in)
    out_off: np.ndarray  # (images, out)

    @property
    def predicted(self):
        return self.in_off @ self.gains.T

    def lines(self, worst=8):
        in_off, out_off, predicted = self.in_off, self.out_off, self.predicted
        l1 = np.abs(self.gains).sum(axis=1)
        lines = [f"{self.layer} ({self.kind} from {self.source}): input off mean {np.abs(in_off).mean():.3f} max "
                 f"{np.abs(in_off).max():.2f} steps, output off mean {np.abs(out_off).mean():.3f} max "
                 f"{np.abs(out_off).max():.2f}; gain median {np.median(l1):.2f} p90 {np.percentile(l1, 90):.2f} max "
                 f"{l1.max():.2f}; correlation of predicted and measured {_correlation(predicted, out_off)}"]
        for flat in np.argsort(-np.abs(out_off).ravel())[:worst]:
            image, channel = divmod(int(flat), out_off.shape[1])
            lines.append(f"  image {image:2d} channel {channel:4d}: measured {out_off[image, channel]:+6.2f} "
                         f"predicted {predicted[image, channel]:+7.2f} gain {l1[channel]:6.2f}")
        return lines


def channel_gains(model, layer, x):
    """ChannelGains of `layer` (a dense layer or a conv on a 1x1 map, or an activation or batch norm after one)
    over the images `x`: two conversions, the model up to the layer and up to the op's input."""
    from export.loading import inner_layer

    _, source = weighted_source(layer)
    out_off, runner = signed_steps(model, layer, x)
    try:
        kind, gains = _gain_matrix(runner)
    finally:
        runner.close()
    in_off, runner = signed_steps(model, source, x)
    runner.close()
    if gains.shape[1] != in_off.shape[1]:
        raise ValueError(f"--gains: {inner_layer(layer).name} is not a dense layer or a conv on a 1x1 map "
                         f"({in_off.shape[1]} input values, {gains.shape[1]} weights per output)")
    return ChannelGains(layer=inner_layer(layer).name, source=inner_layer(source).name, kind=kind, gains=gains,
                        in_off=in_off, out_off=out_off)


def main(argv=None):
    from export import Runner, convert
    from export.layer_trace import first_divergence, matching_layers, trace_layers, trace_sub_models

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="registry name, e.g. mnasnet_a1")
    parser.add_argument("--samples", type=int, default=4, help="held-out images for the layer trace (default 4)")
    parser.add_argument("--top", type=int, default=0, help="also list the N layers with the largest mean deviation")
    parser.add_argument("--unaligned", action="store_true", help="keep TF-MOT's float biases (no align_biases)")
    parser.add_argument("--xnnpack", metavar="PATTERN", help="also trace the layers matching this regular expression "
                        "under XNNPACK (one conversion each)")
    parser.add_argument("--first-divergence", action="store_true", help="for each held-out image whose output the "
                        "file changes, the first layer where it does (XNNPACK, one conversion per layer up to it)")
    parser.add_argument("--gains", metavar="PATTERN", help="explain the XNNPACK deviation of the layers matching this "
                        "regular expression by their inputs' and their weights' gains (two conversions each)")
    args = parser.parse_args(argv)
    split = synthetic_split()
    q = trained_qat(args.model, split, align=not args.unaligned)
    tflite = convert(q, "int8", io="float").tflite
    x = split[2]
    expected = q(x, training=False).numpy()
    got = Runner(tflite).run_all(x)
    print(f"{args.model}: trained to {training_accuracy(q, split):.3f} of its training images; output, int8 "
          f"XNNPACK vs QAT Keras on {len(x)} images: " + _figures(output_deviation(expected, got)))
    compiled = xla_outputs(q, x)
    spread = output_deviation(expected, compiled)
    print(f"  the QAT Keras model's own spread, XLA vs eager kernels: {_figures(spread)}; the test's bounds: "
          "mean {:.3g}, max {:.3g} steps".format(*parity_bounds(spread)))
    print(f"  int8 XNNPACK vs QAT Keras on XLA: {_figures(output_deviation(compiled, got))}")
    print("  the parity test's verdict: " + verdict_text(*parity_verdict(q, x, expected, got, spread)))
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
    if args.first_divergence:
        print("first divergence per image whose output the file changes (XNNPACK; levels of the layer's output):")
        for image in np.flatnonzero(np.abs(got - expected).max(axis=1) > output_step(expected) / 2):
            print(f"  image {image}: {first_divergence(q, x[image])}")
    if args.gains:
        print(f"gains of the layers matching {args.gains!r} (XNNPACK, {args.samples} images, signed steps):")
        for layer in matching_layers(q, args.gains):
            print("\n".join(channel_gains(q, layer, x[: args.samples]).lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
