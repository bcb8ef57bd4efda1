"""CIFAR-10 recipe benchmark: float, PTQ int8, QAT int8, 75 %-pruned + PQAT int8, and training throughput.

Not part of CI (hours of CPU). Usage, from the project root:

    flock /tmp/tf.lock .venv/bin/python -m benchmarks.cifar10_recipes --recipe mobilenet_v2 \
        --data ../shared/datasets/cifar10 --out runs/cifar10/mobilenet_v2

    # a short smoke version (few epochs, a subset of the images): the figures are not the recipe's
    ... --epochs 1 --limit 5000 --fine-tune-epochs 1

Targets (docs/pipelines.md): float top-1 >= 80 % in <= 45 min of training;
QAT int8 within 0.5 points of float; PTQ int8 within 1.5; pruned 75 % + PQAT
int8 within 1.5 with >= 74 % zeros in the pruned layers; training images/s
>= 0.95x a plain `model.fit` of the same model and data.

Writes OUT/results.json, and the run folders of every phase under OUT.
"""
import argparse
import json
import sys
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


def tflite_accuracy(tflite, folder, data_config):
    """Top-1 of a .tflite model on an image folder, one image at a time through export.Runner (XNNPACK)."""
    from export import Runner

    runner = Runner(tflite)
    correct = total = 0
    for images, labels in data.eval_dataset(folder, data_config).as_numpy_iterator():
        for image, label in zip(images, labels):
            correct += int(runner.run(image[None]).argmax() == label.argmax())
            total += 1
    return correct / total


def plain_fit_throughput(model_fn, folder, data_config, config, epochs=2):
    """Images/s of the last epoch of a bare `model.fit` (same model, data, optimizer; no callbacks)."""
    model = model_fn()
    steps = data.steps_per_epoch(folder, data_config)
    train.compile_model(model, config, steps)
    dataset = data.train_dataset(folder, data_config, epochs)
    timer = _EpochTimer()
    model.fit(dataset, epochs=epochs, steps_per_epoch=steps, callbacks=[timer], verbose=0)
    return steps * data.effective_batch(folder, data_config) / timer.seconds[-1]


class _EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def run(recipe, data_root, out, epochs=None, fine_tune_epochs=None, limit=None, seed=0):
    from export import convert

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

    def build():
        return runs.resolve_model(recipe.model, shape, classes)

    start = time.perf_counter()
    model, history = train.train(build, train_folder, data_config, recipe.train_config(seed, epochs), out / "float",
                                 val_folder=test_folder, verbose=2)
    results["float_train_minutes"] = sum(e["train_seconds"] for e in history) / 60
    results["float_wall_minutes"] = (time.perf_counter() - start) / 60
    results["float_top1"] = train.evaluate(model, test_folder, data_config)
    results["train_images_per_second"] = history[-1]["images_per_second"]
    runs.save_keras(model, out / "float" / "model.keras")

    calibration = data.calibration_images(train_folder, recipe.data_config(normalization, seed + 1), 200)
    results["ptq_int8_top1"] = tflite_accuracy(convert(model, "int8", io="int8", representative=calibration).tflite,
                                               test_folder, data_config)

    ft = fine_tune_epochs
    qat_model, _ = train.train(lambda: qat.quantize_model(runs.load_model_file(out / "float" / "model.keras")),
                               train_folder, data_config, recipe.fine_tune_config(ft or recipe.qat_epochs, seed),
                               out / "qat", verbose=2)
    results["qat_int8_top1"] = tflite_accuracy(convert(qat_model, "int8", io="int8").tflite, test_folder, data_config)

    prune_config = recipe.prune_config()
    prune_epochs = ft or recipe.prune_epochs
    total = data.steps_per_epoch(train_folder, data_config) * prune_epochs
    pruned, _ = train.train(lambda: prune.prune_model(runs.load_model_file(out / "float" / "model.keras"),
                                                      prune_config, total),
                            train_folder, data_config, recipe.fine_tune_config(prune_epochs, seed), out / "prune",
                            callbacks=prune.callbacks(), verbose=2)
    names = prune.pruned_layer_names(pruned)
    stripped = prune.strip(pruned)
    results["pruned_float_top1"] = train.evaluate(stripped, test_folder, data_config)
    pqat, _ = train.train(lambda: prune.pqat_model(stripped), train_folder, data_config,
                          recipe.fine_tune_config(ft or recipe.pqat_epochs, seed), out / "pqat", verbose=2)
    report = prune.sparsity_report(pqat, names)
    runs.write_json(out / "pqat_sparsity.json", report)
    results["pqat_zeros_in_pruned_layers"] = report["overall"]["zeros"]
    results["pqat_min_layer_zeros"] = min(v["zeros"] for k, v in report.items() if k != "overall")
    results["pqat_int8_top1"] = tflite_accuracy(convert(pqat, "int8", io="int8").tflite, test_folder, data_config)

    # Throughput: our loop (last float epoch) against a bare model.fit on the same data and model.
    subset = _subset(train_folder, min(len(train_folder), 10_000), seed)
    short = recipe.train_config(seed, epochs=2)
    ours, ours_history = train.train(build, subset, data_config, short, out / "throughput", verbose=0)
    results["loop_images_per_second"] = ours_history[-1]["images_per_second"]
    results["plain_fit_images_per_second"] = plain_fit_throughput(build, subset, data_config, short)
    results["throughput_ratio"] = results["loop_images_per_second"] / results["plain_fit_images_per_second"]
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
    args = parser.parse_args(argv)
    if not (Path(args.data) / "train").is_dir():
        parser.error(f"{args.data}/train not found: CIFAR-10 image folders are expected (see ../shared/README.md)")
    results = run(recipes.get_recipe(args.recipe), args.data, args.out, args.epochs, args.fine_tune_epochs,
                  args.limit, args.seed)
    print(json.dumps(results, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
