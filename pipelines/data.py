"""Image folders (one subfolder per class) to `tf.data` pipelines.

Determinism is by construction: the order and augmentation of epoch `e`
depend only on (seed, e, position), drawn with stateless random ops. A run
resumed at epoch `e` therefore sees exactly the batches an uninterrupted run
would have seen, and two runs with one seed see the same batches.

Every file is decoded once up front (in parallel, inside tf.data); files
that fail are reported by path, counted and left out, and loading stops if
more than `max_bad_fraction` of them are bad.
"""
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mobilecnn.base import NORMALIZATIONS
from mobilecnn.compat import tf

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
RESIZE_POLICIES = ("stretch", "crop", "pad")
AUGMENTATIONS = ("none", "flip", "crop_flip")


class DataError(ValueError):
    """A data folder cannot be used; the message names the path and what was expected."""


@dataclass(frozen=True)
class ImageFolder:
    """A scanned and verified image folder."""

    root: str
    class_names: tuple
    paths: tuple
    labels: tuple
    bad_paths: tuple = ()

    def __len__(self):
        return len(self.paths)

    @property
    def num_classes(self):
        return len(self.class_names)


@dataclass(frozen=True)
class DataConfig:
    """How images become model inputs.

    resize: "stretch" (to size, aspect ignored), "crop" (shorter side to
    size, centre crop) or "pad" (longer side to size, zero padding).
    augment: "none", "flip" (random horizontal flip) or "crop_flip" (reflect
    pad by size/8, random crop back to size, random flip).
    normalization: a key of mobilecnn.base.NORMALIZATIONS (the model card's
    `normalization`) or {"mean": [...], "std": [...]} in 0..255 units.
    """

    image_size: int = 32
    batch_size: int = 64
    resize: str = "stretch"
    augment: str = "crop_flip"
    normalization: object = "tf"
    cache: bool = True
    seed: int = 0
    shuffle_buffer: int = 50_000

    def __post_init__(self):
        if self.resize not in RESIZE_POLICIES:
            raise ValueError(f"resize must be one of {RESIZE_POLICIES}, got {self.resize!r}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {self.augment!r}")
        if not isinstance(self.image_size, int) or self.image_size < 8:
            raise ValueError(f"image_size must be an integer >= 8, got {self.image_size!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        mean_std(self.normalization)

    def to_dict(self):
        return asdict(self)


def mean_std(normalization):
    """(mean, std) float32 arrays in pixel units for a normalization key or dict."""
    if isinstance(normalization, str):
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {sorted(NORMALIZATIONS)} or a mean/std dict, got {normalization!r}")
        normalization = NORMALIZATIONS[normalization]
    try:
        mean = np.asarray(normalization["mean"], np.float32).reshape(-1)
        std = np.asarray(normalization["std"], np.float32).reshape(-1)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"normalization must have 'mean' and 'std', got {normalization!r}") from exc
    if mean.size not in (1, 3) or std.size not in (1, 3) or np.any(std <= 0):
        raise ValueError(f"normalization mean/std must have 1 or 3 entries and std > 0, got {normalization!r}")
    return mean, std


def scan(root, class_names=None):
    """Return (class_names, paths, labels) for ROOT/<class>/<image>; raise DataError if unusable."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"data folder not found: {root}")
    if not root.is_dir():
        raise DataError(f"data path is not a folder: {root} (expected ROOT/<class>/<image files>)")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if class_names is None:
        class_names = found
        if not class_names:
            raise DataError(f"no class subfolders in {root} (expected ROOT/<class>/<image files>)")
        if len(class_names) == 1:
            raise DataError(
                f"only one class folder ('{class_names[0]}') in {root}; classification needs at least 2 classes"
            )
    else:
        missing = [name for name in class_names if name not in found]
        if missing:
            raise DataError(f"{root} lacks class folders {missing} (the model was trained on {list(class_names)})")
    paths, labels, empty = [], [], []
    for label, name in enumerate(class_names):
        files = sorted(
            p for p in (root / name).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not files:
            empty.append(name)
        paths.extend(str(p) for p in files)
        labels.extend([label] * len(files))
    if empty:
        raise DataError(
            f"class folders without images in {root}: {empty} (image extensions: {', '.join(IMAGE_EXTENSIONS)})"
        )
    return tuple(class_names), paths, labels


def _decode(path):
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def find_bad(paths):
    """Indices of files that cannot be read or decoded as images."""
    indices = tf.data.Dataset.from_tensor_slices(tf.range(len(paths), dtype=tf.int64))
    files = tf.data.Dataset.from_tensor_slices(list(paths))
    ok = (
        tf.data.Dataset.zip((indices, files))
        .map(lambda i, p: (i, tf.shape(_decode(p))), num_parallel_calls=tf.data.AUTOTUNE)
        .ignore_errors()
        .map(lambda i, shape: i)
    )
    good = {int(i) for i in ok.as_numpy_iterator()}
    return [i for i in range(len(paths)) if i not in good]


def load_folder(root, class_names=None, max_bad_fraction=0.01, verify=True):
    """Scan and verify an image folder; bad files are logged, counted and dropped."""
    class_names, paths, labels = scan(root, class_names)
    bad = find_bad(paths) if verify else []
    for i in bad:
        log.warning("unreadable image skipped: %s", paths[i])
    if len(bad) > max_bad_fraction * len(paths):
        listed = ", ".join(paths[i] for i in bad[:10]) + (" ..." if len(bad) > 10 else "")
        raise DataError(
            f"{len(bad)} of {len(paths)} images in {root} cannot be decoded "
            f"(more than {max_bad_fraction:.1%} allowed): {listed}"
        )
    bad_set = set(bad)
    keep = [i for i in range(len(paths)) if i not in bad_set]
    return ImageFolder(
        root=str(root),
        class_names=class_names,
        paths=tuple(paths[i] for i in keep),
        labels=tuple(labels[i] for i in keep),
        bad_paths=tuple(paths[i] for i in bad),
    )


def resize(image, size, policy):
    """Resize a decoded uint8 image to size x size under `policy`; returns uint8."""
    image = tf.cast(image, tf.float32)
    if policy == "stretch":
        image = tf.image.resize(image, [size, size], antialias=True)
    elif policy == "crop":
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        scale = size / tf.reduce_min(shape)
        scaled = tf.cast(tf.math.ceil(shape * scale), tf.int32)
        image = tf.image.resize(image, scaled, antialias=True)
        image = tf.image.resize_with_crop_or_pad(image, size, size)
    else:
        image = tf.image.resize_with_pad(image, size, size, antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def augment(image, seed, kind):
    """Stateless augmentation of a uint8 image; `seed` is an int64 [2] tensor."""
    if kind == "none":
        return image
    if kind == "crop_flip":
        size = image.shape[0]
        pad = max(1, size // 8)
        padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
        image = tf.image.stateless_random_crop(padded, [size, size, 3], seed=seed)
    flip_seed = tf.random.experimental.stateless_fold_in(seed, 1)
    return tf.image.stateless_random_flip_left_right(image, seed=flip_seed)


def _normalize_fn(config, num_classes):
    mean, std = mean_std(config.normalization)

    def normalize(image, label):
        image = (tf.cast(image, tf.float32) - mean) / std
        return image, tf.one_hot(label, num_classes)

    return normalize


def _options():
    options = tf.data.Options()
    options.deterministic = True
    # Elements come from an in-memory list, not files: shard by element.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


def _images(folder, config):
    """(image, label) pairs in folder order, decoded and resized (cached if asked)."""
    ds = tf.data.Dataset.from_tensor_slices((list(folder.paths), np.asarray(folder.labels, np.int32)))
    ds = ds.map(
        lambda p, y: (resize(_decode(p), config.image_size, config.resize), y),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return ds.cache() if config.cache else ds


def effective_batch(folder, config):
    """The batch size used for training: at most the number of images."""
    if len(folder) < config.batch_size:
        log.warning("%s has %d images, fewer than batch size %d; using %d", folder.root, len(folder),
                    config.batch_size, len(folder))
    return min(config.batch_size, len(folder))


def steps_per_epoch(folder, config):
    return len(folder) // effective_batch(folder, config)


def train_dataset(folder, config, epochs, first_epoch=0):
    """Batches for epochs [first_epoch, epochs), one epoch after the other.

    Epoch e is shuffled with seed (config.seed, e) and element i of it is
    augmented with seed (config.seed, e * N + i), so any epoch can be
    reproduced on its own (that is what makes `--resume` exact).
    """
    if first_epoch >= epochs:
        raise ValueError(f"first_epoch {first_epoch} must be below epochs {epochs}")
    batch = effective_batch(folder, config)
    n = len(folder)
    base = _images(folder, config)
    normalize = _normalize_fn(config, folder.num_classes)

    def one_epoch(epoch):
        ds = base.shuffle(min(n, config.shuffle_buffer), seed=config.seed * 100_003 + epoch,
                          reshuffle_each_iteration=False)
        ds = ds.enumerate(start=epoch * n)

        def augmented(i, pair):
            image, label = pair
            seed = tf.stack([tf.constant(config.seed, tf.int64), i])
            return augment(image, seed, config.augment), label

        ds = ds.map(augmented, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.map(normalize, num_parallel_calls=tf.data.AUTOTUNE).batch(batch, drop_remainder=True)

    ds = one_epoch(first_epoch)
    for epoch in range(first_epoch + 1, epochs):
        ds = ds.concatenate(one_epoch(epoch))
    return ds.prefetch(tf.data.AUTOTUNE).with_options(_options())


def eval_dataset(folder, config):
    """Batches in folder order, no augmentation, last partial batch kept."""
    base = _images(folder, config)
    normalize = _normalize_fn(config, folder.num_classes)
    ds = base.map(normalize, num_parallel_calls=tf.data.AUTOTUNE).batch(config.batch_size)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(_options())


def calibration_images(folder, config, count):
    """Up to `count` normalized images (float32 NHWC) in a seeded random order, for BN statistics or calibration."""
    order = np.random.default_rng(config.seed).permutation(len(folder))[:count]
    subset = ImageFolder(folder.root, folder.class_names, tuple(folder.paths[i] for i in order),
                         tuple(folder.labels[i] for i in order))
    plain = DataConfig(**{**config.to_dict(), "cache": False})
    return np.concatenate([x for x, _ in eval_dataset(subset, plain).as_numpy_iterator()])
