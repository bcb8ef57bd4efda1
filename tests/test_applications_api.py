"""keras.applications semantics of the constructors: include_top, pooling, input_tensor, classifier_activation."""
import numpy as np
import pytest

from mobilecnn.applications import EfficientNetLite0, MobileNetV2, MobileNetV3Small, SqueezeNet1_1
from mobilecnn.compat import keras


@pytest.mark.parametrize("pooling,shape", [(None, (None, 2, 2, 1280)), ("avg", (None, 1280)), ("max", (None, 1280))])
def test_include_top_false_and_pooling(pooling, shape):
    model = MobileNetV2(input_shape=(64, 64, 3), include_top=False, pooling=pooling)
    assert model.output_shape == shape


def test_input_tensor_is_used_as_the_model_input():
    tensor = keras.Input((96, 96, 3), name="image")
    model = MobileNetV3Small(input_tensor=tensor, classes=7)
    assert model.inputs[0] is tensor
    assert model.output_shape == (None, 7)


def test_classifier_activation_is_a_separate_layer():
    probs = SqueezeNet1_1(input_shape=(64, 64, 3), classes=5)
    logits = SqueezeNet1_1(input_shape=(64, 64, 3), classes=5, classifier_activation=None)
    assert probs.layers[-1].name == "predictions" and probs.layers[-1].get_config()["activation"] == "softmax"
    assert logits.layers[-1].name == "logits"
    x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(probs(x).numpy().sum(axis=1), 1.0, rtol=1e-5)


def test_padding_policy_changes_only_the_padding_layers():
    symmetric = EfficientNetLite0(input_shape=(64, 64, 3), padding="symmetric")
    same = EfficientNetLite0(input_shape=(64, 64, 3))  # Lite defaults to TF "same"
    pads = lambda m: [l.name for l in m.layers if isinstance(l, keras.layers.ZeroPadding2D)]
    assert pads(symmetric) and not pads(same)
    assert symmetric.count_params() == same.count_params()
