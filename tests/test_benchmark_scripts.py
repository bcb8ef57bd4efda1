"""The benchmark scripts (`make bench`, not run in CI): they compile under the interpreter that runs the tests, and
their helpers do what they say."""
import py_compile
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_script_compiles(script, tmp_path):
    py_compile.compile(str(script), cfile=str(tmp_path / "out.pyc"), doraise=True)


def test_benchmark_scripts_found():
    assert {"export_vs_keras_apps.py", "cifar10_recipes.py", "imagenet_lite0.py"} <= {p.name for p in SCRIPTS}


@pytest.mark.parametrize("phases, error", [
    (["float", "ptq", "qat", "prune", "throughput"], None),
    (["throughput"], None),
    (["ptq", "spam"], "unknown phase"),
    (["qat"], "float/model.keras does not exist; add the float phase"),
])
def test_cifar10_recipes_checks_the_phase_list(tmp_path, phases, error):
    from benchmarks.cifar10_recipes import check_phases

    if error is None:
        check_phases(phases, tmp_path)
    else:
        with pytest.raises(ValueError, match=error):
            check_phases(phases, tmp_path)


def test_cifar10_recipes_reuses_a_float_model_from_an_earlier_run(tmp_path):
    from benchmarks.cifar10_recipes import check_phases

    (tmp_path / "float").mkdir()
    (tmp_path / "float" / "model.keras").write_bytes(b"")
    check_phases(["ptq", "qat"], tmp_path)


def test_throughput_runs_alternate_so_a_drift_falls_on_both_alike():
    from benchmarks.cifar10_recipes import THROUGHPUT_ORDER

    assert THROUGHPUT_ORDER == tuple(reversed(THROUGHPUT_ORDER))  # a linear drift cancels
    assert THROUGHPUT_ORDER.count("loop") == THROUGHPUT_ORDER.count("plain") >= 2
    assert THROUGHPUT_ORDER[0] != THROUGHPUT_ORDER[1]


def test_throughput_figures_take_the_median_epoch_of_each():
    from benchmarks.cifar10_recipes import throughput_figures

    # one slow epoch on either side does not decide the ratio
    figures = throughput_figures({"loop": [380.0, 400.0, 410.0, 120.0], "plain": [400.0, 420.0, 30.0, 410.0]})
    assert figures["loop_images_per_second"] == 390.0
    assert figures["plain_fit_images_per_second"] == 405.0
    assert figures["throughput_ratio"] == pytest.approx(390.0 / 405.0)


def test_throughput_phase_times_every_run_but_their_first_epochs(images, tmp_path):
    """The phase end to end on tiny data: 2 timed epochs from each of the 4 runs, the loop's scratch folders gone,
    and OUT/results.json still holding the figures of a phase run earlier."""
    from benchmarks.cifar10_recipes import THROUGHPUT_EPOCHS, THROUGHPUT_ORDER, run
    from pipelines import runs
    from pipelines.recipes import Recipe

    (tmp_path / "float").mkdir()
    runs.write_json(tmp_path / "float" / "results.json", {"float_top1": 0.8})
    recipe = Recipe("tiny", "mobilenet_v1_0.25", image_size=32, batch_size=16, warmup_epochs=0)
    results = run(recipe, images, tmp_path, phases=["throughput"])
    assert runs.read_json(tmp_path / "results.json") == results
    assert results["float_top1"] == 0.8
    rates = results["throughput_epoch_rates"]
    for kind in ("loop", "plain"):
        assert len(rates[kind]) == THROUGHPUT_ORDER.count(kind) * (THROUGHPUT_EPOCHS - 1)
        assert all(rate > 0 for rate in rates[kind])
    assert results["throughput_ratio"] == pytest.approx(
        results["loop_images_per_second"] / results["plain_fit_images_per_second"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["float", "results.json", "throughput"]
    assert [p.name for p in (tmp_path / "throughput").iterdir()] == ["results.json"]


def _qat_depthwise_head():
    """QAT conv -> squeeze to 1x1 -> depthwise + BN + relu6 -> pool -> dense, ranges calibrated; (QAT model,
    images)."""
    from mobilecnn.compat import keras
    from pipelines.qat import quantize_model

    keras.utils.set_random_seed(0)
    layers = keras.layers
    x_in = keras.Input((8, 8, 3))
    x = layers.ReLU(6.0, name="c1_act")(layers.Conv2D(16, 3, padding="same", name="c1")(x_in))
    x = layers.GlobalAveragePooling2D(keepdims=True, name="squeeze")(x)
    x = layers.ReLU(6.0, name="dw_act")(layers.BatchNormalization(name="dw_bn")(
        layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)))
    x = layers.Dense(10, name="logits")(layers.GlobalAveragePooling2D(name="pool")(x))
    images = np.random.default_rng(0).normal(size=(16, 8, 8, 3)).astype(np.float32)
    return quantize_model(keras.Model(x_in, x), calibration=images), images


def test_channel_gains_follow_the_weights_of_the_op_that_makes_the_layer():
    from benchmarks.int8_trace import channel_gains
    from export.layer_trace import matching_layers, trace_sub_models

    qat, images = _qat_depthwise_head()
    dense, = matching_layers(qat, "^logits$")
    logits = channel_gains(qat, dense, images)
    assert (logits.layer, logits.source, logits.kind) == ("logits", "pool", "FULLY_CONNECTED")
    assert logits.in_off.shape == (16, 16) and logits.out_off.shape == (16, 10)
    # gain = weight x input scale / output scale, per (output, input), the int8 weight within half a step of Keras's
    scale = {row.layer: row.scale for row in trace_sub_models(qat, images[:1], pattern="^(pool|logits)$")}
    kernel = next(w for w in dense.weights if w.name.endswith("logits/kernel:0")).numpy()
    weights = logits.gains * scale["logits"] / scale["pool"]
    assert np.all(np.abs(weights - kernel.T) <= np.abs(kernel).max() / 254 * (1 + 1e-3))
    lines = logits.lines(worst=3)
    assert len(lines) == 4 and lines[0].startswith("logits (FULLY_CONNECTED from pool): input off mean")

    # through the activation and batch norm to the depthwise conv, not past it (tf_keras's is not a Conv2D)
    depthwise = channel_gains(qat, *matching_layers(qat, "^dw_act$"), images)
    assert (depthwise.source, depthwise.kind) == ("squeeze", "DEPTHWISE_CONV_2D")
    assert np.count_nonzero(depthwise.gains - np.diag(np.diag(depthwise.gains))) == 0  # one input per channel
    assert np.count_nonzero(np.diag(depthwise.gains)) == 16

    with pytest.raises(ValueError, match="c1_act is not a dense layer or a conv on a 1x1 map"):
        channel_gains(qat, *matching_layers(qat, "^c1_act$"), images)


def test_channel_gains_list_the_worst_values_with_what_the_weights_predict():
    from benchmarks.int8_trace import ChannelGains

    gains = np.array([[2.0, 0.0], [0.5, -3.0], [0.0, 1.0]])
    in_off = np.array([[0.0, 0.0], [1.0, -1.0]])
    out_off = np.array([[0.0, 1.0, 0.0], [2.0, 4.0, -1.0]])
    explained = ChannelGains(layer="head_act", source="head_in", kind="CONV_2D", gains=gains, in_off=in_off,
                             out_off=out_off)
    np.testing.assert_allclose(explained.predicted, [[0, 0, 0], [2.0, 3.5, -1.0]])
    lines = explained.lines(worst=2)
    assert lines[0] == ("head_act (CONV_2D from head_in): input off mean 0.500 max 1.00 steps, output off mean 1.333 "
                        "max 4.00; gain median 2.00 p90 3.20 max 3.50; correlation of predicted and measured 0.97")
    assert lines[1:] == ["  image  1 channel    1: measured  +4.00 predicted   +3.50 gain   3.50",
                         "  image  1 channel    0: measured  +2.00 predicted   +2.00 gain   2.00"]
    exact = ChannelGains(layer="head_act", source="head_in", kind="CONV_2D", gains=gains, in_off=np.zeros((2, 2)),
                         out_off=np.zeros((2, 3)))
    assert exact.lines(worst=0)[0].endswith("correlation of predicted and measured undefined (constant)")


def test_strays_count_outputs_over_half_a_step_and_the_pixels_they_sit_at():
    from benchmarks.int8_blocks import strays

    expected = np.zeros((2, 3, 3, 4))
    expected[0, 0, 0, 0] = 255.0  # range 255: one step is 1
    got = expected.copy()
    got[1, 2, 1, :3] += [0.6, -1.2, 0.5]  # two off at one pixel (half a step is not off)
    got[0, 1, 2, 3] += 2.0
    found = strays(expected, got)
    assert (found.elements, found.size, found.pixels) == (3, 72, [(0, 1, 2), (1, 2, 1)])
    assert found.max_steps == pytest.approx(2.0) and found.mean_steps == pytest.approx(4.3 / 72)
    assert str(found) == "3 of 72 off at 2 pixels, mean 0.0597, max 2.00 steps"


def test_rounding_computes_the_files_integer_arithmetic_on_the_keras_input():
    from benchmarks.int8_blocks import rounding
    from export import align_biases
    from export.layer_trace import matching_layers

    qat, images = _qat_depthwise_head()
    rng = np.random.default_rng(1)
    for weight in qat.weights:  # the int32 biases then count (they start at zero)
        if weight.name.endswith(("/bias:0", "/beta:0", "/moving_mean:0")):
            weight.assign(rng.normal(0, 0.5, weight.shape))
    align_biases(qat)  # on the file's int32 grid, as the parity checks have them
    for name, kind, shape in [("c1_act", "CONV_2D", (16, 8, 8, 16)), ("dw_act", "DEPTHWISE_CONV_2D", (16, 1, 1, 16)),
                              ("logits", "FULLY_CONNECTED", (16, 10))]:
        found = rounding(qat, *matching_layers(qat, f"^{name}$"), images)
        assert (found.layer, found.kind) == (name, kind)
        assert found.exact.shape == found.xnnpack.shape == found.keras.shape == shape
        # Rounded and clamped to int8, the exact result is the Keras model's but at near-ties, which float32 sums
        # may put on either side.
        rounded = np.clip(np.round(found.exact), -128, 127)
        near_tie = np.abs(np.abs(found.exact - np.floor(found.exact)) - 0.5) < 1e-3
        assert np.array_equal(rounded[~near_tie], found.keras[~near_tie]), name
        inside = (found.exact > -128.5) & (found.exact < 127.5)
        assert np.all(np.abs(found.exact - found.keras)[inside] <= 0.5 + 1e-3), name
        assert np.ptp(found.keras) > 0
    with pytest.raises(ValueError, match="pool's int8 output is not made by a conv or dense op"):
        rounding(qat, *matching_layers(qat, "^pool$"), images)


def test_rounding_lists_the_values_xnnpack_and_keras_round_apart():
    from benchmarks.int8_blocks import Rounding

    keras_out = np.array([[[[34.0, -3.0]]], [[[7.0, 0.0]]]])
    xnnpack = keras_out.copy()
    xnnpack[1, 0, 0, 0] = 6.0
    exact = keras_out.copy()
    exact[1, 0, 0, 0] = 6.4999891
    found = Rounding(layer="b_dwbn", kind="DEPTHWISE_CONV_2D", exact=exact, xnnpack=xnnpack, keras=keras_out,
                     input_splits=0, input_size=18)
    assert found.lines() == [
        "b_dwbn (DEPTHWISE_CONV_2D): 1 of 4 int8 values differ (XNNPACK vs QAT Keras); its input differs at 0 of 18",
        "  at (1, 0, 0, 0): exact 6.499989, XNNPACK 6, QAT Keras 7"]


def test_parity_bounds_are_the_fixed_steps_unless_the_qat_model_spreads_further():
    from benchmarks.int8_trace import MAX_STEPS, MEAN_STEPS, parity_bounds

    assert parity_bounds({"mean_steps": 0.04, "max_steps": 2.0}) == (MEAN_STEPS, MAX_STEPS)
    assert parity_bounds({"mean_steps": 1.1, "max_steps": 10.5}) == (1.1, 21.0)
    assert parity_bounds({"mean_steps": 0.3, "max_steps": 3.0}) == (MEAN_STEPS, 6.0)


def test_parity_failures_name_each_part_of_the_rule_the_file_breaks():
    from benchmarks.int8_trace import TESTABLE_SPREAD_STEPS, parity_failures

    expected = np.tile(np.linspace(0, 255, 10, dtype=np.float32), (4, 1))  # one output step is 1.0
    expected[0, 8] = 249.0  # image 0: top two 6 steps apart, a clear margin
    expected[3, 8] = 254.5  # image 3: half a step apart, a near-tie
    calm = {"mean_steps": 0.0, "max_steps": 0.0}
    assert parity_failures(expected, expected.copy(), calm) == []
    wide = {"mean_steps": 2.0, "max_steps": TESTABLE_SPREAD_STEPS + 1.0}
    assert parity_failures(expected, expected.copy(), wide)[0].startswith("untestable")

    tie_swapped = expected.copy()
    tie_swapped[3, [8, 9]] = tie_swapped[3, [9, 8]]
    assert parity_failures(expected, tie_swapped, calm) == []
    class_swapped = expected.copy()
    class_swapped[0, [8, 9]] += [3.5, -3.5]  # under the max bound, yet image 0 changes class on a clear margin
    assert parity_failures(expected, class_swapped, calm) == [
        "1 of the 3 images whose top two logits are over 4 steps apart change class"]

    shifted = expected + 1.5
    assert parity_failures(expected, shifted, calm) == ["mean deviation 1.5 steps, over the bound 1"]
    assert parity_failures(expected, shifted, {"mean_steps": 1.5, "max_steps": 2.0}) == []
    spike = expected.copy()
    spike[1, 0] += 5.0
    assert parity_failures(expected, spike, calm) == ["max deviation 5 steps, over the bound 4"]
    assert parity_failures(expected, spike, calm, excused=[1]) == []  # left out of the max only
    assert parity_failures(expected, spike, calm, excused=[2]) == ["max deviation 5 steps, over the bound 4"]
    assert parity_failures(expected, shifted, calm, excused=[0, 1, 2, 3]) == [
        "mean deviation 1.5 steps, over the bound 1"]


def test_xla_outputs_evaluate_the_same_qat_model_for_inference():
    from benchmarks.int8_trace import output_deviation, xla_outputs

    qat, images = _qat_depthwise_head()
    eager = qat(images, training=False).numpy()
    compiled = xla_outputs(qat, images)
    assert compiled.shape == eager.shape == (16, 10)
    # Batch-norm statistics of the batch (training mode) would move every logit; rounding moves at most a near-tie.
    assert output_deviation(eager, compiled)["max_steps"] <= 1.5


def test_synthetic_split_holds_the_documented_counts_of_every_class():
    from benchmarks.int8_trace import CLASSES, SIZE, TEST_IMAGES, TRAIN_IMAGES, synthetic_split

    train_x, train_y, test_x = synthetic_split()
    assert train_x.shape == (TRAIN_IMAGES, SIZE, SIZE, 3) and train_y.shape == (TRAIN_IMAGES, CLASSES)
    assert test_x.shape == (TEST_IMAGES, SIZE, SIZE, 3)
    assert train_y.sum(axis=0).min() >= 0.9 * TRAIN_IMAGES / CLASSES  # shuffled: every class, none starved
    assert -1 <= train_x.min() < train_x.max() <= 1
    again = synthetic_split()
    assert np.array_equal(again[0], train_x) and np.array_equal(again[2], test_x)


def test_inference_batchnorm_normalizes_every_batch_norms_inputs_in_inference_mode():
    from benchmarks.int8_trace import inference_batchnorm
    from mobilecnn.compat import keras
    from zoo_helpers import tiny_model

    model = tiny_model()
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) >= 3
    rng = np.random.default_rng(0)
    for layer in norms:  # statistics that fit no input, as a lagging moving average leaves them
        layer.moving_mean.assign(rng.normal(size=layer.moving_mean.shape).astype(np.float32))
        layer.moving_variance.assign(rng.uniform(0.1, 5, size=layer.moving_variance.shape).astype(np.float32))
    x = 3 * rng.normal(size=(64, 32, 32, 3)).astype(np.float32) + 1
    assert inference_batchnorm(model, x) is model
    probe = keras.Model(model.inputs, [layer.output for layer in norms])
    for layer, out in zip(norms, probe(x, training=False)):
        out = out.numpy().reshape(-1, out.shape[-1])
        variance = layer.moving_variance.numpy()
        np.testing.assert_allclose(out.mean(0), layer.beta.numpy(), atol=1e-4)
        expected_var = layer.gamma.numpy() ** 2 * variance / (variance + layer.epsilon)
        np.testing.assert_allclose(out.var(0), expected_var, rtol=1e-3)
