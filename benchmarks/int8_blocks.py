"""Per-block int8 parity: each zoo block after a stem, int8 XNNPACK file vs QAT Keras model, and where they round apart.

Each block is built, calibrated and quantized exactly as the default per-block
parity test builds it (tests/test_pipelines_qat.py; 16 px, seeded weights, 32
calibration images, biases aligned with the file: `--unaligned` skips that),
and the script prints what the test bounds: the outputs more than half an int8
step off on the test's 4 images, and the pixels (image, row, column) they sit
at. `--rounding PATTERN` explains the layers (conv, depthwise conv or dense,
with its folded batch norm) whose names match PATTERN: each converted on its
own up to that layer, it lists the values where XNNPACK's int8 output and the
QAT Keras model's differ, next to what exact integer arithmetic (the file's
int8 weights and int32 bias on the Keras model's int8 input) gives before
rounding, and counts the input values where XNNPACK's and Keras's inputs
already differ. A value near .5 there is a near-tie the two round apart. Usage:

    flock /tmp/tf.lock .venv/bin/python -m benchmarks.int8_blocks
    flock /tmp/tf.lock .venv/bin/python -m benchmarks.int8_blocks --block inverted_residual_hswish_se --rounding "b_dwbn$"
    flock /tmp/tf.lock .venv/bin/python -m benchmarks.int8_blocks --unaligned

Not part of CI; seconds per block on two cores.
"""
import argparse
import sys
from dataclasses import dataclass

import numpy as np

from mobilecnn.compat import keras, tf

BLOCK_KINDS = ["inverted_residual_hswish_se", "inverted_residual_relu6_stride2", "fused_mbconv_swish_se",
               "depthwise_separable", "fire", "max_pool_ceil", "shufflenet_v1_stride2", "shufflenet_v1",
               "shufflenet_v2_stage"]
BLOCK_SIZE, CALIBRATION_IMAGES, COMPARED_IMAGES = 16, 32, 4


def block_model(kind):
    """stem conv -> one zoo block, on 16 px; the output is the block's output tensor."""
    from mobilecnn import blocks
    from mobilecnn.blocks import BuildConfig

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)  # the int8 rounding differences depend on the weights; keep them the same
    cfg = BuildConfig()
    x_in = keras.Input((BLOCK_SIZE, BLOCK_SIZE, 3), name="input")
    x = blocks.conv_bn_act(x_in, 24, 3, cfg=cfg, name="stem", act="relu6")
    build = {
        "inverted_residual_hswish_se": lambda x: blocks.inverted_residual(
            x, 24, expanded=72, se_reduced=16, act="hard_swish", se_gate="hard_sigmoid", cfg=cfg, name="b"),
        "inverted_residual_relu6_stride2": lambda x: blocks.inverted_residual(
            x, 32, expanded=96, strides=2, cfg=cfg, name="b"),
        "fused_mbconv_swish_se": lambda x: blocks.fused_mbconv(
            x, 24, expanded=48, se_reduced=8, act="swish", cfg=cfg, name="b"),
        "depthwise_separable": lambda x: blocks.depthwise_separable(x, 32, strides=2, cfg=cfg, name="b"),
        "fire": lambda x: blocks.fire(x, 8, 16, 16, cfg=cfg, name="b"),
        "max_pool_ceil": lambda x: blocks.max_pool(x, 3, 2, cfg=cfg, name="b", ceil_mode=True),
        "shufflenet_v1_stride2": lambda x: blocks.shufflenet_v1_unit(
            x, 48, groups=3, strides=2, first_group=False, cfg=cfg, name="b"),
        "shufflenet_v1": lambda x: blocks.shufflenet_v1_unit(
            x, 24, groups=3, strides=1, first_group=False, cfg=cfg, name="b"),
        # As in the zoo, a stride-1 unit follows a stride-2 unit, whose concat's range it holds.
        "shufflenet_v2_stage": lambda x: blocks.shufflenet_v2_unit(
            blocks.shufflenet_v2_unit(x, 48, strides=2, cfg=cfg, name="a"), 48, strides=1, cfg=cfg, name="b"),
    }[kind]
    return keras.Model(x_in, build(x), name=kind)


def quantized_block(kind, align=True):
    """(QAT block model with calibrated ranges, its int8 file, the images: the first COMPARED_IMAGES are compared)."""
    from export import align_biases, calibrate_batchnorm, convert
    from pipelines import qat

    model = block_model(kind)
    x = np.random.default_rng(0).normal(size=(CALIBRATION_IMAGES, BLOCK_SIZE, BLOCK_SIZE, 3)).astype(np.float32)
    calibrate_batchnorm(model, x)
    q = qat.quantize_model(model, calibration=x)
    tflite = convert(q, "int8", io="float").tflite
    if align:
        align_biases(q, tflite)
    return q, tflite, x


@dataclass
class Strays:
    """Outputs more than half an int8 step (of the expected outputs' range) off, and the pixels they sit at."""
    elements: int
    size: int
    pixels: list  # sorted (image, row, column)
    mean_steps: float
    max_steps: float

    def __str__(self):
        return (f"{self.elements} of {self.size} off at {len(self.pixels)} pixels, mean {self.mean_steps:.4f}, "
                f"max {self.max_steps:.2f} steps")


def strays(expected, got):
    """Strays of `got` (the file's outputs, (images, rows, columns, channels)) against `expected`."""
    from benchmarks.int8_trace import output_step

    off = np.abs(got - expected) / output_step(expected)
    stray = np.argwhere(off > 0.5)
    pixels = sorted({tuple(int(i) for i in index[:3]) for index in stray})
    return Strays(elements=len(stray), size=off.size, pixels=pixels, mean_steps=float(off.mean()),
                  max_steps=float(off.max()))


@dataclass
class Rounding:
    """One layer's int8 output three ways, in levels of the file's output tensor (zero point included)."""
    layer: str
    kind: str  # the file's op that makes it
    exact: np.ndarray  # the file's integer arithmetic on the QAT Keras model's int8 input, before rounding
    xnnpack: np.ndarray  # the file's output under XNNPACK
    keras: np.ndarray  # the QAT Keras model's output
    input_splits: int  # input values where the file's int8 input (XNNPACK) and the Keras model's differ
    input_size: int

    @property
    def splits(self):
        """Indices where XNNPACK and Keras give different int8 values."""
        return np.argwhere(self.xnnpack != self.keras)

    def lines(self, worst=8):
        splits = self.splits
        lines = [f"{self.layer} ({self.kind}): {len(splits)} of {self.keras.size} int8 values differ "
                 f"(XNNPACK vs QAT Keras); its input differs at {self.input_splits} of {self.input_size}"]
        for index in splits[:worst]:
            at = tuple(int(i) for i in index)
            lines.append(f"  at {at}: exact {self.exact[at]:.6f}, XNNPACK {self.xnnpack[at]:.0f}, "
                         f"QAT Keras {self.keras[at]:.0f}")
        return lines


def _accumulators(conv, q_in, weights):
    """Integer accumulators of the Keras layer `conv`'s op on `q_in` (int8 input less its zero point) with the
    file's int8 `weights`; float64 holds every partial sum of int8 products exactly."""
    q_in, weights = q_in.astype(np.float64), weights.astype(np.float64)
    if isinstance(conv, keras.layers.Dense):
        return q_in @ weights.reshape(len(weights), -1).T
    config = conv.get_config()
    strides, padding = (1, *config["strides"], 1), config["padding"].upper()
    if isinstance(conv, keras.layers.DepthwiseConv2D):
        _, kh, kw, _ = weights.shape  # (1, kh, kw, channels x multiplier)
        kernel = weights[0].reshape(kh, kw, q_in.shape[-1], -1)
        return tf.nn.depthwise_conv2d(q_in, kernel, strides, padding, dilations=config["dilation_rate"]).numpy()
    if config.get("groups", 1) != 1:
        raise ValueError(f"--rounding: {conv.name} is a grouped conv; only plain and depthwise convs and dense "
                         "layers are computed")
    kernel = np.transpose(weights, (1, 2, 3, 0))  # (out, kh, kw, in) -> (kh, kw, in, out)
    return tf.nn.conv2d(q_in, kernel, strides, padding, dilations=config["dilation_rate"]).numpy()


def rounding(model, layer, x):
    """Rounding of `layer` (a conv, depthwise conv or dense layer, or the batch norm folded into one) of the QAT
    `model` over the images `x`: the model up to the layer and up to its op's input converted on their own."""
    from benchmarks.int8_trace import last_weighted_op, signed_steps, weighted_source
    from export.layer_trace import dequantized_output, sub_model_file
    from export.loading import inner_layer

    conv, source = weighted_source(layer)
    name = inner_layer(layer).name
    sub_model, runner = sub_model_file(model, layer)
    try:
        output = dequantized_output(runner)
        op = last_weighted_op(runner)
        if output is None or op["outputs"][0] != output["index"]:
            raise ValueError(f"--rounding: {name}'s int8 output is not made by a conv or dense op of the file "
                             "(an activation op follows it, or it is computed in float)")
        scale = {t["index"]: t["quantization"] for t in runner.tensors()}
        (in_scale, _), (out_scale, out_zero) = scale[op["inputs"][0]], scale[op["outputs"][0]]
        weights, weight_scales = runner.constant(op["inputs"][1])
        bias = runner.constant(op["inputs"][2])[0] if op["inputs"][2] >= 0 else 0
        xnnpack = np.round(runner.run_all(x) / out_scale) + out_zero
        kind = op["name"]
    finally:
        runner.close()
    keras_in = keras.Model(model.inputs, source.output)(x, training=False).numpy()
    q_in = np.round(keras_in / in_scale)  # the Keras input is on the file's input grid: this is int8 less its zero
    exact = (_accumulators(inner_layer(conv), q_in, weights) + bias) * (in_scale * weight_scales / out_scale)
    keras_out = np.round(sub_model(x, training=False).numpy() / out_scale) + out_zero
    in_off, runner = signed_steps(model, source, x)
    runner.close()
    return Rounding(layer=name, kind=kind, exact=exact + out_zero, xnnpack=xnnpack, keras=keras_out,
                    input_splits=int(np.count_nonzero(np.abs(in_off) > 0.5)), input_size=in_off.size)


def main(argv=None):
    from export import Runner
    from export.layer_trace import matching_layers

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--block", action="append", choices=BLOCK_KINDS,
                        help="a block kind (repeatable; default: every block)")
    parser.add_argument("--unaligned", action="store_true", help="keep TF-MOT's float biases (no align_biases)")
    parser.add_argument("--rounding", metavar="PATTERN", help="list where XNNPACK and QAT Keras round the layers "
                        "matching this regular expression apart, with the exact integer result (one block at a time "
                        "is easiest to read)")
    args = parser.parse_args(argv)
    for kind in args.block or BLOCK_KINDS:
        q, tflite, x = quantized_block(kind, align=not args.unaligned)
        x = x[:COMPARED_IMAGES]
        runner = Runner(tflite)
        try:
            got = runner.run_all(x)
        finally:
            runner.close()
        print(f"{kind}: {strays(q(x, training=False).numpy(), got)}")
        for layer in matching_layers(q, args.rounding) if args.rounding else ():
            try:
                print("\n".join("  " + line for line in rounding(q, layer, x).lines()))
            except ValueError as error:
                parser.exit(2, f"{parser.prog}: error: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
