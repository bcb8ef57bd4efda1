"""Bad input to the zoo: each a clear error."""
import pytest

from mobilecnn.applications import MobileNet, MobileNetV2, ShuffleNetV2, SqueezeNet
from mobilecnn.registry import UnknownModelError, create_model


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownModelError, match="did you mean.*mobilenet_v2_1.0"):
        create_model("mobilenet_v2_10")


def test_alpha_out_of_range():
    with pytest.raises(ValueError, match="alpha must be between 0.25 and 1.0"):
        MobileNet(alpha=1.5)
    with pytest.raises(ValueError, match="alpha must be between"):
        MobileNetV2(alpha=0.0)


def test_input_too_small():
    with pytest.raises(ValueError, match="too small.*at least 32"):
        MobileNetV2(input_shape=(16, 16, 3))


def test_input_needs_fixed_size():
    with pytest.raises(ValueError, match="fixed height"):
        MobileNetV2(input_shape=(None, None, 3))


def test_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights file not found: .*nope.h5"):
        MobileNetV2(weights=str(tmp_path / "nope.h5"))


def test_imagenet_weights_explain_how_to_get_them():
    with pytest.raises(ValueError, match="no download exists.*mobilecnn port"):
        MobileNetV2(weights="imagenet")


def test_include_top_with_weights_needs_default_size(tmp_path):
    model = MobileNetV2(alpha=0.35, classes=10)
    path = tmp_path / "w.weights.h5"
    model.save_weights(path)
    with pytest.raises(ValueError, match="include_top=True .* needs the size the weights were trained at, 224x224"):
        MobileNetV2(alpha=0.35, classes=10, weights=str(path), input_shape=(96, 96, 3))
    # without the top any size works, and the default size loads the file
    MobileNetV2(alpha=0.35, include_top=False, weights=None, input_shape=(96, 96, 3))
    MobileNetV2(alpha=0.35, classes=10, weights=str(path))


def test_weights_file_that_does_not_fit(tmp_path):
    path = tmp_path / "other.weights.h5"
    SqueezeNet(classes=10).save_weights(path)
    with pytest.raises(ValueError, match="cannot load weights from .*other.weights.h5"):
        MobileNetV2(alpha=0.35, classes=10, weights=str(path))


def test_bad_choices():
    with pytest.raises(ValueError, match="scale must be one of"):
        ShuffleNetV2(scale=0.7)
    with pytest.raises(ValueError, match="version must be one of"):
        SqueezeNet(version="2.0")
    with pytest.raises(ValueError, match="pooling must be one of"):
        MobileNetV2(include_top=False, pooling="mean")
    with pytest.raises(ValueError, match="padding must be one of"):
        MobileNetV2(padding="reflect")
    with pytest.raises(TypeError, match="fixes \\['alpha'\\]"):
        create_model("mobilenet_v2_1.0", alpha=0.5)
