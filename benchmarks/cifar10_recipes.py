"""CIFAR-10 recipe benchmark: float, PTQ int8, QAT int8, 75 %-pruned + PQAT int8, and training throughput.

Not part of CI (hours of CPU). Usage, from the project root:

    flock /tmp/tf.lock .venv/bin/python -m benchmarks.cifar10_recipes --recipe mobilenet_v2 \
        --data ../shared/datasets/cifar10 --out runs/cifar10/mobilenet_v2

    # a short smoke version (few epochs, a subset of the images): the figures are not the recipe's
    ... --epochs 1 --limit 5000 --fine-tune-epochs 1

    # some phases only (ptq, qat and prune need the float phase's model under OUT)
    ... --phases throughput

Targets (docs/pipelines.md): float top-1 >= 80 % in <= 45 min of training;
QAT int8 within 0.5 points of float; PTQ int8 within 1.5; pruned 75 % + PQAT
int8 within 1.5 with >= 74 % zeros in the pruned layers; training images/s
>= 0.95x a plain `model.fit` of the same model and data (the medians of
every timed epoch of runs taken in the order THROUGHPUT_ORDER).

Writes OUT/results.json, and the run folders of every phase under OUT. A rerun reuses finished phases'
figures, and a phase killed mid-way continues after its last checkpointed epoch.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mobilecnn.compat import keras
from mobilecnn.registry import get_card
from pipelines import data, prune, qat, recipes, runs, train


def _subset(folder, limit, seed):
    if not limit or limit >= len(folder):
        return folder
    order = np.sort(np.random.default_rng(seed).permutation(len(folder))[:limit])
    return data.ImageFolder(folder.root, folder.class_names, tuple(folder.paths[i] for i in order),
                            tuple(folder.labels[i] for i in order))


def int8_scores(tflite, folder, data_config, reference=None):
    """{"int8_top1"} of a .tflite model on an image folder, one image at a time through export.Runner (XNNPACK).

    With `reference` (the QAT Keras model the file was converted from), also
    its top-1 and the fraction of images on which the two predict the same
    class: the int8-file-equals-QAT-model check, on a trained model.
    """
    from export import Runner

    runner = Runner(tflite)
    hits = reference_hits = same = total = 0
    for images, labels in data.eval_dataset(folder, data_config).as_numpy_iterator():
        truth = labels.argmax(1)
        got = np.array([runner.run(image[None]).argmax() for image in images])
        hits += int((got == truth).sum())
        if reference is not None:
            expected = reference(images, training=False).numpy().argmax(1)
            reference_hits += int((expected == truth).sum())
            same += int((expected == got).sum())
        total += len(truth)
    scores = {"int8_top1": hits / total}
    if reference is not None:
        scores.update(keras_top1=reference_hits / total, int8_keras_agreement=same / total)
    return scores


def _prefixed(prefix, scores):
    return {f"{prefix}_{key}": value for key, value in scores.items()}


def plain_fit_rates(model_fn, folder, data_config, config):
    """Images/s of each epoch but the first (tracing) of a bare `model.fit`: same model, data and optimizer as the
    loop, no callbacks but a timer."""
    model = model_fn()
    steps = data.steps_per_epoch(folder, data_config)
    train.compile_model(model, config, steps)
    dataset = data.train_dataset(folder, data_config, config.epochs)
    timer = _EpochTimer()
    model.fit(dataset, epochs=config.epochs, steps_per_epoch=steps, callbacks=[timer], verbose=0)
    return [steps * data.effective_batch(folder, data_config) / seconds for seconds in timer.seconds[1:]]


# Loop and plain fit alternate A B B A: a drift of the machine's speed over the phase (and whatever the first
# training run in a process pays) falls on both alike. One epoch against one epoch, in sequence, moved the ratio by
# 8 points on the 2026-11-30 Xeon VM.
THROUGHPUT_ORDER = ("loop", "plain", "plain", "loop")
THROUGHPUT_EPOCHS = 3  # per run; the first is not timed


def throughput_figures(rates):
    """{"loop": [images/s, ...], "plain": [...]} (every timed epoch) -> the medians and their ratio."""
    loop, plain = float(np.median(rates["loop"])), float(np.median(rates["plain"]))
    return {"loop_images_per_second": loop, "plain_fit_images_per_second": plain, "throughput_ratio": loop / plain,
            "throughput_epoch_rates": rates}


class _EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def _figures_path(out, name):
    return out / name / "results.json"


def _phase(out, name, work):
    """Run `work()` -> figures once: OUT/NAME/results.json keeps them, and a rerun reuses them (delete the
    folder to redo a phase)."""
    done = _figures_path(out, name)
    if done.exists():
        print(f"reusing the {name} phase's figures from {done}", flush=True)
        return runs.read_json(done)
    figures = work()
    done.parent.mkdir(parents=True, exist_ok=True)
    runs.write_json(done, figures)
    return figures


PHASES = ("float", "ptq", "qat", "prune", "throughput")
NEEDS_FLOAT = ("ptq", "qat", "prune")


def check_phases(phases, out):
    """Refuse a phase list that would start from a float model neither run now nor found under OUT."""
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        raise ValueError(f"--phases: unknown phase(s) {', '.join(unknown)}; expected some of {', '.join(PHASES)}")
    float_model = Path(out) / "float" / "model.keras"
    if "float" not in phases and not float_model.exists() and set(phases) & set(NEEDS_FLOAT):
        raise ValueError(f"--phases: {', '.join(p for p in phases if p in NEEDS_FLOAT)} start(s) from the float "
                         f"model, and {float_model} does not exist; add the float phase")


def run(recipe, data_root, out, epochs=None, fine_tune_epochs=None, limit=None, seed=0, phases=PHASES):
    from export import align_biases, convert

    check_phases(phases, out)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    normalization = get_card(recipe.model).normalization
    train_folder = _subset(data.load_folder(Path(data_root) / "train"), limit, seed)
    test_folder = data.load_folder(Path(data_root) / "test", class_names=train_folder.class_names)
    data_config = recipe.data_config(normalization, seed)
    shape = (recipe.image_size, recipe.image_size, 3)
    classes = train_folder.num_classes
    results = {"recipe": recipe.to_dict(), "epochs": epochs or recipe.epochs, "train_images": len(train_folder),
               "test_images": len(test_folder), "command": " ".join(sys.argv)}
    float_path = out / "float" / "model.keras"
    calibration = data.calibration_images(train_folder, recipe.data_config(normalization, seed + 1), 200)
    ft = fine_tune_epochs

    def fit(model_fn, config, run_dir, **kwargs):
        # A phase killed mid-way (the session ended, the machine went away) continues after its last finished
        # epoch instead of starting over and overwriting its checkpoints.
        return train.train(model_fn, train_folder, data_config, config, run_dir,
                           resume=train.has_checkpoint(run_dir), verbose=2, **kwargs)

    def build():
        return train.set_bn_momentum(runs.resolve_model(recipe.model, shape, classes), recipe.bn_momentum)

    def float_phase():
        start = time.perf_counter()
        resumed = train.has_checkpoint(out / "float")
        model, history = fit(build, recipe.train_config(seed, epochs), out / "float", val_folder=test_folder)
        runs.save_keras(model, float_path)
        return {"float_train_minutes": sum(e["train_seconds"] for e in history) / 60,
                # wall time of this invocation only; train minutes cover every epoch, resumed or not
                "float_wall_minutes": (time.perf_counter() - start) / 60, "float_resumed": resumed,
                "float_top1": train.evaluate(model, test_folder, data_config),
                "train_images_per_second": history[-1]["images_per_second"]}

    def ptq_phase():
        tflite = convert(runs.load_model_file(float_path), "int8", io="int8", representative=calibration).tflite
        return _prefixed("ptq", int8_scores(tflite, test_folder, data_config))

    def qat_phase():
        qat_model, _ = fit(lambda: qat.quantize_model(runs.load_model_file(float_path), calibration=calibration),
                           recipe.fine_tune_config(ft or recipe.qat_epochs, seed), out / "qat")
        tflite = convert(qat_model, "int8", io="int8").tflite
        align_biases(qat_model, tflite)
        qat.save_qat(qat_model, out / "qat" / "qat_model.h5", overwrite=True)
        return _prefixed("qat", int8_scores(tflite, test_folder, data_config, reference=qat_model))

    def prune_phase():
        prune_epochs = ft or recipe.prune_epochs
        total = data.steps_per_epoch(train_folder, data_config) * prune_epochs
        pruned, _ = fit(lambda: prune.prune_model(runs.load_model_file(float_path), recipe.prune_config(), total),
                        recipe.prune_train_config(prune_epochs, seed), out / "prune", callbacks=prune.callbacks())
        names = prune.pruned_layer_names(pruned)
        stripped = prune.strip(pruned)
        figures = {"pruned_float_top1": train.evaluate(stripped, test_folder, data_config)}
        pqat, _ = fit(lambda: prune.pqat_model(stripped, calibration=calibration),
                      recipe.fine_tune_config(ft or recipe.pqat_epochs, seed), out / "pqat")
        report = prune.sparsity_report(pqat, names)
        runs.write_json(out / "pqat_sparsity.json", report)
        figures["pqat_zeros_in_pruned_layers"] = report["overall"]["zeros"]
        figures["pqat_min_layer_zeros"] = min(v["zeros"] for k, v in report.items() if k != "overall")
        tflite = convert(pqat, "int8", io="int8").tflite
        align_biases(pqat, tflite)
        qat.save_qat(pqat, out / "pqat" / "pqat_model.h5", overwrite=True)
        figures.update(_prefixed("pqat", int8_scores(tflite, test_folder, data_config, reference=pqat)))
        return figures

    def throughput_phase():
        # Our loop (checkpoint, history and TensorBoard scalars every epoch) against a bare model.fit of the same
        # model, data and optimizer, on the whole training set; the loop's run folders are scratch.
        config = recipe.train_config(seed, epochs=THROUGHPUT_EPOCHS)
        rates = {"loop": [], "plain": []}
        for kind in THROUGHPUT_ORDER:
            if kind == "plain":
                rates["plain"] += plain_fit_rates(build, train_folder, data_config, config)
                continue
            with tempfile.TemporaryDirectory(dir=out) as scratch:
                _, history = train.train(build, train_folder, data_config, config, scratch, verbose=0)
            rates["loop"] += [entry["images_per_second"] for entry in history[1:]]
        return throughput_figures(rates)

    work = {"float": float_phase, "ptq": ptq_phase, "qat": qat_phase, "prune": prune_phase,
            "throughput": throughput_phase}
    for name in PHASES:
        if name in phases:
            results.update(_phase(out, name, work[name]))
        elif _figures_path(out, name).exists():  # run earlier: OUT/results.json keeps every phase's figures
            results.update(runs.read_json(_figures_path(out, name)))
        runs.write_json(out / "results.json", results)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=sorted(recipes.RECIPES), required=True)
    parser.add_argument("--data", default="../shared/datasets/cifar10")
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's float epochs (smoke runs)")
    parser.add_argument("--fine-tune-epochs", type=int, default=None, help="override QAT/prune/PQAT epochs")
    parser.add_argument("--limit", type=int, default=None, help="train on a random subset of this many images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--phases", default=",".join(PHASES),
                        help=f"comma-separated subset of {','.join(PHASES)} (default: all, in that order)")
    args = parser.parse_args(argv)
    if not (Path(args.data) / "train").is_dir():
        parser.error(f"{args.data}/train not found: CIFAR-10 image folders are expected (see ../shared/README.md)")
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    try:
        check_phases(phases, args.out)
    except ValueError as error:
        parser.error(str(error))
    results = run(recipes.get_recipe(args.recipe), args.data, args.out, args.epochs, args.fine_tune_epochs,
                  args.limit, args.seed, phases)
    print(json.dumps(results, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
