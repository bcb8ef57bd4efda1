"""pipelines.qat: the unannotated-layer check, QAT on every zoo model, int8 parity, save/load."""
import re

import numpy as np
import pytest

from mobilecnn import create_model, list_models
from mobilecnn.compat import keras
from mobilecnn.layers import GateMultiply
from export import calibrate_batchnorm
from pipelines import qat

SIZE = 32
# One model per family for the int8-TFLite parity check. It is under -m slow: on random-weight (or barely
# trained) 32 px models the int8 file does not reproduce the QAT Keras outputs (measured relative L2 error
# 0.4-0.97 with XNNPACK and with reference kernels), so these tests fail today; see docs/pipelines.md.
PARITY_FAMILIES = ["mobilenet_v2_0.35", "mobilenet_v3_small_minimalistic", "shufflenet_v2_0.5", "efficientnet_lite0"]
# Deeper/wider compound scalings of a registered base model (efficientnet_b0, _v2_b0, _lite0 stay in the
# default run): same block types, 9-35 s each for quantize + forward on 2 cores, so -m slow only.
HEAVY = {*(f"efficientnet_b{i}" for i in range(1, 8)), *(f"efficientnet_lite{i}" for i in range(1, 5)),
         *(f"efficientnet_v2_{v}" for v in ("b1", "b2", "b3", "s", "m", "l"))}


def small(name):
    keras.backend.clear_session()
    return create_model(name, input_shape=(SIZE, SIZE, 3), classes=10, classifier_activation=None)


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


def _registered(heavy_slow=False):
    try:
        names = list_models()
    except ImportError as exc:  # the registry is optional while the zoo is being built
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"mobilecnn registry unavailable: {exc}"))]
    return [pytest.param(n, marks=pytest.mark.slow) if heavy_slow and n in HEAVY else n for n in names]


@pytest.mark.parametrize("name", _registered(heavy_slow=True))
def test_qat_applies_to_every_registered_model(name):
    model = small(name)
    q = qat.quantize_model(model)
    assert qat.is_qat_model(q)
    out = q(inputs(2), training=False).numpy()
    assert out.shape == (2, 10) and np.all(np.isfinite(out))


def _int8_parity(name):
    from export import Runner, convert

    model = small(name)
    x = inputs(8)
    calibrate_batchnorm(model, x)
    q = qat.quantize_model(model)
    for _ in range(3):  # let the fake-quant ranges see data, as QAT fine-tuning does
        q(x, training=True)
    expected = q(x, training=False).numpy()
    conversion = convert(q, "int8", io="float")
    assert conversion.qat
    runner = Runner(conversion.tflite)
    got = np.concatenate([runner.run(x[i : i + 1]) for i in range(len(x))])
    scale = (expected.max() - expected.min()) / 255  # one int8 step of the output range
    np.testing.assert_allclose(got, expected, atol=3 * scale + 1e-6)
    ranked = np.sort(expected, axis=1)
    clear = ranked[:, -1] - ranked[:, -2] > 6 * scale  # ties within quantization noise may swap
    assert np.array_equal(got.argmax(1)[clear], expected.argmax(1)[clear])


@pytest.mark.slow
@pytest.mark.parametrize("name", PARITY_FAMILIES)
def test_qat_int8_tflite_equals_qat_keras(name):
    _int8_parity(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", _registered())
def test_qat_int8_tflite_equals_qat_keras_every_model(name):
    _int8_parity(name)


@pytest.mark.parametrize("suffix", [".h5", pytest.param("", marks=pytest.mark.slow, id="savedmodel")])
def test_qat_model_save_load_round_trip(tmp_path, suffix):
    model = small("mobilenet_v3_small_minimalistic")
    x = inputs(2)
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
    q = qat.quantize_model(small("mobilenet_v2_0.35"))
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
    out = tmp_path / "run"
    result = CliRunner().invoke(qat_command, ["mobilenet_v3_small_minimalistic", "--data", str(tmp_path / "data"),
                                              "--image-size", str(SIZE), "--epochs", "1", "--batch-size", "20",
                                              "--out", str(out), "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert 0 <= results["qat_val_accuracy"] <= 1
    assert qat.is_qat_model(qat.load_qat(out / "qat_model.h5"))
    assert (out / "history.json").exists() and (out / "checkpoints").is_dir()
