"""pipelines.train and the `train` command: schedule, exact resume, run folder, distribution, CLI errors."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mobilecnn.compat import keras
from pipelines import data, synthetic, train
from pipelines.commands import train_command
from zoo_helpers import tiny_model

ROOT = Path(__file__).resolve().parents[1]


def test_warmup_cosine_schedule():
    schedule = train.WarmupCosine(0.1, total_steps=100, warmup_steps=10, floor=0.001)
    values = [float(schedule(step)) for step in (0, 4, 9, 10, 55, 100, 150)]
    assert values[0] == pytest.approx(0.01) and values[1] == pytest.approx(0.05)
    assert values[2] == pytest.approx(0.1) and values[3] == pytest.approx(0.1)
    assert values[4] == pytest.approx(0.001 + 0.5 * 0.099, rel=1e-4)
    assert values[5] == pytest.approx(0.001) and values[6] == pytest.approx(0.001)
    assert train.WarmupCosine.from_config(schedule.get_config()).get_config() == schedule.get_config()


class Killed(Exception):
    pass


class KillAtEpoch(keras.callbacks.Callback):
    """Dies in the middle of an epoch, after the previous epoch's checkpoint was written."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch == 1:
            raise Killed()


def test_resume_continues_with_identical_weights(images, tmp_path):
    folder = data.load_folder(images / "train")
    data_config = data.DataConfig(image_size=32, batch_size=16, seed=1)
    config = train.TrainConfig(epochs=2, seed=1, deterministic=True, warmup_epochs=0.5)
    straight, history = train.train(tiny_model, folder, data_config, config, tmp_path / "straight", verbose=0)

    with pytest.raises(Killed):
        train.train(tiny_model, folder, data_config, config, tmp_path / "killed", verbose=0,
                    callbacks=[KillAtEpoch(1)])
    saved = json.loads((tmp_path / "killed" / "history.json").read_text())
    assert [entry["epoch"] for entry in saved] == [1]
    assert train.has_checkpoint(tmp_path / "killed")
    resumed, resumed_history = train.train(tiny_model, folder, data_config, config, tmp_path / "killed",
                                           resume=True, verbose=0)

    assert resumed.optimizer.iterations.numpy() == straight.optimizer.iterations.numpy() == 10
    for a, b in zip(straight.weights, resumed.weights):
        assert np.array_equal(a.numpy(), b.numpy()), a.name
    for a, b in zip(straight.optimizer.variables, resumed.optimizer.variables):
        assert np.array_equal(a.numpy(), b.numpy()), a.name
    assert [e["loss"] for e in history] == [e["loss"] for e in resumed_history]


def test_run_folder_has_checkpoints_tensorboard_and_history(images, tmp_path):
    folder = data.load_folder(images / "train")
    val = data.load_folder(images / "test", class_names=folder.class_names)
    data_config = data.DataConfig(image_size=32, batch_size=16)
    assert not train.has_checkpoint(tmp_path)
    _, history = train.train(tiny_model, folder, data_config, train.TrainConfig(epochs=2), tmp_path, val_folder=val,
                             verbose=0)
    entries = json.loads((tmp_path / "history.json").read_text())
    assert entries == history and [e["epoch"] for e in entries] == [1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "images_per_second"} <= set(entries[0])
    assert entries[1]["learning_rate"] < entries[0]["learning_rate"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*.index")) == ["ckpt-1.index", "ckpt-2.index"]
    for split in ("train", "validation"):
        assert list((tmp_path / "tensorboard" / split).glob("events.out.tfevents.*")), split
    # A finished run resumes to a no-op instead of training further.
    model, again = train.train(tiny_model, folder, data_config, train.TrainConfig(epochs=2), tmp_path, resume=True,
                               verbose=0)
    assert again == entries


def test_resume_without_checkpoint_is_an_error(images, tmp_path):
    folder = data.load_folder(images / "train")
    with pytest.raises(ValueError, match="no checkpoint"):
        train.train(tiny_model, folder, data.DataConfig(image_size=32), train.TrainConfig(epochs=1), tmp_path,
                    resume=True, verbose=0)


def test_label_smoothing_and_logits_detection():
    model = tiny_model()
    train.compile_model(model, train.TrainConfig(label_smoothing=0.2), steps_per_epoch=5)
    assert model.loss.get_config()["label_smoothing"] == pytest.approx(0.2)
    assert model.loss.get_config()["from_logits"] is True
    probabilities = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    assert train.outputs_probabilities(probabilities)


DISTRIBUTED = textwrap.dedent(
    """
    import json, sys
    from mobilecnn.compat import tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, {tests!r})
    from zoo_helpers import tiny_model
    from pipelines import data, train
    folder = data.load_folder({data!r})
    strategy = train.make_strategy({strategy!r})
    model, history = train.train(tiny_model, folder, data.DataConfig(image_size=32, batch_size=16),
                                 train.TrainConfig(epochs=1), {out!r}, strategy=strategy, verbose=0)
    print(json.dumps({{"replicas": strategy.num_replicas_in_sync, "loss": history[-1]["loss"],
                      "devices": len(tf.config.list_logical_devices("CPU"))}}))
    """
)


@pytest.mark.parametrize("strategy, replicas", [("mirrored", 2), ("multiworker", 1)])
def test_distribution_strategy_on_two_logical_cpus(images, tmp_path, strategy, replicas):
    # Logical devices must be configured before TensorFlow initialises them: a fresh process.
    script = DISTRIBUTED.format(tests=str(ROOT / "tests"), data=str(images / "train"), strategy=strategy,
                                out=str(tmp_path / "run"))
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}  # a one-machine run
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["devices"] == 2
    assert report["replicas"] == replicas
    assert np.isfinite(report["loss"])
    assert (tmp_path / "run" / "checkpoints" / "ckpt-1.index").exists()


def _cli(args):
    return CliRunner().invoke(train_command, args, catch_exceptions=False)


def test_train_command_writes_a_run_folder_and_guards_it(images, tmp_path):
    out = tmp_path / "run"
    base = ["mobilenet_v1_0.25", "--data", str(images), "--image-size", "32", "--epochs", "1", "--batch-size", "40",
            "--quiet"]
    args = [*base, "--out", str(out)]
    result = _cli(args)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "mobilenet_v1_0.25" and config["normalization"] is None
    results = json.loads((out / "results.json").read_text())
    assert 0 <= results["val_accuracy"] <= 1 and results["epochs"] == 1
    reloaded = keras.models.load_model(out / "model.keras", compile=False, safe_mode=True)
    assert reloaded.output_shape == (None, 10)

    again = _cli(args)
    assert again.exit_code == 1 and "not empty" in again.output
    changed = _cli([*base, "--lr", "0.5", "--resume", "--out", str(out)])
    assert changed.exit_code == 1 and "different settings (lr: run has 0.05, given 0.5)" in changed.output
    finished = _cli(["mobilenet_v1_0.25", "--data", str(images), "--resume", "--out", str(out), "--quiet"])
    assert finished.exit_code == 0, finished.output


@pytest.mark.parametrize(
    "layout, message",
    [
        ("missing", "data folder not found"),
        ("empty", "no class subfolders"),
        ("one_class", "only one class folder"),
        ("corrupt", "cannot be decoded"),
    ],
)
def test_train_command_rejects_bad_data_folders(tmp_path, layout, message):
    root = tmp_path / "data"
    if layout == "empty":
        root.mkdir()
    elif layout == "one_class":
        synthetic.write_image_folder(root, images_per_class=3, classes=("circle",))
    elif layout == "corrupt":
        synthetic.write_image_folder(root, images_per_class=3, classes=("circle", "square"))
        (root / "square" / "broken.png").write_bytes(b"\x89PNG broken")
    result = _cli(["mobilenet_v2_0.35", "--data", str(root), "--image-size", "32", "--epochs", "1",
                   "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 1
    assert message in result.output
    if layout == "corrupt":
        assert str(root / "square" / "broken.png") in result.output
    assert not (tmp_path / "run").exists(), "a run that failed before training must not block its rerun"


def test_a_run_that_fails_before_training_leaves_a_given_folder_as_it_was(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = _cli(["mobilenet_v2_0.35", "--data", "synthetic", "--val", str(tmp_path / "nope"), "--image-size", "32",
                   "--out", str(out), "--force", "--quiet"])
    assert result.exit_code == 1 and "data folder not found" in result.output
    # The generated synthetic/ set and config.json were written before --val failed; both are gone.
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("command", ["train", "qat", "prune"])
@pytest.mark.parametrize("model, message", [
    pytest.param("mobilenet_v3_larg", "MODEL 'mobilenet_v3_larg': not a model file and not a zoo name; did you mean "
                                      "mobilenet_v3_large_1.0", id="misspelt"),
    pytest.param("models/missing.keras", "model file not found: models/missing.keras", id="missing-file"),
])
def test_pipeline_commands_reject_an_unknown_model_before_making_a_run_folder(tmp_path, command, model, message):
    from pipelines import commands

    runner = CliRunner()
    result = runner.invoke(getattr(commands, f"{command}_command"),
                           [model, "--data", "synthetic", "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {message}"), result.output
    assert not (tmp_path / "run").exists()
