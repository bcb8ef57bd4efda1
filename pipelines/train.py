"""The training loop shared by `train`, `qat` and `prune`: Keras `fit` plus run-folder bookkeeping.

What it adds to a plain `model.fit`: SGD/AdamW with a cosine schedule after a
linear warm-up, label smoothing, decoupled weight decay (not on BN or
biases), a checkpoint after every epoch, exact `--resume`, TensorBoard logs,
per-epoch history as JSON, throughput, and tf.distribute strategies.

Why resume is exact: the data of epoch e depends only on (seed, e) (see
pipelines.data), the checkpoint holds weights, optimizer slots and step
count, the epoch, and the state of the dropout RNGs (tf_keras is switched to
`tf.random.Generator`-backed layers, whose state is a checkpointed variable).
"""
import contextlib
import logging
import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mobilecnn.compat import keras, tf
from tensorflow.core.framework import summary_pb2

from . import data as data_lib
from .runs import HISTORY, read_json, write_json

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adamw")
STRATEGIES = ("none", "mirrored", "multiworker")
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    optimizer: str = "sgd"
    learning_rate: float = 0.05
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    min_learning_rate: float = 0.0
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    seed: int = 0
    deterministic: bool = False

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {self.epochs!r}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.weight_decay < 0 or self.warmup_epochs < 0:
            raise ValueError("weight_decay and warmup_epochs must be >= 0")

    def to_dict(self):
        return asdict(self)


@keras.utils.register_keras_serializable("mobilecnn_pipelines")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `peak` over `warmup_steps`, then cosine decay to `floor` at `total_steps`."""

    def __init__(self, peak, total_steps, warmup_steps=0, floor=0.0):
        self.peak = float(peak)
        self.total_steps = int(max(1, total_steps))
        self.warmup_steps = int(min(max(0, warmup_steps), self.total_steps))
        self.floor = float(floor)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = self.peak * (step + 1.0) / max(1, self.warmup_steps)
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        progress = tf.clip_by_value(progress, 0.0, 1.0)
        cosine = self.floor + 0.5 * (self.peak - self.floor) * (1.0 + tf.cos(math.pi * progress))
        return tf.where(step < self.warmup_steps, warm, cosine)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "floor": self.floor}


def make_optimizer(config, steps_per_epoch):
    schedule = WarmupCosine(
        config.learning_rate,
        total_steps=config.epochs * steps_per_epoch,
        warmup_steps=round(config.warmup_epochs * steps_per_epoch),
        floor=config.min_learning_rate,
    )
    decay = config.weight_decay or None
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(schedule, momentum=config.momentum, nesterov=True, weight_decay=decay)
    else:
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay)
    # Decaying BN scales/shifts and biases only fights the normalisation.
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return optimizer


def outputs_probabilities(model):
    """True when the model ends in a softmax (then the loss must not apply one)."""
    last = model.layers[-1]
    last = getattr(last, "layer", last)  # QAT/pruning wrappers
    if isinstance(last, keras.layers.Softmax):
        return True
    activation = getattr(last, "activation", None)
    return getattr(activation, "__name__", activation) == "softmax"


def set_bn_momentum(model, momentum):
    """Set every BatchNormalization's moving-average momentum (in place); returns the model.

    keras.applications' 0.999 (MobileNetV2/V3) averages over ~1,000 steps:
    with a high learning rate the weights move faster than that, and the
    inference-mode model lags far behind the training-mode one (on CIFAR-10,
    72 % training vs 16 % test accuracy after 8 epochs). Short runs want
    PyTorch's 0.9. Call before compiling.
    """
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum
    return model


def compile_model(model, config, steps_per_epoch):
    model.compile(
        optimizer=make_optimizer(config, steps_per_epoch),
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=not outputs_probabilities(model), label_smoothing=config.label_smoothing
        ),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    # Create the optimizer slots now, so a checkpoint restores them immediately (not deferred).
    model.optimizer.build(model.trainable_variables)
    return model


def make_strategy(name):
    """None, or a tf.distribute strategy over this machine's devices (or the TF_CONFIG cluster)."""
    if name in (None, "none"):
        return None
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")


def is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0
                                             and "chief" not in resolver.cluster_spec().as_dict())


class EpochLog(keras.callbacks.Callback):
    """Per-epoch history (metrics, learning rate, time, images/s) written to JSON, then a checkpoint.

    History is written before the checkpoint: if the run dies in between,
    resume truncates history to the checkpointed epoch and redoes the epoch.
    """

    def __init__(self, history_path, manager, epoch_var, images_per_epoch, previous):
        super().__init__()
        self.history_path = history_path
        self.manager = manager
        self.epoch_var = epoch_var
        self.images_per_epoch = images_per_epoch
        self.entries = list(previous)
        self._start = self._stop = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._stop = time.perf_counter(), None

    def on_test_begin(self, logs=None):
        if self._start is not None and self._stop is None:
            self._stop = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = (self._stop or time.perf_counter()) - self._start
        # The rate the schedule gives at the current step (a variable, mirrored under a strategy).
        lr = tf.convert_to_tensor(self.model.optimizer.learning_rate)
        entry = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()},
                 "learning_rate": float(lr), "train_seconds": seconds,
                 "images_per_second": self.images_per_epoch / seconds if seconds > 0 else None}
        self.entries.append(entry)
        if self.history_path is not None:
            write_json(self.history_path, self.entries)
        self.epoch_var.assign(epoch + 1)
        self.manager.save(checkpoint_number=epoch + 1)


class ScalarLog(keras.callbacks.Callback):
    """Per-epoch metrics as TensorBoard scalar events (train/ and validation/ runs).

    Written with the core `tf.summary.write` op and the "scalars" plugin
    metadata, which is what TensorBoard's own scalar summary records. This
    needs no `tensorboard` package at training time (tf.summary.scalar and
    keras.callbacks.TensorBoard do, and TensorFlow 2.21 no longer installs it).
    """

    def __init__(self, log_dir):
        super().__init__()
        self.log_dir = Path(log_dir)
        self._writers = {}
        self._metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))

    def _writer(self, split):
        if split not in self._writers:
            self._writers[split] = tf.summary.create_file_writer(str(self.log_dir / split))
        return self._writers[split]

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            split, tag = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            with self._writer(split).as_default():
                tf.summary.write(f"epoch_{tag}", tf.constant(float(value)), step=epoch + 1,
                                 metadata=self._metadata)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()


def _enable_exact_rng():
    # Dropout & co. created from now on draw from a tf.random.Generator, whose
    # state is a variable that the checkpoint can hold (legacy stateful random
    # ops keep theirs inside the kernel, out of reach of any checkpoint).
    keras.backend.experimental.enable_tf_random_generator()


def rng_generators(model):
    """The tf.random.Generator of every random layer, in layer order (Dropout, noise, ...), QAT/pruning wrapped ones too.

    Functional models do not checkpoint weightless layers, so the generators
    are added to the checkpoint explicitly. `_random_generator` is tf_keras'
    (2.x) BaseRandomLayer attribute; `_maybe_init` creates the generator now
    instead of at the first training step, so a restore finds it.
    """
    found = []
    for layer in model.submodules:
        rng = getattr(layer, "_random_generator", None)
        if rng is None or not isinstance(layer, keras.layers.Layer):
            continue
        rng._maybe_init()
        if getattr(rng, "_generator", None) is None:
            raise RuntimeError(f"layer {layer.name} uses legacy stateful random ops; resume would not be exact")
        found.append(rng._generator)
    return found


def has_checkpoint(run_dir):
    """Whether `run_dir` holds a checkpoint that `train(..., resume=True)` can continue from."""
    return tf.train.latest_checkpoint(str(Path(run_dir) / CHECKPOINTS)) is not None


def train(model_fn, train_folder, data_config, config, run_dir, *, val_folder=None, resume=False,
          strategy=None, callbacks=(), verbose=1):
    """Build the model with `model_fn()` (inside the strategy scope), fit it and return (model, history).

    `run_dir` receives checkpoints/, tensorboard/ and history.json. With
    `resume`, training continues after the last checkpointed epoch.
    """
    run_dir = Path(run_dir)
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    _enable_exact_rng()
    strategy = make_strategy(strategy) if isinstance(strategy, (str, type(None))) else strategy
    chief = strategy is None or is_chief(strategy)
    steps = data_lib.steps_per_epoch(train_folder, data_config)
    replicas = strategy.num_replicas_in_sync if strategy else 1
    batch = data_lib.effective_batch(train_folder, data_config)
    if batch % replicas:
        raise ValueError(f"batch size {batch} is not divisible by the {replicas} replicas of the strategy")

    scope = strategy.scope() if strategy else contextlib.nullcontext()
    with scope:
        model = model_fn()
        compile_model(model, config, steps)
        generators = rng_generators(model)
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, epoch=epoch_var, rng=generators)
    # Only the chief keeps checkpoints; other workers write to a throw-away folder (Keras' MWMS recipe).
    ckpt_dir = run_dir / CHECKPOINTS if chief else Path(tempfile.mkdtemp(prefix="mobilecnn-worker-ckpt-"))
    manager = tf.train.CheckpointManager(checkpoint, str(ckpt_dir), max_to_keep=2)

    history_path = run_dir / HISTORY if chief else None
    previous = []
    if resume:
        if manager.latest_checkpoint is None:
            raise ValueError(f"cannot resume: no checkpoint in {ckpt_dir}")
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        if history_path is not None and history_path.exists():
            previous = [e for e in read_json(history_path) if e["epoch"] <= int(epoch_var.numpy())]
        log.info("resuming %s at epoch %d of %d", run_dir, int(epoch_var.numpy()) + 1, config.epochs)
    first_epoch = int(epoch_var.numpy())
    if first_epoch >= config.epochs:
        log.info("%s already finished %d epochs; nothing to train", run_dir, config.epochs)
        return model, previous

    dataset = data_lib.train_dataset(train_folder, data_config, config.epochs, first_epoch)
    validation = data_lib.eval_dataset(val_folder, data_config) if val_folder is not None else None
    epoch_log = EpochLog(history_path, manager, epoch_var, steps * batch, previous)
    all_callbacks = [*callbacks, epoch_log]
    if chief:
        all_callbacks.insert(0, ScalarLog(run_dir / TENSORBOARD))
    model.fit(dataset, epochs=config.epochs, initial_epoch=first_epoch, steps_per_epoch=steps,
              validation_data=validation, callbacks=all_callbacks, verbose=verbose)
    return model, epoch_log.entries


def evaluate(model, folder, data_config):
    """Top-1 accuracy of `model` on an image folder (no augmentation)."""
    correct = total = 0
    for images, labels in data_lib.eval_dataset(folder, data_config):
        predicted = tf.argmax(model(images, training=False), axis=-1)
        correct += int(tf.reduce_sum(tf.cast(predicted == tf.argmax(labels, axis=-1), tf.int32)))
        total += int(labels.shape[0])
    return correct / total
