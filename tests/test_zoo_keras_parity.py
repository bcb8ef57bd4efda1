"""Models that keras.applications also has: same parameter count as the real Keras model."""
import pytest

from mobilecnn import list_models
from mobilecnn.compat import keras
from mobilecnn.registry import create_model, get_card

WITH_KERAS = [n for n in list_models() if get_card(n).keras_application]


def keras_count(ctor, kwargs):
    model = getattr(keras.applications, ctor)(weights=None, **kwargs)
    preprocessing = (keras.layers.Normalization, keras.layers.Rescaling)
    return model.count_params() - sum(l.count_params() for l in model.layers if isinstance(l, preprocessing))


def test_keras_counterparts_exist():
    assert len(WITH_KERAS) >= 30


@pytest.mark.parametrize("name", WITH_KERAS)
def test_count_equals_keras_applications(name):
    ctor, kwargs = get_card(name).keras_application
    keras.backend.clear_session()
    expected = keras_count(ctor, kwargs)
    keras.backend.clear_session()
    assert create_model(name).count_params() == expected


def test_mobilenet_v2_total_is_the_published_figure():
    assert create_model("mobilenet_v2_1.0").count_params() == 3_538_984
