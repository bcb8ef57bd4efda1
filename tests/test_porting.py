"""Weight porting: fixture parity, the exactly-once check, readers, the CLI and ImageNet helpers."""
import json
import struct
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from mobilecnn import create_model
from mobilecnn.cli import main
from mobilecnn.imagenet import decode_predictions, imagenet_classes, preprocess_input
from mobilecnn.porting import (PortError, build_kwargs, get_recipe, load_ported, port, read_provenance,
                               read_state_dict, save_weights)
from mobilecnn.porting.readers import read_safetensors

FIXTURE_NAMES = ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "shufflenet_v2_x1_0", "squeezenet1_1",
                 "mnasnet1_0", "efficientnet_b0", "timm_mobilenetv1_100")


@pytest.fixture(scope="module")
def torch_reference(shared_dir):
    folder = shared_dir / "fixtures" / "torch_reference"
    if not (folder / "index.json").is_file():
        pytest.skip(f"{folder} not found: the PyTorch reference fixtures are not part of a fresh clone")
    return folder


@pytest.fixture(scope="module")
def inputs(torch_reference):
    return np.load(torch_reference / "inputs.npy")


def source_and_model(fixture):
    """index.json names: torchvision constructor names, or 'timm_' + the timm model name."""
    return ("timm", fixture[len("timm_"):]) if fixture.startswith("timm_") else ("torchvision", fixture)


def test_every_fixture_in_the_index_is_covered(torch_reference):
    index = json.loads((torch_reference / "index.json").read_text())
    assert set(index) == set(FIXTURE_NAMES)
    for name, entry in index.items():
        assert entry["source"].split()[0] == source_and_model(name)[0]


@pytest.mark.parametrize("fixture", FIXTURE_NAMES)
def test_port_reproduces_reference_logits(fixture, torch_reference, inputs):
    source, model_name = source_and_model(fixture)
    model = port(source, torch_reference / f"{fixture}.npz", model_name, classifier_activation=None)
    reference = np.load(torch_reference / f"{fixture}.logits.npy")
    logits = model.predict(inputs, verbose=0)
    assert logits.shape == reference.shape == (2, 10)
    tolerance = 1e-4 * np.abs(reference).max()
    assert np.abs(logits - reference).max() <= tolerance


def test_wrong_bn_epsilon_breaks_parity(torch_reference, inputs):
    # The recipe's epsilon is load-bearing: the Keras default (1e-3) instead of
    # torchvision's 1e-5 must fail the tolerance, or the fixtures test nothing.
    recipe = get_recipe("torchvision", "mnasnet1_0")
    state = read_state_dict(torch_reference / "mnasnet1_0.npz")
    wrong = create_model("mnasnet_1.0", classes=10, classifier_activation=None, padding="symmetric",
                         bn_epsilon=1e-3)
    from mobilecnn.porting.core import load_state_dict

    load_state_dict(wrong, state, recipe.assign(wrong))
    reference = np.load(torch_reference / "mnasnet1_0.logits.npy")
    assert np.abs(wrong.predict(inputs, verbose=0) - reference).max() > 1e-4 * np.abs(reference).max()


# -- the exactly-once check -----------------------------------------------
@pytest.fixture(scope="module")
def squeezenet_state(torch_reference):
    return read_state_dict(torch_reference / "squeezenet1_1.npz")


def test_missing_tensor_is_named(squeezenet_state):
    state = dict(squeezenet_state)
    del state["features.6.expand3x3.bias"]
    with pytest.raises(PortError, match=r"missing:\n\s+features\.6\.expand3x3\.bias \(128,\) for fire4_expand3x3_conv"):
        port("torchvision", state, "squeezenet1_1")


def test_extra_tensor_is_named(squeezenet_state):
    state = {**squeezenet_state, "features.13.squeeze.weight": np.zeros((8, 512, 1, 1), np.float32)}
    with pytest.raises(PortError, match=r"unexpected.*:\n\s+features\.13\.squeeze\.weight \(8, 512, 1, 1\)"):
        port("torchvision", state, "squeezenet1_1")


def test_mis_shaped_tensor_is_named(squeezenet_state):
    state = {**squeezenet_state, "features.3.expand3x3.weight": np.zeros((64, 16, 1, 1), np.float32)}
    with pytest.raises(PortError, match=r"features\.3\.expand3x3\.weight has shape \(64, 16, 1, 1\), "
                                        r"fire2_expand3x3_conv needs \(64, 16, 3, 3\)"):
        port("torchvision", state, "squeezenet1_1")


def test_batch_counters_are_not_weights(torch_reference):
    # Real torchvision checkpoints carry BatchNorm's num_batches_tracked; it holds no weights.
    state = read_state_dict(torch_reference / "shufflenet_v2_x1_0.npz")
    state["conv1.1.num_batches_tracked"] = np.array(100, np.int64)
    model = port("torchvision", state, "shufflenet_v2_x1_0")
    assert model.output_shape == (None, 10)


def test_checkpoint_of_another_model_is_refused(torch_reference):
    with pytest.raises(PortError, match="no classifier tensor 'classifier.1.weight'"):
        port("torchvision", torch_reference / "shufflenet_v2_x1_0.npz", "mobilenet_v2")


def test_unknown_model_and_source():
    with pytest.raises(PortError, match="no timm port for model 'mobilenet_v2_1.0'; timm ports: mobilenet_v1_1.0"):
        get_recipe("timm", "mobilenet_v2_1.0")
    with pytest.raises(PortError, match="unknown source 'keras'"):
        get_recipe("keras", "mobilenet_v2_1.0")


# -- readers ----------------------------------------------------------------
def write_safetensors(path, tensors):
    """A minimal safetensors writer: {name: (dtype tag, raw bytes, shape)}."""
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, (dtype, raw, shape) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))


def test_safetensors_dtypes(tmp_path):
    f32 = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    bf16 = (np.array([1.5, -2.0, 3.140625], np.float32).view(np.uint32) >> 16).astype("<u2")
    path = tmp_path / "t.safetensors"
    write_safetensors(path, {"a": ("F32", f32.astype("<f4").tobytes(), (2, 3)),
                             "b": ("F16", f32.astype("<f2").tobytes(), (2, 3)),
                             "c": ("BF16", bf16.tobytes(), (3,))})
    state = read_safetensors(path)
    np.testing.assert_array_equal(state["a"], f32)
    np.testing.assert_array_equal(state["b"], f32.astype(np.float16))
    np.testing.assert_array_equal(state["c"], [1.5, -2.0, 3.140625])


def test_port_from_safetensors_matches_npz(tmp_path, squeezenet_state, torch_reference, inputs):
    path = tmp_path / "squeezenet1_1.safetensors"
    write_safetensors(path, {k: ("F16", v.astype("<f2").tobytes(), v.shape) for k, v in squeezenet_state.items()})
    model = port("torchvision", path, "squeezenet_1.1", classifier_activation=None)
    reference = np.load(torch_reference / "squeezenet1_1.logits.npy")
    assert np.abs(model.predict(inputs, verbose=0) - reference).max() <= 1e-4 * np.abs(reference).max()


def test_truncated_safetensors_is_refused(tmp_path):
    path = tmp_path / "bad.safetensors"
    write_safetensors(path, {"a": ("F32", b"\0" * 16, (4,))})
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(PortError, match=r"bad\.safetensors: tensor 'a' lies outside the file"):
        read_state_dict(path)


def test_pth_without_torch_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError, installed or not
    path = tmp_path / "model.pth"
    path.write_bytes(b"\x80\x02}q\x00.")  # a pickle; it must never be opened without torch
    with pytest.raises(PortError, match=r"model\.pth: reading \.pth files needs PyTorch"):
        read_state_dict(path)


def test_unknown_suffix_and_missing_file(tmp_path):
    (tmp_path / "w.ckpt").write_bytes(b"x")
    with pytest.raises(PortError, match=r"w\.ckpt: unknown format \.ckpt"):
        read_state_dict(tmp_path / "w.ckpt")
    with pytest.raises(PortError, match="checkpoint not found"):
        read_state_dict(tmp_path / "none.npz")


# -- files, the CLI and weights=PATH ---------------------------------------
def test_cli_port_then_constructor_weights(tmp_path, torch_reference, inputs):
    out = tmp_path / "mnv3s.weights.h5"
    checkpoint = str(torch_reference / "mobilenet_v3_small.npz")
    args = ["port", "--from", "torchvision", checkpoint, "--model", "mobilenet_v3_small", "-o", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "create_model('mobilenet_v3_small_1.0'" in result.output
    reference = np.load(torch_reference / "mobilenet_v3_small.logits.npy")
    model = create_model("mobilenet_v3_small_1.0", weights=str(out), classes=10, classifier_activation=None,
                         **build_kwargs("torchvision", "mobilenet_v3_small"))
    assert np.abs(model.predict(inputs, verbose=0) - reference).max() <= 1e-4 * np.abs(reference).max()
    assert read_provenance(out)["build"] == {"padding": "symmetric", "bn_epsilon": 1e-3}
    rebuilt = load_ported(out, classifier_activation=None)
    np.testing.assert_allclose(rebuilt.predict(inputs, verbose=0), model.predict(inputs, verbose=0), atol=1e-6)

    again = CliRunner().invoke(main, args)
    assert again.exit_code != 0 and "exists; pass --force" in again.output


def test_weights_file_brings_its_padding_and_epsilon(tmp_path, torch_reference, inputs):
    # torchvision MobileNetV2 needs BN epsilon 1e-5, not the Keras default 1e-3:
    # the port record in the file supplies it when the caller leaves it unset.
    out = tmp_path / "mnv2.weights.h5"
    save_weights(port("torchvision", torch_reference / "mobilenet_v2.npz", "mobilenet_v2"), out,
                 provenance={"model": "mobilenet_v2_1.0", "classes": 10,
                             "build": build_kwargs("torchvision", "mobilenet_v2")})
    reference = np.load(torch_reference / "mobilenet_v2.logits.npy")
    model = create_model("mobilenet_v2_1.0", weights=str(out), classes=10, classifier_activation=None)
    assert np.abs(model.predict(inputs, verbose=0) - reference).max() <= 1e-4 * np.abs(reference).max()
    with pytest.raises(ValueError, match="bn_epsilon=0.001 contradicts weights file .*mnv2.weights.h5"):
        create_model("mobilenet_v2_1.0", weights=str(out), classes=10, bn_epsilon=1e-3)


def test_cli_failure_writes_nothing(tmp_path, torch_reference):
    out = tmp_path / "x.weights.h5"
    result = CliRunner().invoke(main, ["port", "--from", "torchvision", str(torch_reference / "squeezenet1_1.npz"),
                                       "--model", "squeezenet_1.0", "-o", str(out)])
    assert result.exit_code != 0
    assert "does not match squeezenet_1.0" in result.output
    assert "features.0.weight has shape (64, 3, 3, 3), stem_conv needs (96, 3, 7, 7)" in result.output
    assert list(tmp_path.iterdir()) == []


def test_save_weights_refuses_overwrite_and_bad_suffix(tmp_path):
    model = create_model("squeezenet_1.1", input_shape=(64, 64, 3), include_top=False)
    target = tmp_path / "w.weights.h5"
    target.write_bytes(b"user data")
    with pytest.raises(PortError, match="exists; pass force=True"):
        save_weights(model, target)
    assert target.read_bytes() == b"user data"
    with pytest.raises(PortError, match=r"expected a \.h5 file name"):
        save_weights(model, tmp_path / "w.ckpt")
    save_weights(model, target, force=True)
    legacy = save_weights(model, tmp_path / "w.h5")  # the legacy HDF5 format loads too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.h5", "w.weights.h5"]
    for path in (target, legacy):
        loaded = create_model("squeezenet_1.1", input_shape=(64, 64, 3), include_top=False, weights=str(path))
        for a, b in zip(loaded.get_weights(), model.get_weights()):
            np.testing.assert_array_equal(a, b)


# -- ImageNet helpers -----------------------------------------------------------
def test_imagenet_classes_are_in_ilsvrc_order():
    classes = imagenet_classes()
    wnids = [wnid for wnid, _ in classes]
    assert len(classes) == 1000 and wnids == sorted(set(wnids))
    assert classes[0] == ("n01440764", "tench") and classes[999] == ("n15075141", "toilet_tissue")


def test_imagenet_classes_match_the_sample_file_names(shared_dir):
    folder = shared_dir / "datasets" / "imagenet-samples"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    names = sorted(p.stem.split("_", 1) for p in folder.glob("*.JPEG"))
    assert [list(pair) for pair in imagenet_classes()] == names


def test_decode_predictions():
    preds = np.zeros((2, 1000), np.float32)
    preds[0, [1, 7, 3]] = [0.5, 0.3, 0.2]
    preds[1, 999] = 1.0
    decoded = decode_predictions(preds, top=3)
    assert decoded[0] == [("n01443537", "goldfish", 0.5), ("n01514668", "cock", pytest.approx(0.3)),
                          ("n01491361", "tiger_shark", pytest.approx(0.2))]
    assert decoded[1][0] == ("n15075141", "toilet_tissue", 1.0)
    with pytest.raises(ValueError, match=r"shape \(N, 1000\)"):
        decode_predictions(np.zeros((2, 10)))


def test_preprocess_input_follows_the_model_card():
    pixels = np.array([[[0, 127, 255]]], np.uint8)
    np.testing.assert_allclose(preprocess_input(pixels, "efficientnet_lite0"), [[[-127 / 128, 0.0, 1.0]]])
    np.testing.assert_allclose(preprocess_input(pixels, "mobilenet_v2_1.0"),
                               [[[-123.675 / 58.395, (127 - 116.28) / 57.12, (255 - 103.53) / 57.375]]], rtol=1e-6)
    assert pixels.dtype == np.uint8 and pixels[0, 0, 0] == 0
