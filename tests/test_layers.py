"""The QAT/int8-safe layer kit: numerics, serialization, QAT and int8 TFLite."""
import numpy as np
import pytest

from ai_edge_litert.interpreter import Interpreter, OpResolverType
from mobilecnn import blocks, quantization
from mobilecnn.blocks import BuildConfig
from mobilecnn.compat import keras, tf
from mobilecnn.layers import AddConst, ChannelShuffle, ChannelSplit, GateMultiply, MulConst
from export import calibrate_batchnorm


def _apply(build, x):
    inputs = keras.Input(x.shape[1:])
    return keras.Model(inputs, build(inputs))(x).numpy()


def test_hard_swish_and_hard_sigmoid_match_the_pytorch_definitions():
    x = np.linspace(-5, 5, 101, dtype="float32").reshape(1, 1, 101, 1)
    relu6 = np.clip(x + 3, 0, 6)
    np.testing.assert_allclose(_apply(lambda t: blocks.hard_swish(t, "hs"), x), x * relu6 / 6, atol=1e-6)
    np.testing.assert_allclose(_apply(lambda t: blocks.hard_sigmoid(t, "hsig"), x), relu6 / 6, atol=1e-6)


def test_channel_shuffle_matches_pytorch_order():
    x = np.arange(2 * 3 * 3 * 12, dtype="float32").reshape(2, 3, 3, 12)
    got = _apply(lambda t: ChannelShuffle(3)(t), x)
    # PyTorch: view(b, g, c/g, h, w).transpose(1, 2) on NCHW
    nchw = x.transpose(0, 3, 1, 2).reshape(2, 3, 4, 3, 3).transpose(0, 2, 1, 3, 4).reshape(2, 12, 3, 3)
    np.testing.assert_array_equal(got, nchw.transpose(0, 2, 3, 1))


def test_channel_split_and_constants():
    x = np.random.default_rng(0).normal(size=(1, 4, 4, 6)).astype("float32")
    inputs = keras.Input((4, 4, 6))
    a, b = ChannelSplit(2)(inputs)
    y = GateMultiply()([AddConst(1.5)(a), MulConst(-2.0)(b)])
    got = keras.Model(inputs, y)(x).numpy()
    np.testing.assert_allclose(got, (x[..., :3] + 1.5) * (x[..., 3:] * -2.0), rtol=1e-6)


def test_layers_reject_indivisible_channels():
    with pytest.raises(ValueError, match="not divisible by groups=4"):
        ChannelShuffle(4)(keras.Input((4, 4, 6)))
    with pytest.raises(ValueError, match="not divisible into 4 parts"):
        ChannelSplit(4)(keras.Input((4, 4, 6)))


def _kit_model():
    """A small net that uses every custom layer and block kind."""
    cfg = BuildConfig(padding="symmetric")
    inputs = keras.Input((32, 32, 3))
    x = blocks.conv_bn_act(inputs, 16, 3, 2, cfg=cfg, name="stem", act="hard_swish")
    x = blocks.inverted_residual(x, 16, expanded=48, se_reduced=8, act="hard_swish", se_gate="hard_sigmoid",
                                 cfg=cfg, name="ir1")
    x = blocks.inverted_residual(x, 24, expanded=48, strides=2, kernel_size=5, se_reduced=4, act="swish", cfg=cfg,
                                 name="ir2")
    x = blocks.shufflenet_v2_unit(x, 24, strides=1, cfg=cfg, name="sv2")
    x = blocks.shufflenet_v1_unit(x, 48, groups=2, strides=2, first_group=False, cfg=cfg, name="sv1")
    x = blocks.fused_mbconv(x, 48, expanded=96, cfg=cfg, name="fused")
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x))


def _int8_tflite(model):
    fn = tf.function(lambda x: model(x, training=False))
    concrete = fn.get_concrete_function(tf.TensorSpec([1, *model.input_shape[1:]], tf.float32))
    holder = tf.Module()  # a bare module converts much faster than the Keras model (no layer-by-layer save)
    holder.serve = fn
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], holder)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def test_kit_model_qat_round_trip_and_int8_is_one_xnnpack_partition(tmp_path):
    model = _kit_model()
    x = np.random.default_rng(1).normal(size=(16, 32, 32, 3)).astype("float32")
    calibrate_batchnorm(model, x)
    qat = quantization.quantize(model)
    qat(x, training=True)  # let the fake-quant ranges see data
    expected = qat(x[:1]).numpy()

    path = tmp_path / "qat.h5"
    qat.save(path)
    with quantization.quantize_scope():
        reloaded = keras.models.load_model(path)
    np.testing.assert_array_equal(reloaded(x[:1]).numpy(), expected)

    flat = _int8_tflite(qat)
    plain = Interpreter(model_content=flat, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    plain.allocate_tensors()
    dtypes = {t["index"]: t["dtype"] for t in plain.get_tensor_details()}
    float_ops = [op["op_name"] for op in plain._get_ops_details()
                 if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE")
                 and any(dtypes[i] == np.float32 for i in op["outputs"])]
    assert not float_ops, f"float compute ops after QAT: {float_ops}"
    assert "HARD_SWISH" not in {op["op_name"] for op in plain._get_ops_details()}

    delegated = Interpreter(model_content=flat)
    delegated.allocate_tensors()
    partitions = [op for op in delegated._get_ops_details() if op["op_name"] == "DELEGATE"]
    assert len(partitions) == 1

    inp, out = delegated.get_input_details()[0], delegated.get_output_details()[0]
    scale, zero = inp["quantization"]
    delegated.set_tensor(inp["index"], np.clip(np.round(x[:1] / scale + zero), -128, 127).astype(np.int8))
    delegated.invoke()
    o_scale, o_zero = out["quantization"]
    got = (delegated.get_tensor(out["index"]).astype("float32") - o_zero) * o_scale
    assert np.abs(got - expected).max() <= 3 * o_scale + 1e-6


def test_annotate_pairs_every_custom_layer():
    model = _kit_model()
    annotated = quantization.annotate(model)
    configs = {}
    for layer in annotated.layers:
        inner = getattr(layer, "layer", None)
        if inner is not None and type(inner) in quantization.LAYER_CONFIG:
            configs[type(inner).__name__] = type(layer.quantize_config).__name__
    # Every AddConst of the zoo (hard-swish, hard-sigmoid) feeds a ReLU(6) that the converter fuses into the ADD,
    # so it gets no range of its own (quantization.relu_fed_adds).
    adds = {layer.name for layer in model.layers if isinstance(layer, AddConst)}
    assert adds and quantization.relu_fed_adds(model) == adds
    assert configs == {"AddConst": "NoOpQuantizeConfig", "MulConst": "OutputQuantizeConfig",
                       "GateMultiply": "OutputQuantizeConfig", "ChannelShuffle": "NoOpQuantizeConfig",
                       "ChannelSplit": "NoOpQuantizeConfig"}


def test_convs_feeding_only_a_concat_get_no_range_of_their_own():
    """TFLite's int8 concat gives its inputs its own scale; a range of the conv's own would clip only in QAT."""
    x_in = keras.Input((8, 8, 4))
    avg = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="avg_dwconv")(x_in)
    conv = keras.layers.Conv2D(4, 1, name="conv")(x_in)
    act = keras.layers.ReLU(name="act")(conv)
    shared = keras.layers.Conv2D(4, 1, name="shared")(x_in)  # also feeds the Add: keeps its range
    x = keras.layers.Concatenate(name="concat")([avg, act, shared])
    model = keras.Model(x_in, [x, keras.layers.Add(name="add")([shared, act])])
    assert quantization.concat_fed_convs(model) == {"avg_dwconv"}
    q = quantization.quantize(model)
    range_vars = {layer.name: sorted(w.name.split("/")[-1] for w in layer.weights
                                     if w.name.endswith(("min:0", "max:0")) and "kernel" not in w.name)
                  for layer in q.layers}
    assert range_vars["quant_avg_dwconv"] == []
    assert range_vars["quant_shared"] == ["post_activation_max:0", "post_activation_min:0"]


def _int8_steps_off(qat_model, images):
    """|int8 file - QAT Keras| over `images`, in int8 steps of the output's range."""
    from export import Runner, convert

    got = Runner(convert(qat_model, "int8", io="float").tflite).run_all(images)
    expected = qat_model(images, training=False).numpy()
    return np.abs(got - expected) / ((expected.max() - expected.min()) / 255)


def test_convs_without_batch_norm_before_a_relu_keep_their_weights_quantized():
    """TF-MOT's LayerReLUQuantize gives a conv that feeds a ReLU a no-op config, weights included; the int8
    file rounds them anyway (measured: 7 % of the outputs a step away from QAT's, 0.3 % with the fix)."""
    import tensorflow_model_optimization as tfmot
    from pipelines.qat import quantize_model

    keras.utils.set_random_seed(0)
    x_in = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(32, 3, padding="same", name="conv")(x_in)
    x = keras.layers.ReLU(6.0, name="act")(x)
    model = keras.Model(x_in, x)
    images = np.random.default_rng(0).normal(size=(64, 8, 8, 3)).astype(np.float32)
    for base in (None, tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()):
        conv = quantization.quantize(model, base).get_layer("quant_conv")
        names = sorted(w.name.split("/")[-1] for w in conv.weights if w.name.endswith(("min:0", "max:0")))
        assert names == ["kernel_max:0", "kernel_min:0"], base  # weights fake-quantized, no range on the output
    off = _int8_steps_off(quantize_model(model, calibration=images), images[:8])
    assert np.mean(off > 0.5) < 0.01


def test_sigmoid_gate_is_fake_quantized_on_the_int8_logistic_grid():
    """TFLite's int8 LOGISTIC has the fixed output scale 1/256; TF-MOT leaves a sigmoid's output float."""
    from pipelines.qat import quantize_model

    keras.utils.set_random_seed(0)
    x_in = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", name="conv")(x_in)
    x = keras.layers.ReLU(6.0, name="act")(x)
    s = keras.layers.GlobalAveragePooling2D(keepdims=True, name="squeeze")(x)
    s = keras.layers.Conv2D(16, 1, name="expand")(s)
    s = keras.layers.Activation("sigmoid", name="gate")(s)
    model = keras.Model(x_in, GateMultiply(name="excite")([x, s]))
    images = 3 * np.random.default_rng(0).normal(size=(64, 8, 8, 3)).astype(np.float32)
    qat = quantize_model(model, calibration=images)
    assert type(qat.get_layer("quant_gate").quantize_config).__name__ == "LogisticQuantizeConfig"
    gate = keras.Model(qat.inputs, qat.get_layer("quant_gate").output)(images[:8]).numpy()
    np.testing.assert_allclose(gate * 256, np.round(gate * 256), atol=1e-3)
    # measured: max 1.0 step (mean 0.04) with a float gate, 0 with the fixed grid
    assert _int8_steps_off(qat, images[:32]).max() < 0.5


def test_swish_is_a_sigmoid_gate_so_qat_models_the_int8_logistic():
    """The int8 file runs swish as LOGISTIC (fixed 1/256 grid) + MUL; as one Activation layer QAT kept the
    sigmoid float. Measured at the next conv's output: 8.7 % of the values a step off with one layer, 0.3 %
    (the integer kernels' own rounding) with two."""
    from pipelines.qat import quantize_model

    keras.utils.set_random_seed(0)
    x_in = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False, name="conv")(x_in)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = blocks.activation(x, "swish", "act")
    model = keras.Model(x_in, keras.layers.Conv2D(8, 1, name="out")(x))
    assert [type(layer).__name__ for layer in model.layers[-3:]] == ["Activation", "GateMultiply", "Conv2D"]
    images = 2 * np.random.default_rng(0).normal(size=(64, 8, 8, 3)).astype(np.float32)
    calibrate_batchnorm(model, images)
    x = images[:4]
    np.testing.assert_allclose(keras.Model(x_in, model.get_layer("act").output)(x).numpy(),
                               tf.nn.silu(keras.Model(x_in, model.get_layer("bn").output)(x)).numpy(), atol=1e-5)
    off = _int8_steps_off(quantize_model(model, calibration=images), images[:32])
    assert off.max() <= 1.0 + 1e-3 and np.mean(off > 0.5) < 0.01
