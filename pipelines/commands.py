"""`mobilecnn train`, `mobilecnn qat` and `mobilecnn prune` (click command objects; mobilecnn/cli.py registers them).

Each command writes a run folder (see pipelines.runs) and can be resumed
with `--resume --out RUN`, which continues from the last finished epoch of
the phase it was in, with the settings saved in RUN/config.json.
"""
import contextlib
import functools
import logging
from pathlib import Path

import click
from click.core import ParameterSource

from . import runs


_RUN_FLAGS = ("out", "resume", "force", "quiet")
# Enough images for stable activation ranges (the mean of per-batch extremes), few enough to take seconds.
QAT_CALIBRATION_IMAGES = 256


def _options(default_lr):
    """Options shared by the three commands."""

    def decorate(command):
        options = [
            click.argument("model"),
            click.option("--data", required=True,
                         help="Image folder (class per subfolder); a folder with train/ and test/ (or val/) "
                              "subfolders; or 'synthetic' for the embedded generated demo set."),
            click.option("--val", "val_data", default=None, help="Validation image folder (default: DATA/test or DATA/val)."),
            click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True),
            click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder to write."),
            click.option("--resume", is_flag=True, help="Continue the run in --out after its last saved epoch."),
            click.option("--force", is_flag=True, help="Overwrite a non-empty --out folder."),
            click.option("--image-size", type=click.IntRange(min=8), default=None,
                         help="Input size in px (default: the model file's input, or the card's default size)."),
            click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True),
            click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=default_lr, show_default=True,
                         help="Peak learning rate (after warm-up)."),
            click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), default="sgd", show_default=True),
            click.option("--warmup-epochs", type=click.FloatRange(min=0), default=1.0, show_default=True),
            click.option("--weight-decay", type=click.FloatRange(min=0), default=4e-5, show_default=True),
            click.option("--label-smoothing", type=click.FloatRange(0, 1, max_open=True), default=0.1,
                         show_default=True),
            click.option("--resize", type=click.Choice(["stretch", "crop", "pad"]), default="stretch",
                         show_default=True),
            click.option("--augment", type=click.Choice(["none", "flip", "crop_flip"]), default="crop_flip",
                         show_default=True),
            click.option("--normalization", default=None,
                         help="tf | torch | lite (default: the model card's; 'tf' for model files)."),
            click.option("--no-cache", is_flag=True, help="Decode images every epoch instead of caching them."),
            click.option("--max-bad", type=click.FloatRange(0, 1), default=0.01, show_default=True,
                         help="Largest fraction of unreadable images tolerated (they are skipped and listed)."),
            click.option("--seed", type=int, default=0, show_default=True),
            click.option("--deterministic", is_flag=True, help="Deterministic TF ops (bit-exact reruns and resumes)."),
            click.option("--strategy", type=click.Choice(["none", "mirrored", "multiworker"]), default="none",
                         show_default=True, help="tf.distribute strategy (multiworker reads TF_CONFIG)."),
            click.option("--quiet", is_flag=True, help="No progress bar."),
        ]
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def _errors(body):
    """Turn the pipelines' expected errors into a one-line CLI error (exit code 1)."""

    @functools.wraps(body)
    def wrapper(*args, **kwargs):
        from .data import DataError
        from .prune import SparsityError
        from .qat import QATError

        try:
            return body(*args, **kwargs)
        except (DataError, runs.RunError, QATError, SparsityError, ValueError, FileNotFoundError,
                FileExistsError) as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


def _start(ctx, command, params):
    """Create or reopen the run folder; return (run_dir, settings)."""
    settings = {k: v for k, v in params.items() if k not in _RUN_FLAGS}
    if params["resume"]:
        given = {k: v for k, v in settings.items() if ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE}
        given["command"] = command
        return runs.prepare(params["out"], given, resume=True)
    return runs.prepare(params["out"], {"command": command, **settings}, force=params["force"])


def _folders(settings, run_dir):
    """(train ImageFolder, val ImageFolder or None) from the --data/--val settings."""
    from . import data, synthetic

    source = settings["data"]
    if source == "synthetic":
        root = Path(run_dir) / "synthetic"
        size = settings["image_size"] or 32
        for split, seed, count in (("train", settings["seed"], 100), ("test", settings["seed"] + 1, 20)):
            if not (root / split).exists():
                synthetic.write_image_folder(root / split, images_per_class=count, size=size, seed=seed)
        source = str(root)
    root = Path(source)
    train_root, val_root = root, settings["val_data"]
    if (root / "train").is_dir():
        train_root = root / "train"
        if val_root is None:
            val_root = next((str(root / s) for s in ("test", "val") if (root / s).is_dir()), None)
    train = data.load_folder(train_root, max_bad_fraction=settings["max_bad"])
    val = (data.load_folder(val_root, class_names=train.class_names, max_bad_fraction=settings["max_bad"])
           if val_root else None)
    return train, val


def _data_config(settings, image_size):
    from .data import DataConfig

    normalization = settings["normalization"] or runs.normalization_for(settings["model"]) or "tf"
    return DataConfig(image_size=image_size, batch_size=settings["batch_size"], resize=settings["resize"],
                      augment=settings["augment"], normalization=normalization, cache=not settings["no_cache"],
                      seed=settings["seed"])


def _train_config(settings, epochs=None, lr=None):
    from .train import TrainConfig

    return TrainConfig(epochs=epochs or settings["epochs"], optimizer=settings["optimizer"],
                       learning_rate=lr or settings["lr"], warmup_epochs=settings["warmup_epochs"],
                       weight_decay=settings["weight_decay"], label_smoothing=settings["label_smoothing"],
                       seed=settings["seed"], deterministic=settings["deterministic"])


def _image_size(settings):
    """The input size: --image-size, else the model file's, else the model card's default."""
    if settings["image_size"]:
        return settings["image_size"]
    model = settings["model"]
    if runs.is_model_file(model):
        return int(runs.load_model_file(model).inputs[0].shape[1])
    from mobilecnn.registry import get_card

    return get_card(model).default_size


def _prepare(ctx, command, params):
    runs.check_model_spec(params["model"])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    # A resumed run's folder holds the user's work: nothing in it is removed on failure.
    guard = contextlib.nullcontext() if params["resume"] else runs.undone_on_error(params["out"])
    with guard:
        run_dir, settings = _start(ctx, command, params)
        train, val = _folders(settings, run_dir)
        size = _image_size(settings)
    data_config = _data_config(settings, size)
    return run_dir, settings, train, val, data_config, (size, size, 3)


def _fit(model_fn, phase_dir, settings, train, val, data_config, params, callbacks=(), epochs=None, lr=None):
    from .train import train as train_loop

    phase_dir.mkdir(parents=True, exist_ok=True)
    resume = params["resume"] and (phase_dir / "checkpoints").is_dir()
    model, history = train_loop(model_fn, train, data_config, _train_config(settings, epochs, lr), phase_dir,
                                val_folder=val, resume=resume, strategy=settings["strategy"], callbacks=callbacks,
                                verbose=0 if params["quiet"] else 1)
    return model, history


def _calibration(train, data_config):
    """Training images (no augmentation) that QAT's fake-quant ranges start from."""
    from .data import calibration_images

    return calibration_images(train, data_config, QAT_CALIBRATION_IMAGES)


def _score(model, val, data_config):
    from .train import evaluate

    return evaluate(model, val, data_config) if val is not None else None


def _report(run_dir, results):
    runs.write_json(Path(run_dir) / "results.json", results)
    click.echo(f"run folder: {run_dir}")
    for key, value in results.items():
        if not isinstance(value, dict):
            click.echo(f"  {key}: {value}")


@click.command("train")
@_options(default_lr=0.05)
@click.pass_context
@_errors
def train_command(ctx, **params):
    """Train MODEL (zoo name or .keras/.h5 file) on --data; writes RUN/model.keras."""
    run_dir, settings, train, val, data_config, shape = _prepare(ctx, "train", params)
    model, history = _fit(lambda: runs.resolve_model(settings["model"], shape, train.num_classes), run_dir,
                          settings, train, val, data_config, params)
    path = runs.save_keras(model, run_dir / "model.keras")
    _report(run_dir, {"model": str(path), "classes": list(train.class_names), "val_accuracy":
                      _score(model, val, data_config), "bad_images": list(train.bad_paths), "epochs": len(history)})


@click.command("qat")
@_options(default_lr=0.005)
@click.pass_context
@_errors
def qat_command(ctx, **params):
    """Quantization-aware fine-tuning of MODEL; writes RUN/qat_model.h5 (reload with pipelines.qat.load_qat)."""
    from . import qat

    run_dir, settings, train, val, data_config, shape = _prepare(ctx, "qat", params)
    float_model = runs.resolve_model(settings["model"], shape, train.num_classes)
    qat.check_quantizable(float_model)
    float_accuracy = _score(float_model, val, data_config)
    images = _calibration(train, data_config)
    model, history = _fit(lambda: qat.quantize_model(runs.resolve_model(settings["model"], shape, train.num_classes),
                                                     calibration=images),
                          run_dir, settings, train, val, data_config, params)
    path = qat.save_qat(model, run_dir / "qat_model.h5", overwrite=True)
    _report(run_dir, {"model": str(path), "classes": list(train.class_names), "float_val_accuracy": float_accuracy,
                      "qat_val_accuracy": _score(model, val, data_config), "epochs": len(history)})


@click.command("prune")
@_options(default_lr=0.01)
@click.option("--sparsity", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.75,
              show_default=True, help="Target fraction of zeros in the pruned layers.")
@click.option("--schedule", type=click.Choice(["polynomial", "constant"]), default="polynomial", show_default=True)
@click.option("--m-by-n", default=None, help="Structured sparsity, e.g. 2:4 (layers with Cin % n != 0 are skipped).")
@click.option("--policy", type=click.Choice(["none", "xnnpack"]), default="none", show_default=True,
              help="xnnpack: prune only what XNNPACK's sparse path uses (needs a symmetric-padding model).")
@click.option("--min-weights", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Layers with fewer kernel weights stay dense.")
@click.option("--pqat-epochs", type=click.IntRange(min=0), default=0, show_default=True,
              help="Then pruning-preserving QAT for this many epochs (RUN/pqat_model.h5).")
@click.option("--clusters", type=click.IntRange(min=0), default=0, show_default=True,
              help="Then cluster the pruned weights (sparsity kept) into this many centroids per layer.")
@click.pass_context
@_errors
def prune_command(ctx, **params):
    """Prune MODEL to --sparsity; writes RUN/pruned.keras and RUN/sparsity.json (exit 1 below target)."""
    from . import cluster, prune, qat

    run_dir, settings, train, val, data_config, shape = _prepare(ctx, "prune", params)
    m_by_n = prune.parse_m_by_n(settings["m_by_n"]) if settings["m_by_n"] else None
    config = prune.PruneConfig(target=settings["sparsity"], schedule=settings["schedule"], m_by_n=m_by_n,
                               policy=None if settings["policy"] == "none" else settings["policy"],
                               min_weights=settings["min_weights"])
    from .data import steps_per_epoch

    total_steps = steps_per_epoch(train, data_config) * settings["epochs"]
    results = {"classes": list(train.class_names), "prune": config.to_dict()}

    pruned_path = run_dir / "pruned.keras"
    if not pruned_path.exists():
        model, _ = _fit(lambda: prune.prune_model(runs.resolve_model(settings["model"], shape, train.num_classes),
                                                  config, total_steps),
                        run_dir / "prune", settings, train, val, data_config, params, callbacks=prune.callbacks())
        names = prune.pruned_layer_names(model)
        stripped = prune.strip(model)
        report = prune.sparsity_report(stripped, names, m_by_n)
        runs.write_json(run_dir / "sparsity.json", report)
        prune.check_sparsity(report, config.effective_target)
        runs.save_keras(stripped, pruned_path)
    stripped = runs.load_model_file(pruned_path)
    report = runs.read_json(run_dir / "sparsity.json")
    names = [n for n in report if n != "overall"]
    results.update(model=str(pruned_path), sparsity=report["overall"]["zeros"],
                   pruned_val_accuracy=_score(stripped, val, data_config))

    if settings["clusters"]:
        clustered_path = run_dir / "clustered.keras"
        if not clustered_path.exists():
            model, _ = _fit(lambda: cluster.cluster_model(runs.load_model_file(pruned_path), settings["clusters"],
                                                          preserve_sparsity=True, names=names),
                            run_dir / "cluster", settings, train, val, data_config, params,
                            epochs=settings["pqat_epochs"] or 1)
            runs.save_keras(cluster.strip(model), clustered_path)
        stripped = runs.load_model_file(clustered_path)
        results.update(clustered_model=str(clustered_path), clusters=cluster.cluster_report(stripped, names))

    if settings["pqat_epochs"]:
        base_path = run_dir / ("clustered.keras" if settings["clusters"] else "pruned.keras")

        images = _calibration(train, data_config)

        def build_pqat():
            base = runs.load_model_file(base_path)
            if settings["clusters"]:
                return cluster.cqat_model(base, preserve_sparsity=True, calibration=images)
            return prune.pqat_model(base, calibration=images)

        model, _ = _fit(build_pqat, run_dir / "pqat", settings, train, val, data_config, params,
                        epochs=settings["pqat_epochs"], lr=settings["lr"] / 2)
        path = qat.save_qat(model, run_dir / "pqat_model.h5", overwrite=True)
        pqat_report = prune.sparsity_report(model, names, m_by_n)
        runs.write_json(run_dir / "pqat_sparsity.json", pqat_report)
        results.update(pqat_model=str(path), pqat_sparsity=pqat_report["overall"]["zeros"],
                       pqat_val_accuracy=_score(model, val, data_config))
        _report(run_dir, results)
        prune.check_sparsity(pqat_report, config.effective_target, tolerance=0.01)
        return
    _report(run_dir, results)
