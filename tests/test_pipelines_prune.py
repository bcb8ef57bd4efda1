"""pipelines.prune / cluster and the `prune` command: target sparsity, PQAT through int8, m-by-n, policy, PCQAT."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from mobilecnn.compat import keras
from pipelines import cluster, data, prune, qat, train
from pipelines.commands import prune_command

TARGET = 0.75


@pytest.fixture(scope="module")
def folder(images):
    return data.load_folder(images / "train")


DATA = data.DataConfig(image_size=32, batch_size=16, seed=0)


def sparse_friendly(padding="symmetric"):
    """XNNPACK sparse-path shape: padded 3x3/2 stem, depthwise + 1x1 convs, keepdims pooling."""
    inputs = keras.Input((32, 32, 3))
    if padding == "symmetric":
        x = keras.layers.ZeroPadding2D(1, name="stem_pad")(inputs)
        x = keras.layers.Conv2D(16, 3, strides=2, padding="valid", use_bias=False, name="stem_conv")(x)
    else:
        x = keras.layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(6.0, name="stem_relu")(x)
    for i, width in enumerate((32, 48)):
        x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"b{i}_dw")(x)
        x = keras.layers.BatchNormalization(name=f"b{i}_dwbn")(x)
        x = keras.layers.ReLU(6.0, name=f"b{i}_dwrelu")(x)
        x = keras.layers.Conv2D(width, 1, use_bias=False, name=f"b{i}_pw")(x)
        x = keras.layers.BatchNormalization(name=f"b{i}_pwbn")(x)
        x = keras.layers.ReLU(6.0, name=f"b{i}_pwrelu")(x)
    x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="pool")(x)
    x = keras.layers.Conv2D(10, 1, name="classifier")(x)
    return keras.Model(inputs, keras.layers.Flatten(name="logits")(x), name=f"sparse_{padding}")


CONFIG = prune.PruneConfig(target=TARGET, min_weights=256, skip=("stem_conv",))


@pytest.fixture(scope="module")
def trained(folder, tmp_path_factory):
    """A float model trained for 2 epochs (pruning starts from trained weights)."""
    model, _ = train.train(sparse_friendly, folder, DATA, train.TrainConfig(epochs=2), tmp_path_factory.mktemp("f"),
                           verbose=0)
    return model


@pytest.fixture(scope="module")
def pruned(trained, folder, tmp_path_factory):
    epochs = 3
    total = data.steps_per_epoch(folder, DATA) * epochs
    model, _ = train.train(lambda: prune.prune_model(trained, CONFIG, total), folder, DATA,
                           train.TrainConfig(epochs=epochs, learning_rate=0.01), tmp_path_factory.mktemp("p"),
                           callbacks=prune.callbacks(), verbose=0)
    names = prune.pruned_layer_names(model)
    return prune.strip(model), names


def test_pruning_reaches_the_target_on_a_trained_model(trained, pruned):
    stripped, names = pruned
    assert names == ["b0_pw", "b1_pw", "classifier"]  # stem skipped by name; depthwise never
    report = prune.check_sparsity(prune.sparsity_report(stripped, names), TARGET)
    for name in names:
        assert report[name]["zeros"] >= TARGET
    # The original trained model is untouched (pruning works on a copy).
    assert (trained.get_layer("b1_pw").kernel.numpy() == 0).mean() < 0.01
    assert not any(isinstance(layer, keras.layers.Wrapper) for layer in stripped.layers)


def test_check_sparsity_names_the_layers_below_target(pruned):
    stripped, names = pruned
    report = prune.sparsity_report(stripped, names)
    with pytest.raises(prune.SparsityError, match=r"below the 90.0% target .*b0_pw 7\d\.\d%"):
        prune.check_sparsity(report, 0.9)


def _int8_zeros(tflite, model, names):
    """Fraction of zero int8 weights per layer, read from the converted flatbuffer's constant tensors."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_content=tflite,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    found = {}
    for name in names:
        kh, kw, cin, cout = model.get_layer(name).kernel.shape  # TFLite conv weights are (out, kh, kw, in)
        for detail in interpreter.get_tensor_details():
            if detail["dtype"] == np.int8 and tuple(detail["shape"]) == (cout, kh, kw, cin):
                found[name] = float((interpreter.get_tensor(detail["index"]) == 0).mean())
    assert sorted(found) == sorted(names), found
    return found


def test_pqat_keeps_the_sparsity_through_int8_export(pruned, folder, tmp_path):
    from export import align_biases, convert

    stripped, names = pruned
    model, _ = train.train(lambda: prune.pqat_model(stripped), folder, DATA,
                           train.TrainConfig(epochs=1, learning_rate=0.005), tmp_path, verbose=0)
    prune.check_sparsity(prune.sparsity_report(model, names), TARGET, tolerance=0.01)
    conversion = convert(model, "int8", io="int8")
    for name, zeros in _int8_zeros(conversion.tflite, stripped, names).items():
        assert zeros >= TARGET - 0.01, (name, zeros)
    # Snapping the PQAT model's biases onto the file's grid leaves its kernels, and so their zeros, alone.
    before = prune.sparsity_report(model, names)
    assert align_biases(model, conversion.tflite)
    assert prune.sparsity_report(model, names) == before
    assert convert(model, "int8", io="int8").tflite == conversion.tflite


def test_m_by_n_sparsity_skips_the_stem_and_keeps_the_pattern(trained, folder, tmp_path):
    config = prune.PruneConfig(m_by_n=(2, 4), min_weights=1)
    total = data.steps_per_epoch(folder, DATA) * 2
    model, _ = train.train(lambda: prune.prune_model(trained, config, total), folder, DATA,
                           train.TrainConfig(epochs=2, learning_rate=0.01), tmp_path, callbacks=prune.callbacks(),
                           verbose=0)
    names = prune.pruned_layer_names(model)
    assert "stem_conv" not in names and names == ["b0_pw", "b1_pw", "classifier"]
    report = prune.check_sparsity(prune.sparsity_report(prune.strip(model), names, (2, 4)), 0.5)
    assert all(report[name]["m_by_n_valid"] for name in names)


def test_xnnpack_policy_prunes_only_pointwise_convs_of_a_symmetric_model():
    wrapped = prune.prune_model(sparse_friendly(), prune.PruneConfig(policy="xnnpack"), total_steps=20)
    assert prune.pruned_layer_names(wrapped) == ["b0_pw", "b1_pw", "classifier"]
    with pytest.raises(ValueError, match="does not fit the XNNPACK sparse-inference policy"):
        prune.prune_model(sparse_friendly("same"), prune.PruneConfig(policy="xnnpack"), total_steps=20)


def test_schedule_fits_the_run():
    schedule = prune.schedule_for(prune.PruneConfig(end=0.5), total_steps=40)
    config = schedule.get_config()["config"]
    assert config["end_step"] <= 20 and config["end_step"] % config["frequency"] == 0
    with pytest.raises(ValueError, match="at least 2 training steps"):
        prune.schedule_for(prune.PruneConfig(), total_steps=1)


def test_cluster_preserving_sparsity_then_pcqat(pruned, folder, tmp_path):
    from export import convert

    stripped, names = pruned
    model, _ = train.train(lambda: cluster.cluster_model(stripped, clusters=8, preserve_sparsity=True, names=names),
                           folder, DATA, train.TrainConfig(epochs=1, learning_rate=0.005), tmp_path / "c", verbose=0)
    clustered = cluster.strip(model)
    report = cluster.cluster_report(clustered, names)
    for name in names:
        assert report[name]["unique_values"] <= 8
        assert report[name]["zeros"] >= TARGET - 0.01
    pcqat = cluster.cqat_model(clustered, preserve_sparsity=True)
    assert qat.is_qat_model(pcqat)
    trained_pcqat, _ = train.train(lambda: cluster.cqat_model(clustered, preserve_sparsity=True), folder, DATA,
                                   train.TrainConfig(epochs=1, learning_rate=0.001), tmp_path / "q", verbose=0)
    # Measured with TF-MOT 0.8.1: the zero centroid drifts slightly during PCQAT and, in convs folded with a
    # following BatchNorm, the int8 weights lose the zeros (b0_pw/b1_pw: 0-75 % from run to run). The
    # classifier conv (no BN) keeps them; that is what is asserted here. See docs/pipelines.md.
    conversion = convert(trained_pcqat, "int8", io="int8")
    zeros = _int8_zeros(conversion.tflite, stripped, ["classifier"])
    assert zeros["classifier"] >= TARGET - 0.01


def test_prune_command_with_pqat(images, tmp_path):
    model_file = tmp_path / "sparse.keras"
    sparse_friendly().save(model_file)
    out = tmp_path / "run"
    result = CliRunner().invoke(prune_command, [
        str(model_file), "--data", str(images), "--image-size", "32", "--epochs", "2", "--batch-size", "32",
        "--sparsity", "0.5", "--min-weights", "256", "--pqat-epochs", "1", "--out", str(out), "--quiet"],
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["sparsity"] >= 0.5 and results["pqat_sparsity"] >= 0.49
    report = json.loads((out / "sparsity.json").read_text())
    assert {"b0_pw", "b1_pw", "classifier"} <= set(report)
    assert all(entry["zeros"] >= 0.5 for entry in report.values())
    assert qat.is_qat_model(qat.load_qat(out / "pqat_model.h5"))
    assert (out / "pruned.keras").exists() and (out / "pqat" / "history.json").exists()
