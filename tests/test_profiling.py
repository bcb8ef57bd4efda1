"""Profiling: parameter split, MACs per layer kind, peak activation memory."""
import pytest

from mobilecnn.compat import keras
from mobilecnn.profiling import layer_macs, peak_activation_bytes, profile
from mobilecnn.registry import create_model

L = keras.layers


def test_macs_per_layer_kind():
    inputs = keras.Input((8, 8, 4))
    conv = L.Conv2D(6, 3, padding="same")
    grouped = L.Conv2D(6, 1, groups=2)
    depthwise = L.DepthwiseConv2D(3, strides=2, padding="same")
    dense = L.Dense(5)
    x = depthwise(grouped(conv(inputs)))
    dense(L.Flatten()(x))
    assert layer_macs(conv) == 8 * 8 * 6 * 3 * 3 * 4
    assert layer_macs(grouped) == 8 * 8 * 6 * 1 * 1 * 3
    assert layer_macs(depthwise) == 4 * 4 * 6 * 3 * 3
    assert layer_macs(dense) == 4 * 4 * 6 * 5


def test_peak_activation_of_a_residual_graph():
    inputs = keras.Input((4, 4, 2))  # 32 elements
    a = L.Conv2D(4, 1, name="a")(inputs)  # 64
    b = L.Conv2D(4, 1, name="b")(a)  # 64
    c = L.Add(name="c")([a, b])  # 64
    model = keras.Model(inputs, c)
    # while c runs, a, b and c are live: 3 * 64 floats
    assert peak_activation_bytes(model) == 3 * 64 * 4


@pytest.mark.parametrize("name,published_mmacs", [("mobilenet_v1_1.0", 569), ("mobilenet_v2_1.0", 300),
                                                  ("mobilenet_v3_large_1.0", 219), ("shufflenet_v2_1.0", 146)])
def test_macs_agree_with_published_figures(name, published_mmacs):
    p = profile(create_model(name))
    assert abs(p["macs"] / 1e6 - published_mmacs) / published_mmacs < 0.02


def test_profile_totals_and_stages():
    model = create_model("mobilenet_v2_0.35", input_shape=(96, 96, 3), classes=10)
    p = profile(model)
    assert p["params"] == model.count_params() == p["trainable_params"] + p["non_trainable_params"]
    assert sum(s["params"] for s in p["stages"]) == p["params"]
    assert sum(s["macs"] for s in p["stages"]) == p["macs"]
    assert [s["stage"] for s in p["stages"]][:2] == ["stem", "stage1"]
    assert p["stages"][-1]["stage"] == "head"
    assert p["peak_activation_bytes"] >= 96 * 96 * 3 * 4
