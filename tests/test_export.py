"""export/: runner, conversion modes, verification, metadata, atomic output, CLI and bad input.
Models here are tiny hand-built tf_keras graphs made with mobilecnn.blocks
(hard-swish, SE with GateMultiply, inverted residual) at 32 px. Their
weights are random, so lossy-mode parity is a perturbation check only.
"""
import importlib.metadata
import json
import os

import numpy as np
import pytest

from mobilecnn.compat import keras, tf

import export
from export.commands import export_command

SIZE = 32
CLASSES = 10


# -- models and data --------------------------------------------------------
def tiny_model(name="tiny", softmax=True, lambda_layer=False):
    from mobilecnn import blocks

    keras.utils.set_random_seed(0)
    cfg = blocks.BuildConfig()
    inputs = keras.Input((SIZE, SIZE, 3), name="input")
    x = inputs
    if lambda_layer:
        x = keras.layers.Lambda(lambda t: t * 0.5, name="halve")(x)
    x = blocks.conv_bn_act(x, 16, 3, 2, cfg=cfg, name="stem", act="hard_swish")
    x = blocks.inverted_residual(x, 16, expanded=32, se_reduced=8, act="hard_swish", cfg=cfg, name="b1")
    x = blocks.inverted_residual(x, 24, expanded=48, strides=2, cfg=cfg, name="b2")
    x = blocks.conv_bn_act(x, 64, 1, cfg=cfg, name="head", act="relu6")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(CLASSES, name="logits")(x)
    if softmax:
        x = keras.layers.Activation("softmax", name="predictions")(x)
    model = keras.Model(inputs, x, name=name)
    export.calibrate_batchnorm(model, samples(16))
    return model


def samples(n, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, SIZE, SIZE, 3)).astype(np.float32)


def write_images(folder, n, channels=3, seed=0, size=40):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        pixels = rng.integers(0, 256, size=(size, size, channels), dtype=np.uint8)
        encode = tf.io.encode_png if i % 2 else tf.io.encode_jpeg
        with open(os.path.join(folder, f"img{i}.{'png' if i % 2 else 'jpg'}"), "wb") as f:
            f.write(encode(pixels).numpy())
    return folder


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def trained_model():
    """The tiny model fitted a few epochs on learnable labels (which quadrant/channel is brightest),
    so that CLI exports of a saved model are judged by the trained-model thresholds."""
    model = tiny_model("trained")  # seeded: the fit below is deterministic
    x = samples(256, seed=5)
    y = (x[:, :16, :16].mean((1, 2)).argmax(1) + 3 * x[:, 16:, 16:].mean((1, 2)).argmax(1)) % CLASSES
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy())
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    model = trained_model()
    root = tmp_path_factory.mktemp("export")
    paths = {"root": root}
    paths["keras"] = str(root / "tiny.keras")
    model.save(paths["keras"])
    paths["h5"] = str(root / "tiny.h5")
    model.save(paths["h5"], include_optimizer=False)
    paths["weights"] = str(root / "tiny.weights.h5")
    model.save_weights(paths["weights"])
    paths["rep"] = write_images(str(root / "rep"), 8)
    paths["gray"] = write_images(str(root / "gray"), 3, channels=1)
    os.makedirs(root / "empty")
    paths["empty"] = str(root / "empty")
    os.makedirs(root / "corrupt")
    (root / "corrupt" / "broken.jpg").write_bytes(b"\xff\xd8\xff this is not a jpeg")
    paths["corrupt"] = str(root / "corrupt")
    (root / "notes.keras").write_text("not a zip archive")
    paths["text_keras"] = str(root / "notes.keras")
    (root / "notes.txt").write_text("hello")
    paths["text"] = str(root / "notes.txt")
    lam = tiny_model("lam", lambda_layer=True)
    for kind, kwargs in (("keras", {}), ("h5", {}), ("savedmodel", {"save_format": "tf"})):
        path = str(root / f"lam.{kind}" if kind != "savedmodel" else root / "lam_savedmodel")
        lam.save(path, **kwargs)
        paths[f"lambda_{kind}"] = path
    paths["eval"] = str(root / "eval")
    for c in range(CLASSES):
        write_images(os.path.join(paths["eval"], f"class{c}"), 2, seed=100 + c)
    return paths


def run_cli(args):
    from click.testing import CliRunner

    return CliRunner().invoke(export_command, [str(a) for a in args], catch_exceptions=False)


def leftovers(folder):
    return sorted(f for f in os.listdir(folder) if f.endswith((".tflite", ".json", ".partial")))


# -- Runner -----------------------------------------------------------------
def test_runner_backends_agree_and_report(model):
    conv = export.convert(model, "fp32")
    x = samples(1, seed=3)
    want = np.asarray(conv.model(x))
    outputs = {}
    for backend in export.BACKENDS:
        runner = export.Runner(conv.tflite, backend=backend)
        outputs[backend] = runner.run(x)
        assert runner.runtime == "ai-edge-litert" and runner.runtime_version.startswith("2.")
        assert runner.init_ms > 0
        assert runner.input_details[0]["shape"] == (1, SIZE, SIZE, 3)
        assert runner.input_details[0]["dtype"] == np.float32
        if backend == "compiled":
            assert runner.partitions is None and runner.fully_accelerated is True
        else:
            assert runner.fully_accelerated is None
            assert runner.partitions == (1 if backend == "xnnpack" else 0)
        runner.close()
    for backend, got in outputs.items():
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max(), err_msg=backend)


def test_runner_quantizes_inputs_and_dequantizes_outputs(model, tmp_path):
    conv = export.convert(model, "int8", io="int8", representative=samples(16))
    path = tmp_path / "m.tflite"
    path.write_bytes(conv.tflite)
    runner = export.Runner(str(path))  # from a path this time
    info_in, info_out = runner.input_details[0], runner.output_details[0]
    assert info_in["dtype"] == np.int8 and info_out["dtype"] == np.int8
    scale, zero_point = info_in["quantization"]
    assert scale > 0
    x = samples(1, seed=4)
    runner.set_input(x)
    raw_in = runner._interp.get_tensor(info_in["index"])
    np.testing.assert_array_equal(raw_in, np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8))
    runner.invoke()
    raw_out = runner._interp.get_tensor(info_out["index"])
    out_scale, out_zero = info_out["quantization"]
    np.testing.assert_allclose(runner.get_output(), (raw_out.astype(np.float32) - out_zero) * out_scale, rtol=1e-6)
    # The compiled backend takes the same float input and returns the same dequantized output.
    compiled = export.Runner(conv.tflite, backend="compiled")
    np.testing.assert_allclose(compiled.run(x), runner.run(x), atol=2 * out_scale)
    ops = runner.ops()
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} <= {op["name"] for op in ops}
    assert all(op["output_dtypes"] == ["int8"] for op in ops if op["name"] == "CONV_2D")
    with pytest.raises(ValueError, match="expects shape"):
        runner.set_input(samples(2))


def test_runner_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="backend must be one of"):
        export.Runner(b"", backend="gpu")
    with pytest.raises(ValueError, match="weight_cache_path needs backend='compiled'"):
        export.Runner(b"", weight_cache_path=str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="missing.tflite"):
        export.Runner(str(tmp_path / "missing.tflite"))
    with pytest.raises(ValueError, match="keep_tensors needs backend 'builtin' or 'reference'"):
        export.Runner(b"", keep_tensors=True)


def _qat_conv_squeeze():
    """QAT conv + relu6 -> global average pool -> 1x1 conv, ranges calibrated; (QAT model, images)."""
    from pipelines.qat import quantize_model

    keras.utils.set_random_seed(0)
    x_in = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", name="c1")(x_in)
    x = keras.layers.ReLU(6.0, name="c1_act")(x)
    x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="squeeze")(x)
    x = keras.layers.Conv2D(8, 1, name="reduce")(x)
    x = keras.layers.ReLU(name="reduce_act")(x)
    images = np.random.default_rng(0).normal(size=(32, 8, 8, 3)).astype(np.float32)
    return quantize_model(keras.Model(x_in, x), calibration=images), images


def test_layer_trace_points_at_the_layer_where_the_file_departs():
    from export.layer_trace import trace_layers

    qat, images = _qat_conv_squeeze()
    tflite = export.convert(qat, "int8", io="float").tflite
    faithful = {row.layer: row for row in trace_layers(qat, tflite, images[:4])}
    # Keras numbers layer names per process: after other tests this one is quantize_layer_N
    quantize_layer = next(layer.name for layer in qat.layers if layer.name.startswith("quantize_layer"))
    assert {quantize_layer, "c1_act", "squeeze", "reduce_act"} <= set(faithful)
    assert all(row.max_steps <= 1.0 + 1e-3 for row in faithful.values()), faithful  # one step: kernel rounding
    kernel = next(w for w in qat.get_layer("quant_c1").weights if w.name.endswith("c1/kernel:0"))
    kernel.assign(kernel * 1.5)  # the Keras model now departs from the file at c1
    departed = {row.layer: row for row in trace_layers(qat, tflite, images[:4])}
    assert departed[quantize_layer].max_steps < 1e-3
    assert departed["c1_act"].mean_steps > 5
    runner = export.Runner(tflite, backend="reference")
    with pytest.raises(ValueError, match="keep_tensors=True"):
        runner.read_tensor(runner.tensors()[0])


def test_sub_model_trace_measures_each_layer_on_the_shipped_kernels():
    from export.layer_trace import trace_sub_models

    qat, images = _qat_conv_stack()
    before = trace_sub_models(qat, images[:8], pattern="act$|c3_bn")
    assert [row.layer for row in before] == ["c1_act", "dw_act", "c2_act", "c3_bn"]
    assert all(row.max_steps >= 0.5 for row in before), before  # float biases: outputs on the neighbouring level
    export.align_biases(qat)
    after = trace_sub_models(qat, images[:8])
    # every layer whose output the file quantizes (the convs and batch norms fused into them have none of their own)
    assert [row.layer for row in after][1:] == [row.layer for row in before]
    assert after[0].layer.startswith("quantize_layer")  # the input's fake quant
    assert all(row.max_steps < 1e-3 for row in after), after

    from pipelines.qat import quantize_model

    x_in = keras.Input((12, 12, 3))
    gate = keras.layers.Activation("sigmoid", name="gate")(keras.layers.Conv2D(8, 3, name="c")(x_in))
    gated = quantize_model(keras.Model(x_in, gate), calibration=images)
    row = trace_sub_models(gated, images[:8], pattern="^gate$")[0]  # the sigmoid is traced, not dropped as a head's
    assert row.layer == "gate" and row.scale == 1 / 256 and row.max_steps <= 1.0 + 1e-3, row


def _qat_conv_stack(seed=0):
    """QAT conv+BN+relu6 -> depthwise+BN+relu6 -> biased conv+relu -> conv+BN at 12 px, with batch norms and
    biases far from their defaults; (QAT model, images)."""
    from pipelines.qat import quantize_model

    keras.utils.set_random_seed(seed)
    layers = keras.layers
    x_in = keras.Input((12, 12, 3))
    x = layers.ReLU(6.0, name="c1_act")(layers.BatchNormalization(name="c1_bn")(
        layers.Conv2D(16, 3, padding="same", use_bias=False, name="c1")(x_in)))
    x = layers.ReLU(6.0, name="dw_act")(layers.BatchNormalization(name="dw_bn")(
        layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)))
    x = layers.ReLU(name="c2_act")(layers.Conv2D(24, 1, name="c2")(x))
    x = layers.BatchNormalization(name="c3_bn")(layers.Conv2D(32, 1, use_bias=False, name="c3")(x))
    model = keras.Model(x_in, x)
    images = np.random.default_rng(seed).normal(size=(32, 12, 12, 3)).astype(np.float32)
    export.calibrate_batchnorm(model, images)
    rng = np.random.default_rng(seed + 1)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma * rng.uniform(0.5, 2, gamma.shape), beta + rng.normal(0, 0.5, beta.shape),
                               mean, var])
    bias = model.get_layer("c2").bias
    bias.assign(rng.normal(0, 0.3, bias.shape).astype(np.float32))
    return quantize_model(model, calibration=images), images


def test_align_biases_makes_the_qat_model_compute_what_its_int8_file_does():
    qat, images = _qat_conv_stack()
    tflite = export.convert(qat, "int8", io="float").tflite
    got = export.Runner(tflite).run_all(images[:8])

    def steps_off():
        expected = qat(images[:8], training=False).numpy()
        return np.abs(got - expected) / ((expected.max() - expected.min()) / 255)

    before = steps_off()
    assert np.mean(before > 0.5) > 1e-4  # the float biases put some outputs on the neighbouring level
    shifts = export.align_biases(qat, tflite)
    assert {s.layer for s in shifts} == {"c1_bn", "dw_bn", "c2", "c3_bn"}
    assert all(0 < s.max_grid_steps <= 0.5 + 1e-3 for s in shifts), shifts
    assert steps_off().max() < 1e-3  # XNNPACK now computes exactly what the Keras model does
    assert export.convert(qat, "int8", io="float").tflite == tflite  # the file was on the grid already

    other, _ = _qat_conv_stack(seed=1)
    weights = [w.numpy() for w in other.weights]
    with pytest.raises(export.ExportError, match="grid steps from the model's"):
        export.align_biases(other, tflite)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(weights, other.weights))  # all or nothing
    float_model = tiny_model("float_model", softmax=False)
    with pytest.raises(export.ExportError, match="needs a QAT model"):
        export.align_biases(float_model)
    with pytest.raises(export.ExportError, match="needs an int8 file"):
        export.align_biases(other, export.convert(float_model, "fp32").tflite)


def test_first_divergence_names_the_layer_and_how_close_to_a_rounding_midpoint():
    from benchmarks.int8_trace import TIE_STEPS
    from export.layer_trace import Divergence, first_divergence

    qat, images = _qat_conv_stack()
    tflite = export.convert(qat, "int8", io="float").tflite
    got = export.Runner(tflite).run_all(images[:8])
    expected = qat(images[:8], training=False).numpy()
    image = int(np.abs(got - expected).max(axis=(1, 2, 3)).argmax())
    float_biases = first_divergence(qat, images[image])
    assert float_biases is not None and float_biases.layer in {"c1_act", "dw_act", "c2_act", "c3_bn"}
    for _, position, keras_level, file_level in float_biases.elements:
        assert abs(keras_level - position) <= 0.5 + 1e-4  # a level next to the unrounded value
        assert abs(file_level - keras_level) == 1
    # a bias off by under half its int32 step moves only values that close to a midpoint, yet further from one than
    # the parity rule takes for a float32 rounding tie
    assert TIE_STEPS < float_biases.tie_distance < 0.05, float_biases
    export.align_biases(qat, tflite)
    assert first_divergence(qat, images[image]) is None
    near_tie = Divergence(layer="b", elements=[((7, 0, 14), 137.4999973, 138.0, 137.0)])
    assert near_tie.tie_distance == pytest.approx(2.7e-6, abs=1e-7)
    off_level = Divergence(layer="b", elements=[((0, 0, 0), 10.2, 10.0, 11.0), ((0, 0, 1), 3.5, 4.0, 3.0)])
    assert off_level.tie_distance == pytest.approx(0.3)  # the farthest element decides


def test_compiled_runner_writes_weight_cache(model, tmp_path):
    conv = export.convert(model, "fp32")
    cache = tmp_path / "tiny.xnnpack_cache"
    first = export.Runner(conv.tflite, backend="compiled", weight_cache_path=str(cache))
    y = first.run(samples(1))
    first.close()
    assert cache.is_file() and cache.stat().st_size > 0
    again = export.Runner(conv.tflite, backend="compiled", weight_cache_path=str(cache))
    np.testing.assert_array_equal(again.run(samples(1)), y)


# -- conversion and verification -----------------------------------------------
def test_fp32_parity_and_softmax_dropped(model):
    conv = export.convert(model, "fp32")
    assert conv.dropped_activation == "softmax"
    assert conv.model.output.shape[-1] == CLASSES and conv.model.layers[-1].name == "logits"
    result = export.verify(conv.model, conv.tflite, mode="fp32", samples=samples(8))
    assert result.ok, result.failures
    assert result.parity["rel_error"] < 1e-4 and result.parity["top1_agreement"] == 1.0
    assert "SOFTMAX float32" not in result.op_counts


@pytest.mark.parametrize("io", ["float", "int8", "uint8"])
def test_int8_is_all_integer_in_one_partition(model, io):
    conv = export.convert(model, "int8", io=io, representative=samples(16))
    result = export.verify(conv.model, conv.tflite, mode="int8", samples=samples(8, seed=1), perturbation=True)
    assert result.ok, result.failures
    assert result.float_ops == []
    assert result.delegation["partitions"] == 1
    # uint8 IO adds uint8<->int8 QUANTIZE ops at the ends, which stay outside XNNPACK.
    assert result.delegation["fully_accelerated"] is (io != "uint8")
    runner = export.Runner(conv.tflite)
    assert runner.input_details[0]["dtype"] == {"float": np.float32, "int8": np.int8, "uint8": np.uint8}[io]
    # Hard-swish is decomposed by the blocks: no HARD_SWISH op (XNNPACK runs none in int8).
    assert not any(op["name"] == "HARD_SWISH" for op in runner.ops())


def test_kept_softmax_breaks_int8_delegation_and_fails_verification(model):
    conv = export.convert(model, "int8", representative=samples(16), keep_activation=True)
    assert conv.dropped_activation is None
    result = export.verify(conv.model, conv.tflite, mode="int8", samples=samples(8), perturbation=True)
    assert result.op_counts.get("SOFTMAX int8") == 1
    assert not result.ok and any(f.startswith("delegation:") for f in result.failures)
    allowed = export.verify(conv.model, conv.tflite, mode="int8", samples=samples(8), perturbation=True,
                            allow_partial_delegation=True)
    assert allowed.ok, allowed.failures


@pytest.mark.parametrize("mode", ["fp16", "dynamic", "int16x8"])
def test_other_modes_convert_and_verify(model, mode):
    rep = samples(16) if mode == "int16x8" else None
    conv = export.convert(model, mode, representative=rep)
    result = export.verify(conv.model, conv.tflite, mode=mode, samples=samples(8), perturbation=True,
                           allow_partial_delegation=mode == "int16x8")
    assert result.ok, result.failures
    assert result.parity["rel_l2"] <= export.PERTURBATION[mode]["rel_l2"]
    if mode == "int16x8":  # XNNPACK has no 16x8 kernels: nothing is delegated
        assert result.delegation["partitions"] == 0
        assert any(k.endswith("int16") for k in result.op_counts)


def test_float_ops_in_an_int8_model_fail_verification(model):
    """Checked as an int8 model, a float model's every compute op is flagged."""
    conv = export.convert(model, "fp32")
    result = export.verify(conv.model, conv.tflite, mode="int8", samples=samples(4), perturbation=True)
    flagged = [f for f in result.failures if f.startswith("op report:")]
    assert len(result.float_ops) == len(export.Runner(conv.tflite).ops())
    assert len(flagged) == 1 and "--allow-float-ops" in flagged[0]
    allowed = export.verify(conv.model, conv.tflite, mode="int8", samples=samples(4), perturbation=True,
                            allow_float_ops=True)
    assert allowed.ok, allowed.failures


def test_sparse_fp32_encodes_pruned_weights(model):
    pruned = keras.models.clone_model(model)
    pruned.set_weights(model.get_weights())
    rng = np.random.default_rng(0)
    for layer in pruned.layers:
        if isinstance(layer, keras.layers.Conv2D) and layer.kernel_size == (1, 1):
            kernel, *rest = layer.get_weights()
            kernel[rng.random(kernel.shape) < 0.8] = 0.0
            layer.set_weights([kernel, *rest])
    dense = export.sparsity(export.convert(pruned, "fp32").tflite)
    conv = export.convert(pruned, "fp32", sparse=True)
    sparse = export.sparsity(conv.tflite)
    assert dense["sparse_tensors"] == 0 and sparse["sparse_tensors"] > 0 and sparse["densify_ops"] > 0
    assert sparse["zero_fraction"] == pytest.approx(dense["zero_fraction"], abs=1e-6)
    assert dense["zero_fraction"] > 0.4
    result = export.verify(conv.model, conv.tflite, mode="fp32", samples=samples(4))
    assert result.ok, result.failures


@pytest.mark.parametrize("mode", ["int8", "dynamic", "int16x8"])
def test_sparse_refused_outside_float_modes(model, mode):
    with pytest.raises(export.ExportError, match="--sparse works with float modes only"):
        export.convert(model, mode, sparse=True, representative=samples(4))


def test_int8_without_calibration_data_is_an_error(model):
    with pytest.raises(export.ExportError, match="needs calibration data"):
        export.convert(model, "int8")


def test_qat_model_converts_to_int8_without_calibration(model, tmp_path):
    from mobilecnn.quantization import quantize

    qat = quantize(tiny_model("qat_base"))
    qat(samples(8), training=True)  # let the fake-quant ranges see data
    assert export.is_qat_model(qat) and not export.is_qat_model(model)
    conv = export.convert(qat, "int8", io="int8")
    assert conv.qat and conv.dropped_activation == "softmax"
    result = export.verify(conv.model, conv.tflite, mode="int8", samples=samples(8))
    assert result.ok, result.failures
    assert result.float_ops == [] and result.delegation["partitions"] == 1
    with pytest.raises(export.ExportError, match="QAT.*--int8 only"):
        export.convert(qat, "fp32")
    weights = [w.numpy() for w in qat.weights]
    manifest = export.export_model(qat, str(tmp_path / "qat.tflite"), mode="int8").manifest
    assert any("moved onto the int8 file's int32 grid" in note for note in manifest["notes"]), manifest["notes"]
    # Aligned for the parity check only: the caller's model object comes back as it was.
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(weights, qat.weights))


def test_mean_calibration_ranges_int8_is_integer_and_close_to_minmax(model):
    minmax = export.convert(model, "int8", representative=samples(32))
    mean = export.convert(model, "int8", representative=samples(32), calibration_ranges="mean")
    assert (minmax.calibration_ranges, mean.calibration_ranges) == ("minmax", "mean") and not mean.qat
    result = export.verify(mean.model, mean.tflite, mode="int8", samples=samples(8, seed=1))
    assert result.ok, result.failures
    assert result.float_ops == [] and result.delegation["partitions"] == 1
    x = samples(8, seed=2)
    reference = mean.model(x, training=False).numpy()
    outputs = {}
    for name, conv in (("minmax", minmax), ("mean", mean)):
        outputs[name] = export.Runner(conv.tflite).run_all(x)
    # The two range methods are both a quantization of the same float model.
    for got in outputs.values():
        assert np.linalg.norm(got - reference) / np.linalg.norm(reference) < 0.2
    assert not np.array_equal(outputs["minmax"], outputs["mean"])


def test_calibration_ranges_option_is_checked(model):
    with pytest.raises(export.ExportError, match="--calibration-ranges must be one of"):
        export.convert(model, "int8", representative=samples(4), calibration_ranges="percentile")
    with pytest.raises(export.ExportError, match="--calibration-ranges mean works with --int8 only"):
        export.convert(model, "int16x8", representative=samples(4), calibration_ranges="mean")


def test_batch_is_fixed():
    conv = export.convert(tiny_model(softmax=False), "fp32", batch_size=2)
    runner = export.Runner(conv.tflite)
    assert runner.input_details[0]["shape"] == (2, SIZE, SIZE, 3)
    assert not {"SHAPE", "PACK"} & {op["name"] for op in runner.ops()}


# -- metadata ---------------------------------------------------------------------
def test_metadata_round_trip_keeps_the_model_intact(model):
    conv = export.convert(model, "int8", representative=samples(16))
    info = {"labels": ["a", "b"], "normalization": {"mean": [127.5] * 3}}
    tagged = export.embed_metadata(conv.tflite, info)
    assert export.read_metadata(tagged) == info
    assert export.read_metadata(conv.tflite) is None
    retagged = export.embed_metadata(tagged, {"v": 2})  # replaces, does not duplicate
    assert export.read_metadata(retagged) == {"v": 2}
    x = samples(1, seed=9)
    np.testing.assert_array_equal(export.Runner(tagged).run(x), export.Runner(conv.tflite).run(x))
    with pytest.raises(ValueError, match="not a TFLite flatbuffer"):
        export.read_metadata(b"definitely not a model")


# -- the CLI ----------------------------------------------------------------------
def test_cli_int8_export_writes_verified_model_and_manifest(files, tmp_path):
    out = tmp_path / "tiny_int8.tflite"
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"class{c}" for c in range(CLASSES)))
    result = run_cli([files["keras"], "-o", out, "--int8", "--rep-data", files["rep"], "--normalization", "tf",
                      "--labels", labels, "--eval-data", files["eval"]])
    assert result.exit_code == 0, result.output
    assert "parity" in result.output and "1 XNNPACK partition(s)" in result.output
    manifest = json.loads((tmp_path / "tiny_int8.manifest.json").read_text())
    data = out.read_bytes()
    import hashlib

    assert manifest["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["mode"] == "int8" and manifest["sizes"]["tflite_bytes"] == len(data)
    assert manifest["calibration"].startswith("8 images from") and manifest["calibration_ranges"] == "minmax"
    assert manifest["source"]["kind"] == "file" and len(manifest["source"]["sha256"]) == 64
    assert manifest["versions"]["ai-edge-litert"] == importlib.metadata.version("ai-edge-litert")
    v = manifest["verification"]
    assert v["failures"] == [] and v["delegation"]["partitions"] == 1 and v["float_ops"] == []
    assert v["accuracy"]["images"] == 2 * CLASSES
    meta = export.read_metadata(str(out))
    assert meta["labels"][3] == "class3" and meta["mode"] == "int8"
    assert meta["normalization"]["mean"] == [127.5] * 3
    assert meta["input"]["shape"] == [1, SIZE, SIZE, 3] and meta["output"]["dropped_activation"] == "softmax"
    assert leftovers(tmp_path) == ["tiny_int8.manifest.json", "tiny_int8.tflite"]


def test_cli_fp32_from_h5_and_force(files, tmp_path):
    out = tmp_path / "m.tflite"
    first = run_cli([files["h5"], "-o", out])
    assert first.exit_code == 0, first.output
    manifest = json.loads((tmp_path / "m.manifest.json").read_text())
    assert manifest["verification"]["parity"]["rel_error"] < 1e-4
    before = out.read_bytes()
    again = run_cli([files["h5"], "-o", out, "--fp16"])
    assert again.exit_code != 0 and "already exists" in again.output and "--force" in again.output
    assert out.read_bytes() == before
    forced = run_cli([files["h5"], "-o", out, "--fp16", "--force"])
    assert forced.exit_code == 0, forced.output
    assert json.loads((tmp_path / "m.manifest.json").read_text())["mode"] == "fp16"
    assert out.read_bytes() != before and leftovers(tmp_path) == ["m.manifest.json", "m.tflite"]


def test_cli_verification_failure_writes_nothing(files, tmp_path):
    out = tmp_path / "kept.tflite"
    result = run_cli([files["keras"], "-o", out, "--int8", "--rep-data", files["rep"], "--normalization", "tf",
                      "--keep-activation"])
    assert result.exit_code != 0
    assert "verification failed, nothing written" in result.output and "delegation" in result.output
    assert leftovers(tmp_path) == []


BAD_INPUTS = {
    "missing file": (lambda f, t: [t / "nope.keras", "-o", t / "o.tflite"], "model file not found"),
    "misspelt zoo name": (
        lambda f, t: ["mobilenet_v3_larg", "-o", t / "o.tflite"],
        "not a registry model name; did you mean mobilenet_v3_large_1.0",
    ),
    "misspelt --model": (
        lambda f, t: [f["weights"], "--model", "mobilenet_v2_10", "-o", t / "o.tflite"],
        "--model mobilenet_v2_10: not a registry model name; did you mean mobilenet_v2_1.0",
    ),
    "not a model (.keras)": (lambda f, t: [f["text_keras"], "-o", t / "o.tflite"], "not a Keras model file"),
    "not a model (.txt)": (lambda f, t: [f["text"], "-o", t / "o.tflite"], "not a model file"),
    "lambda .keras": (lambda f, t: [f["lambda_keras"], "-o", t / "o.tflite"], "Lambda layer"),
    "lambda .h5": (lambda f, t: [f["lambda_h5"], "-o", t / "o.tflite"], "Lambda layer"),
    "lambda SavedModel": (lambda f, t: [f["lambda_savedmodel"], "-o", t / "o.tflite"], "Lambda layer"),
    "empty rep-data": (
        lambda f, t: [f["keras"], "-o", t / "o.tflite", "--int8", "--rep-data", f["empty"], "--normalization", "tf"],
        "no images found",
    ),
    "corrupt rep-data": (
        lambda f, t: [f["keras"], "-o", t / "o.tflite", "--int8", "--rep-data", f["corrupt"], "--normalization", "tf"],
        "not a readable",
    ),
    "grayscale rep-data": (
        lambda f, t: [f["keras"], "-o", t / "o.tflite", "--int8", "--rep-data", f["gray"], "--normalization", "tf"],
        "has 1 channel(s); the model expects 3",
    ),
    "sparse with int8": (
        lambda f, t: [f["keras"], "-o", t / "o.tflite", "--int8", "--sparse", "--rep-data", f["rep"]],
        "--sparse works with float modes only",
    ),
    "int8 without rep-data": (lambda f, t: [f["keras"], "-o", t / "o.tflite", "--int8"], "needs calibration data"),
    "unknown normalization": (
        lambda f, t: [f["keras"], "-o", t / "o.tflite", "--int8", "--rep-data", f["rep"]],
        "normalization is unknown",
    ),
    "weights without --model": (lambda f, t: [f["weights"], "-o", t / "o.tflite"], "HDF5 weights file"),
    "io int8 without --int8": (lambda f, t: [f["keras"], "-o", t / "o.tflite", "--io", "int8"], "--io int8 needs --int8"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_cli_bad_input_is_one_line_error_and_no_output(files, tmp_path, case):
    make_args, message = BAD_INPUTS[case]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = run_cli(make_args(files, out_dir))
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert message in lines[0]
    assert leftovers(out_dir) == []


def test_cli_existing_output_without_force(files, tmp_path):
    out = tmp_path / "taken.tflite"
    out.write_bytes(b"user data")
    result = run_cli([files["keras"], "-o", out])
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == [f"Error: {out} already exists; pass --force to overwrite it"]
    assert out.read_bytes() == b"user data" and not (tmp_path / "taken.manifest.json").exists()
