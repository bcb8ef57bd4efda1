"""pipelines.qat: the unannotated-layer check, QAT on every zoo model, int8 parity, save/load."""
import re

import numpy as np
import pytest

from mobilecnn import list_models
from mobilecnn.compat import keras
from mobilecnn.layers import GateMultiply
from export import calibrate_batchnorm
from pipelines import qat
from zoo_helpers import MOTIF_SAMPLE, tiny_model
from benchmarks.int8_blocks import BLOCK_KINDS, COMPARED_IMAGES, quantized_block, strays
from benchmarks.int8_trace import (SIZE, output_deviation, parity_bounds, parity_verdict, small_model, synthetic_split,
                                   trained_qat, training_accuracy, verdict_text, xla_outputs)

TRAIN_EPOCHS = 8
# Per block, with the biases aligned (export.align_biases), XNNPACK computes what the QAT Keras model computes
# except, on AVX-512 CPUs, at one value that one of the two rounds the other way (see the per-block test); a 1x1
# conv after it spreads that value over the channels of one pixel: at most this many pixels (image, row, column)
# with outputs more than half an output step off, none by more than STRAY_STEPS.
STRAY_PIXELS = 1
STRAY_STEPS = 1.5
# One model per family for the whole-model int8-TFLite parity check, under -m slow. Each is trained first (5,408
# synthetic images, 8 epochs at Adam 1e-3, then its batch norms' statistics re-estimated in inference mode; a net
# trained 4 steps on 32 images amplified the per-op differences to relative L2 0.05-0.30 at the logits) and its biases
# are aligned with the file, as `mobilecnn export` does before its parity check. Measured 2026-11-30, trained at 3e-3
# then (docs/pipelines.md): MobileNetV2 and ShuffleNet V2 bit-exact (ShuffleNet V2 was mean 1.46, max 9 steps until its
# stages held one concat range), the minimalistic MobileNetV3 and EfficientNet-Lite within 1.1 steps (mean 0.007-0.013).
PARITY_FAMILIES = ["mobilenet_v2_0.35", "mobilenet_v3_small_minimalistic", "shufflenet_v2_0.5", "efficientnet_lite0"]


def inputs(count=4, seed=0):
    return np.random.default_rng(seed).normal(size=(count, SIZE, SIZE, 3)).astype(np.float32)


def test_refuses_every_unquantizable_layer_at_once():
    x_in = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="rescale")(x_in)
    x = keras.layers.Conv2D(8, 3, name="conv_a")(x)
    y = keras.layers.Conv2D(8, 1, activation="swish", name="conv_swish")(x)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.BatchNormalization(name="bn_after_add")(x)
    x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(x)
    x = keras.layers.Multiply(name="bare_multiply")([x, x])
    x = keras.layers.Activation("hard_sigmoid", name="hsig")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(x_in, keras.layers.Dense(3, name="logits")(x), name="messy")
    with pytest.raises(qat.QATError) as info:
        qat.quantize_model(model)
    message = str(info.value)
    assert "6 layer(s) would be left unannotated" in message
    listed = re.findall(r"(?:: |; )(\w+) \(", message)
    assert listed == ["rescale", "conv_swish", "bn_after_add", "double", "bare_multiply", "hsig"]


def test_accepts_zoo_blocks_and_custom_layers():
    x_in = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, name="conv")(x_in)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(6.0, name="relu6")(x)
    gate = keras.layers.Activation("sigmoid", name="gate")(x)
    x = GateMultiply(name="gated")([x, gate])
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(x_in, keras.layers.Dense(3, name="logits")(x))
    assert qat.quantization_problems(model) == []
    q = qat.quantize_model(model)
    assert qat.is_qat_model(q) and not qat.is_qat_model(model)


def _registered(default_run=()):
    """Every registry name; those outside `default_run` only under -m slow."""
    return [n if n in default_run else pytest.param(n, marks=pytest.mark.slow) for n in list_models()]


# QAT acceptance depends on layer kinds and wiring, not on widths. The default run quantizes MOTIF_SAMPLE, whose
# wiring motifs cover those of one model per graph (zoo_helpers.wiring_motifs); the rest of the registry runs under
# -m slow (about 0.1 s per layer on two cores: 6 s for squeezenet_1.1, 30 s for efficientnet_v2_b0).
@pytest.mark.parametrize("name", _registered(default_run=MOTIF_SAMPLE))
def test_qat_applies_to_every_registered_model(name):
    model = small_model(name)
    q = qat.quantize_model(model)
    assert qat.is_qat_model(q)
    out = q(inputs(2), training=False).numpy()
    assert out.shape == (2, 10) and np.all(np.isfinite(out))


@pytest.fixture(scope="module")
def learnable():
    """(train x, train y, test x) from the embedded synthetic set, normalized like the zoo's "tf" cards."""
    return synthetic_split()


def _int8_parity(name, learnable):
    from export import Runner, convert

    q = trained_qat(name, learnable, epochs=TRAIN_EPOCHS)
    x = learnable[2]
    expected = q(x, training=False).numpy()
    # Equal constant outputs would pass every bound below without testing the conversion.
    assert np.ptp(expected, axis=0).max() > 0, f"{name}: the QAT model gives every image the same logits"
    conversion = convert(q, "int8", io="float")
    assert conversion.qat
    got = Runner(conversion.tflite).run_all(x)
    # The QAT Keras model's own float32 rounding: where its eager and XLA evaluations differ by more than the fixed
    # bounds, the int8 file is held to that spread; an image the file moves past the max bound only from a value it
    # rounds to the other level of a midpoint is left out of the max (benchmarks.int8_trace.parity_verdict;
    # docs/pipelines.md).
    spread = output_deviation(expected, xla_outputs(q, x))
    failures, ties = parity_verdict(q, x, expected, got, spread)
    print(f"{name}: trained to {training_accuracy(q, learnable):.3f} of its training images; int8 vs QAT Keras: "
          f"{output_deviation(expected, got)}; QAT Keras XLA vs eager: {spread}; bounds {parity_bounds(spread)}; "
          + verdict_text(failures, ties))
    assert not failures, f"{name}: " + "; ".join(failures)


@pytest.mark.parametrize("kind", BLOCK_KINDS)
def test_qat_int8_tflite_equals_qat_keras_per_block(kind):
    """Every block of the zoo converts faithfully: with the ranges QAT starts from (calibrated on data) and the
    biases on the file's int32 grid (export.align_biases), XNNPACK computes the QAT Keras block's outputs to the bit,
    but at most one pixel (STRAY_PIXELS) one step off (STRAY_STEPS, in steps of the block's output range).

    Measured (4 images, seed 0, TF's Eigen kernels: tests/conftest.py turns oneDNN off): on the Zen 1 VM, 0 elements
    off in every block; on the 2026-11-30 Xeon (AVX-512 VNNI, AMX), 0 in seven blocks and one in two: in
    inverted_residual_hswish_se XNNPACK's 1x1 project conv gives -20 where exact integer arithmetic on the same int8
    inputs, weights and int32 bias gives -19.31 (TFLite's builtin kernel and Keras: -19; traced on the reference
    kernels' input, which is not XNNPACK's, so possibly the near-tie below), and in shufflenet_v1 its add + relu is
    one step off at one element. On the 2026-12-02 AMD EPYC Zen 4 (AVX-512 VNNI): 0 in seven blocks, one
    in shufflenet_v1 again, and in inverted_residual_hswish_se three, the 3 of 24 channels of one pixel (image 3, row
    8, column 7) that its project conv moves from one depthwise value. There exact integer arithmetic on the Keras
    model's int8 inputs (XNNPACK's too: its sub-model up to them matches Keras) gives 34.499989 steps, XNNPACK 34, the
    QAT Keras model's float32 35: a near-tie that Keras rounds up. On the 2026-12-02 AMD EPYC Zen 3 (AVX2): 0 in all
    nine (`python -m benchmarks.int8_blocks` prints these figures). Before the biases were aligned (ad-hoc count on the
    Xeon): 11-1,065 elements off per block (mean 0.002-0.10 steps, max 1.06-4.00; TF-MOT keeps biases float; the file
    rounds them); on the Zen 4 and the 2026-12-02 Zen 3 (AVX2), 11-1,104 elements at 10-262 pixels
    (`python -m benchmarks.int8_blocks --unaligned` counts them; `--rounding` traces a layer's splits).
    Earlier fixes this guards:
    the ShuffleNet V2 stride-1 unit (mean 0.024, max 1.03 steps until the concats of a stage held one range,
    mobilecnn.quantization.range_sharing_concats: the file requantized the channel-split half, and XNNPACK's
    int8-to-int8 convert multiplies by lrintf(256 * scale ratio), an 8-bit multiplier), the swish SE block (mean
    0.19 until sigmoids got the int8 LOGISTIC's grid and swish became a sigmoid gate), the ShuffleNet V1 stride-2
    unit (7.5 steps until its average-pool conv lost a range only QAT applied; concat_fed_convs). A conversion that
    loses a range or leaves a float island is off by tens of steps (an uncalibrated QAT model: 40-160)."""
    from export import Runner

    q, tflite, x = quantized_block(kind)
    x = x[:COMPARED_IMAGES]
    found = strays(q(x, training=False).numpy(), Runner(tflite).run_all(x))
    print(f"{kind}: {found}")
    assert len(found.pixels) <= STRAY_PIXELS and found.max_steps <= STRAY_STEPS, (
        f"{kind}: {found} more than half an int8 step (bounds: {STRAY_PIXELS} pixel, {STRAY_STEPS} steps)")


def _shufflenet_v2_stages(repeats):
    """ShuffleNet V2 0.5x at 32 px with `repeats` units per stage (the registry model has (4, 8, 4)), 10 classes."""
    from mobilecnn.architectures.shufflenet import v2_features
    from mobilecnn.blocks import BuildConfig

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    x_in = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(v2_features(x_in, 0.5, BuildConfig(), repeats=repeats))
    return keras.Model(x_in, keras.layers.Dense(10, name="logits")(x))


def test_shufflenet_v2_stages_hold_one_range_through_training_saving_and_int8(tmp_path):
    """On two stages of two units each (QAT, training and conversion take about half the registry model's time);
    the registry model's stages group the same way."""
    from export import Runner, convert
    from mobilecnn.quant_ranges import calibrate_ranges
    from mobilecnn.quantization import range_sharing_concats

    registry_groups = range_sharing_concats(small_model("shufflenet_v2_0.5", seed=0))
    assert [len(group) for group in registry_groups] == [4, 8, 4]  # the units of stages 2-4
    model = _shufflenet_v2_stages(repeats=(2, 2))
    groups = range_sharing_concats(model)
    assert [len(group) for group in groups] == [2, 2]
    x = inputs(16)
    calibrate_batchnorm(model, x)
    with pytest.warns(UserWarning, match="without calibration"):
        q = qat.quantize_model(model)
    calibrate_ranges(q, model, x)

    def ranges(qat_model):
        return [{tuple(float(v.numpy()) for v in qat_model.get_layer(f"quant_{name}")._output_quantizer_vars.values())
                 for name in group} for group in groups]

    calibrated = ranges(q)
    assert all(len(group) == 1 for group in calibrated) and len(set().union(*calibrated)) == len(groups)
    q.compile("sgd", "mse")
    q.fit(x, np.ones((16, 10)), epochs=1, batch_size=8, verbose=0)
    assert ranges(q) == calibrated
    loaded = qat.load_qat(qat.save_qat(q, tmp_path / "qat.h5"))
    assert ranges(loaded) == calibrated
    np.testing.assert_array_equal(loaded(x[:2], training=False).numpy(), q(x[:2], training=False).numpy())
    ops = Runner(convert(q, "int8", io="float").tflite).ops()
    requantized = [op for op in ops if op["name"] == "QUANTIZE" and op["input_dtypes"] == ["int8"]]
    assert not requantized, f"{len(requantized)} int8 tensors requantized"


@pytest.mark.slow
@pytest.mark.parametrize("name", PARITY_FAMILIES)
def test_qat_int8_tflite_equals_qat_keras(name, learnable):
    _int8_parity(name, learnable)


@pytest.mark.slow
@pytest.mark.parametrize("name", _registered())
def test_qat_int8_tflite_equals_qat_keras_every_model(name, learnable):
    _int8_parity(name, learnable)


@pytest.mark.parametrize("suffix", [".h5", pytest.param("", marks=pytest.mark.slow, id="savedmodel")])
def test_qat_model_save_load_round_trip(tmp_path, suffix):
    model = tiny_model()  # the zoo's models quantize in test_qat_applies_to_every_registered_model
    x = np.random.default_rng(0).normal(size=(2, *model.input_shape[1:])).astype(np.float32)
    calibrate_batchnorm(model, x)
    q = qat.quantize_model(model)
    q(x, training=True)
    path = qat.save_qat(q, tmp_path / f"qat{suffix}")
    loaded = qat.load_qat(path)
    assert qat.is_qat_model(loaded)
    np.testing.assert_array_equal(loaded(x, training=False).numpy(), q(x, training=False).numpy())
    with pytest.raises(FileExistsError, match="exists"):
        qat.save_qat(q, path)


def test_qat_model_refuses_keras_format(tmp_path):
    q = qat.quantize_model(tiny_model())
    with pytest.raises(qat.QATError, match="does not reload"):
        qat.save_qat(q, tmp_path / "qat.keras")
    assert not (tmp_path / "qat.keras").exists()
    with pytest.raises(qat.QATError, match="not loadable from .keras"):
        qat.load_qat(tmp_path / "qat.keras")


def test_qat_command_writes_a_reloadable_qat_model(tmp_path):
    import json

    from click.testing import CliRunner

    from pipelines import synthetic
    from pipelines.commands import qat_command

    synthetic.write_image_folder(tmp_path / "data" / "train", images_per_class=4, size=SIZE, seed=0)
    synthetic.write_image_folder(tmp_path / "data" / "test", images_per_class=1, size=SIZE, seed=1)
    model_file = tmp_path / "tiny.keras"  # a model file (zoo names: test_qat_applies_to_every_registered_model)
    tiny_model().save(model_file)
    out = tmp_path / "run"
    result = CliRunner().invoke(qat_command, [str(model_file), "--data", str(tmp_path / "data"),
                                              "--image-size", str(SIZE), "--epochs", "1", "--batch-size", "20",
                                              "--out", str(out), "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert 0 <= results["qat_val_accuracy"] <= 1
    assert qat.is_qat_model(qat.load_qat(out / "qat_model.h5"))
    assert (out / "history.json").exists() and (out / "checkpoints").is_dir()
