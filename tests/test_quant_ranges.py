"""mobilecnn.quant_ranges: QAT starts from calibrated fake-quant ranges."""
import numpy as np
import pytest

from mobilecnn.compat import keras
from export import calibrate_batchnorm
from pipelines import qat
from mobilecnn.quant_ranges import RangeCalibrationError, calibrate_ranges


def _images(count=32, size=16, seed=0):
    return np.random.default_rng(seed).normal(size=(count, size, size, 3)).astype(np.float32)


def _small_net():
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    x_in = keras.Input((16, 16, 3), name="input")
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(x_in)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(6.0, name="act1")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.ReLU(6.0, name="act2")(x)
    x = keras.layers.Conv2D(16, 1, name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(x_in, keras.layers.Dense(5, name="logits")(x), name="small")
    calibrate_batchnorm(model, _images(64, seed=1))
    return model


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _range(model, layer_name):
    min_var = next(w for w in model.weights if w.name.startswith(layer_name + "/") and w.name.endswith("_min:0")
                   and "kernel" not in w.name)
    max_var = next(w for w in model.weights if w.name == min_var.name.replace("_min:0", "_max:0"))
    return float(np.min(min_var.numpy())), float(np.max(max_var.numpy()))


def test_uncalibrated_qat_model_zeroes_its_input():
    """What the calibration fixes: TF-MOT starts the input range at [0, 0]."""
    model = _small_net()
    q = qat.quantize_model(model)
    x = _images()
    assert _range(q, "quantize_layer") == (0.0, 0.0)
    assert np.allclose(q(x, training=False).numpy(), q(np.zeros_like(x), training=False).numpy())


def test_ranges_come_from_the_float_activations():
    model = _small_net()
    x = _images()
    q = qat.quantize_model(model, calibration=x)
    # Input: all-values quantizer -> the extremes over every image.
    assert _range(q, "quantize_layer") == pytest.approx((x.min(), x.max()), rel=1e-6)
    # ReLU6 output: EMA quantizer -> the mean of per-batch maxima (batches of 16), zero kept inside.
    act = keras.Model(model.inputs, model.get_layer("act1").output)(x).numpy()
    expected_max = np.mean([act[:16].max(), act[16:].max()])
    assert _range(q, "quant_act1") == pytest.approx((0.0, expected_max), rel=1e-5)


def test_calibrated_qat_model_starts_close_to_float():
    model = _small_net()
    x = _images()
    raw = qat.quantize_model(model)
    calibrated = qat.quantize_model(model, calibration=x)
    expected = model(x, training=False).numpy()
    raw_error, calibrated_error = _rel(raw(x, training=False).numpy(), expected), _rel(
        calibrated(x, training=False).numpy(), expected)
    assert raw_error > 0.5 and calibrated_error < 0.1, (raw_error, calibrated_error)


def test_int8_file_takes_the_calibrated_input_range():
    from ai_edge_litert.interpreter import Interpreter
    from export import convert

    model = _small_net()
    x = _images()
    q = qat.quantize_model(model, calibration=x)
    interpreter = Interpreter(model_content=convert(q, "int8", io="int8").tflite)
    scale, zero_point = interpreter.get_input_details()[0]["quantization"]
    assert scale == pytest.approx((x.max() - x.min()) / 255, rel=1e-3)
    assert x.min() / scale + zero_point == pytest.approx(-128, abs=1)


def test_pixels_scaled_to_plus_minus_one_reach_the_int8_file_unchanged():
    """uint8 pixels scaled to [-1, 1] lie halfway between two levels of the [-1, 1] int8 grid, where TF's fake
    quant and TFLite's QUANTIZE round differently (half the pixels a step apart); the calibrated input range is
    a step wider, so the int8 file quantizes every pixel as the QAT model does."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from export import convert

    pixels = np.random.default_rng(0).integers(0, 256, size=(32, 16, 16, 3))
    pixels[0, 0, 0] = (0, 255, 128)
    x = (pixels / 127.5 - 1).astype(np.float32)
    q = qat.quantize_model(_small_net(), calibration=x)
    low, high = _range(q, "quantize_layer")
    assert low == pytest.approx(-1.0) and high == pytest.approx(1 + 2 / 255, rel=1e-6)
    expected = q.get_layer("quantize_layer")(x[:4], training=False).numpy()
    interpreter = Interpreter(model_content=convert(q, "int8", io="float").tflite,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                              experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    quantized = next(d for d in interpreter.get_tensor_details()
                     if "quantize_layer" in d["name"] and d["dtype"] == np.int8)
    scale, zero_point = quantized["quantization"]
    for image, want in zip(x[:4], expected):
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[None])
        interpreter.invoke()
        got = (interpreter.get_tensor(quantized["index"])[0].astype(np.float32) - zero_point) * scale
        np.testing.assert_allclose(got, want, atol=scale * 1e-3)


def test_rejects_a_float_model_that_does_not_match():
    q = qat.quantize_model(_small_net())
    other = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, name="other")])
    with pytest.raises(RangeCalibrationError, match="has no float counterpart"):
        calibrate_ranges(q, other, _images())


@pytest.mark.parametrize("images", [np.zeros((0, 16, 16, 3)), np.zeros((16, 16, 3))])
def test_rejects_bad_calibration_arrays(images):
    model = _small_net()
    with pytest.raises(RangeCalibrationError, match="calibration images"):
        qat.quantize_model(model, calibration=images)
