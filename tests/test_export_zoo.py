"""Zoo families through export: int8 is all-integer in one XNNPACK partition, fp32 matches Keras.

Random weights with BatchNorm statistics set from one batch (otherwise a
deep random net's int8 output is all zeros), small inputs, 10 classes.
The default run covers one model per family; `-m slow` covers the registry.
"""
import numpy as np
import pytest

import export

SIZE = 64
# One model per family (V3 twice: Small and Large differ in SE/hard-swish use).
REPRESENTATIVE = [
    "mobilenet_v1_0.25",
    "mobilenet_v2_0.35",
    "mobilenet_v3_small_0.75",
    "mobilenet_v3_large_0.75",
    "shufflenet_v1_g3_1.0",
    "shufflenet_v2_0.5",
    "squeezenet_1.1",
    "efficientnet_lite0",
    "mnasnet_0.5",
]


def build(name, size):
    from mobilecnn import create_model
    from mobilecnn.compat import keras

    keras.utils.set_random_seed(0)
    model = create_model(name, input_shape=(size, size, 3), classes=10)
    export.calibrate_batchnorm(model, inputs(16, size))
    return model


def inputs(n, size, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, size, size, 3)).astype(np.float32)


def check_model(name, size):
    model = build(name, size)
    fp32 = export.convert(model, "fp32")
    result = export.verify(fp32.model, fp32.tflite, mode="fp32", samples=inputs(4, size, seed=1), perturbation=True)
    assert result.parity["rel_error"] < 1e-4, (name, result.parity)
    assert result.ok, (name, result.failures)

    int8 = export.convert(model, "int8", representative=inputs(32, size, seed=2))
    result = export.verify(int8.model, int8.tflite, mode="int8", samples=inputs(8, size, seed=3), perturbation=True)
    assert result.float_ops == [], (name, result.float_ops)
    assert result.delegation["partitions"] == 1, (name, result.delegation, result.op_counts)
    assert result.delegation["fully_accelerated"] is True, (name, result.delegation)
    assert result.ok, (name, result.failures)


@pytest.mark.parametrize("name", REPRESENTATIVE)
def test_family_exports_cleanly(name):
    check_model(name, SIZE)


def _registry():
    from mobilecnn import list_models

    return list_models()


@pytest.mark.slow
@pytest.mark.parametrize("name", _registry())
def test_whole_registry_exports_cleanly(name):
    check_model(name, SIZE)


def test_cli_registry_name_and_weights_file(tmp_path):
    """Random-init export of a registry name (synthetic calibration, said so), then its weights via --model."""
    import json

    from click.testing import CliRunner

    from export.commands import export_command

    out = tmp_path / "mnv1.tflite"
    args = ["mobilenet_v1_0.25", "-o", str(out), "--int8", "--io", "int8", "--input-size", "64", "--classes", "10"]
    result = CliRunner().invoke(export_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "mnv1.manifest.json").read_text())
    assert manifest["source"] == {"kind": "registry", "name": "mobilenet_v1_0.25"}
    assert manifest["model"]["random_init"] and manifest["calibration"].startswith("synthetic:")
    assert manifest["verification"]["parity"]["table"] == "perturbation"
    assert any("BatchNorm" in note for note in manifest["notes"])
    meta = export.read_metadata(str(out))
    assert meta["normalization"]["source"] == "model card mobilenet_v1_0.25 (torch)"
    assert meta["input"]["dtype"] == "int8" and meta["input"]["quantization"]["scale"] > 0
    assert "synthetic" in result.output

    weights = tmp_path / "mnv1.weights.h5"
    build("mobilenet_v1_0.25", 64).save_weights(str(weights))
    out2 = tmp_path / "from_weights.tflite"
    args = [str(weights), "--model", "mobilenet_v1_0.25", "-o", str(out2), "--input-size", "64", "--classes", "10"]
    result = CliRunner().invoke(export_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "from_weights.manifest.json").read_text())
    assert manifest["source"]["kind"] == "weights" and manifest["verification"]["parity"]["rel_error"] < 1e-4
    bad = CliRunner().invoke(export_command, [str(weights), "--model", "mobilenet_v1_0.25", "-o",
                                              str(tmp_path / "x.tflite")])  # default 224 px, 1000 classes: mismatch
    assert bad.exit_code != 0 and bad.output.startswith(f"Error: {weights}: cannot load weights into mobilenet_v1_0.25")
    assert not (tmp_path / "x.tflite").exists()
