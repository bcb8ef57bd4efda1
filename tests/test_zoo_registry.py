"""Every registered model: reference parameter count, small forward pass,
one training step, and a .keras round trip."""
import numpy as np
import pytest

from mobilecnn import list_models
from mobilecnn.compat import keras
from mobilecnn.registry import create_model, get_card
from zoo_helpers import MOTIF_SAMPLE, small_model, split_by_graph, train_step, trainable_count, wiring_motifs

NAMES = list_models()
# .keras round trips of the largest models take minutes (zip of >100 MB); they run under -m slow.
HEAVY = {name for name in NAMES if get_card(name).reference_params > 25_000_000}


def test_registry_covers_every_family():
    families = {get_card(n).family for n in NAMES}
    assert families == {"mobilenet_v1", "mobilenet_v2", "mobilenet_v3", "shufflenet_v1", "shufflenet_v2", "squeezenet",
                        "efficientnet", "efficientnet_lite", "efficientnet_v2", "mnasnet"}
    for name in ("mobilenet_v1_0.75", "mobilenet_v2_1.4", "mobilenet_v3_large_minimalistic", "shufflenet_v1_g3_1.0",
                 "shufflenet_v2_1.5", "squeezenet_1.1", "efficientnet_b3", "efficientnet_lite0", "efficientnet_v2_s",
                 "mnasnet_1.0"):
        assert name in NAMES


def keras_applications_count(ctor, kwargs):
    """Count of the real keras.applications model, minus its preprocessing layers' weights."""
    model = getattr(keras.applications, ctor)(weights=None, **kwargs)
    preprocessing = (keras.layers.Normalization, keras.layers.Rescaling)
    return model.count_params() - sum(l.count_params() for l in model.layers if isinstance(l, preprocessing))


# The default run counts parameters of one model per distinct graph (zoo_helpers.graph_key) and runs the small
# checks on MOTIF_SAMPLE, whose wiring covers every graph's; -m slow takes the whole registry, to hold `make test`
# near 15 minutes.


@pytest.mark.parametrize("name", split_by_graph(NAMES)[0])
def test_default_size_parameter_count_matches_reference(name):
    _check_count(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", split_by_graph(NAMES)[1])
def test_default_size_parameter_count_other_widths_and_scalings(name):
    _check_count(name)


def _check_count(name):
    card = get_card(name)
    keras.backend.clear_session()
    model = create_model(name)
    assert model.input_shape == (None, card.default_size, card.default_size, 3)
    assert model.output_shape == (None, 1000)
    count = model.count_params() if card.reference_kind == "total" else trainable_count(model)
    assert abs(count - card.reference_params) <= card.reference_precision, (
        f"{name}: {count:,} {card.reference_kind} params, reference {card.reference_params:,} "
        f"({card.reference_source})")
    if card.keras_application:
        keras.backend.clear_session()
        assert model.count_params() == keras_applications_count(*card.keras_application)


def test_keras_counterparts_are_checked():
    assert sum(1 for n in NAMES if get_card(n).keras_application) >= 30
    assert create_model("mobilenet_v2_1.0").count_params() == 3_538_984


def _check_small(name, tmp_path, round_trip):
    model = small_model(name)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 64, 64, 3)).astype("float32")
    y = np.arange(8) % 10
    out = model(x).numpy()
    assert out.shape == (8, 10)
    assert np.isfinite(out).all()

    keras.utils.set_random_seed(0)
    before = train_step(model, x, y)
    unchanged = [v.name for v, old in zip(model.trainable_variables, before) if np.array_equal(v.numpy(), old)]
    assert not unchanged, f"{name}: one training step left {len(unchanged)} weights unchanged: {unchanged[:5]}"

    if round_trip:
        path = tmp_path / "model.keras"
        model.save(path)
        loaded = keras.models.load_model(path, safe_mode=True)
        np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())


@pytest.mark.parametrize("name", MOTIF_SAMPLE)
def test_small_forward_train_step_and_round_trip(name, tmp_path):
    _check_small(name, tmp_path, round_trip=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in NAMES if n not in MOTIF_SAMPLE and n not in HEAVY] + sorted(HEAVY))
def test_small_forward_train_step_and_round_trip_other_widths_and_heavy(name, tmp_path):
    _check_small(name, tmp_path, round_trip=True)


@pytest.mark.slow
def test_motif_sample_covers_every_graph():
    """The default run's sample keeps every wiring motif of one model per graph (what the default run covered before
    it took the sample), so a registry change that adds wiring fails here until MOTIF_SAMPLE takes a model with it."""
    def motifs(names):
        return set().union(*(wiring_motifs(small_model(name)) for name in names))

    missing = motifs(split_by_graph(NAMES)[0]) - motifs(MOTIF_SAMPLE)
    assert not missing, f"wiring motifs no model of MOTIF_SAMPLE has: {sorted(missing, key=str)}"


def test_wiring_motifs_are_each_layer_with_its_inputs_and_the_three_layer_chains():
    x_in = keras.Input((8, 8, 3), name="image")
    conv = keras.layers.Conv2D(4, 1, use_bias=False, name="conv")(x_in)
    bn = keras.layers.BatchNormalization(name="bn")(conv)
    relu = keras.layers.ReLU(6.0, name="relu")(bn)
    model = keras.Model(x_in, keras.layers.Add(name="add")([relu, bn]))
    conv_k, relu_k = "Conv2D/no_bias", "ReLU/max=6.0"
    assert wiring_motifs(model) == {
        ("InputLayer", ()), (conv_k, ("InputLayer",)), ("BatchNormalization", (conv_k,)),
        (relu_k, ("BatchNormalization",)), ("Add", ("BatchNormalization", relu_k)),
        ("InputLayer", conv_k, "BatchNormalization"), (conv_k, "BatchNormalization", relu_k),
        ("BatchNormalization", relu_k, "Add"), (conv_k, "BatchNormalization", "Add"),
    }
