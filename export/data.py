"""Images in, normalized model inputs out: calibration, verification and evaluation data.

Preprocessing is the model card's: decode (JPEG/PNG/BMP/GIF via tf.io), crop
the central square, resize (bilinear) to the model's input size, then
`(pixel - mean) / std` with the card's normalization in 0..255 pixel units.
"""
import os

import numpy as np

from .errors import ExportError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
SYNTHETIC_SEED = 0


# -- normalization -------------------------------------------------------
def resolve_normalization(card_name=None, *, normalization=None, mean=None, std=None):
    """{"mean", "std", "source"} for the model input, or None when nothing says what it is.

    Order: explicit `mean`/`std`, then an explicit NORMALIZATIONS key, then the card's.
    """
    from mobilecnn.base import NORMALIZATIONS

    if (mean is None) != (std is None):
        raise ExportError("--mean and --std go together: pass both or neither")
    if mean is not None:
        if normalization is not None:
            raise ExportError("pass either --normalization or --mean/--std, not both")
        mean, std = _per_channel("--mean", mean), _per_channel("--std", std)
        if any(s <= 0 for s in std):
            raise ExportError(f"--std must be positive, got {std}")
        return {"mean": mean, "std": std, "source": "--mean/--std"}
    if normalization is not None:
        if normalization not in NORMALIZATIONS:
            raise ExportError(f"--normalization {normalization}: expected one of {sorted(NORMALIZATIONS)}")
        return named_normalization(normalization, f"--normalization {normalization}")
    if card_name is not None:
        from mobilecnn.registry import get_card

        key = get_card(card_name).normalization
        return named_normalization(key, f"model card {card_name} ({key})")
    return None


def named_normalization(key, source):
    from mobilecnn.base import NORMALIZATIONS

    entry = NORMALIZATIONS[key]
    return {"mean": [float(v) for v in entry["mean"]], "std": [float(v) for v in entry["std"]], "source": source}


def _per_channel(flag, values):
    values = [float(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise ExportError(f"{flag} takes 1 or 3 values, got {len(values)}")
    return values


def normalize(pixels, norm):
    return ((pixels - np.float32(norm["mean"])) / np.float32(norm["std"])).astype(np.float32)


# -- image folders -------------------------------------------------------
def list_images(folder, flag):
    """Image files under `folder` (recursive, sorted); an error naming `flag` when there are none."""
    if not os.path.isdir(folder):
        raise ExportError(f"{flag} {folder}: not a directory")
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found.extend(os.path.join(root, f) for f in sorted(files) if f.lower().endswith(IMAGE_SUFFIXES))
    if not found:
        raise ExportError(f"{flag} {folder}: no images found (expected {'/'.join(IMAGE_SUFFIXES)} files)")
    return found


def load_image(path, input_shape, flag):
    """One image as float32 pixels (H, W, C) in 0..255, centre-cropped and resized to `input_shape`."""
    from mobilecnn.compat import tf

    height, width, channels = input_shape
    try:
        image = tf.io.decode_image(tf.io.read_file(path), channels=0, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError, tf.errors.UnknownError):
        raise ExportError(f"{flag}: {path} is not a readable JPEG/PNG/BMP/GIF image") from None
    if image.shape[-1] != channels:
        raise ExportError(f"{flag}: {path} has {image.shape[-1]} channel(s); the model expects {channels}")
    side = min(image.shape[0], image.shape[1])
    top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    image = image[top : top + side, left : left + side]
    image = tf.image.resize(tf.cast(image, tf.float32), (height, width), method="bilinear")
    return image.numpy()


def folder_samples(folder, input_shape, norm, count, flag):
    """Up to `count` normalized images from `folder`, evenly spread over its sorted file list."""
    if norm is None:
        raise ExportError(
            f"{flag} {folder}: the model's input normalization is unknown; pass --normalization KEY or --mean/--std"
        )
    files = list_images(folder, flag)
    if len(files) > count:
        picks = np.linspace(0, len(files) - 1, count).round().astype(int)
        files = [files[i] for i in picks]
    return np.stack([normalize(load_image(f, input_shape, flag), norm) for f in files])


def synthetic_samples(input_shape, norm, count):
    """`count` images of uniform random pixels (0..255, fixed seed), normalized."""
    rng = np.random.default_rng(SYNTHETIC_SEED)
    pixels = rng.uniform(0.0, 255.0, size=(count, *input_shape)).astype(np.float32)
    return normalize(pixels, norm)


def synthetic_description(count, norm):
    return (
        f"synthetic: {count} images of uniform random pixels in 0..255 (seed {SYNTHETIC_SEED}), "
        f"normalized with {norm['source']}; valid for random-weight models only"
    )


# -- labelled folders (evaluation) ----------------------------------------
def labelled_batches(folder, input_shape, norm, *, labels=None, limit=None, batch=64, flag="--eval-data"):
    """Yield (images, class indices) from a `folder/<class>/<image>` tree.

    Class indices follow `labels` when given (folder names must be labels),
    else the sorted folder names, as `image_dataset_from_directory` does.
    """
    if norm is None:
        raise ExportError(f"{flag} {folder}: the model's input normalization is unknown; pass --normalization KEY")
    if not os.path.isdir(folder):
        raise ExportError(f"{flag} {folder}: not a directory")
    classes = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    if not classes:
        raise ExportError(f"{flag} {folder}: no class subfolders (expected {folder}/<class>/<image>)")
    index = {name: i for i, name in enumerate(labels if labels else classes)}
    unknown = [c for c in classes if c not in index]
    if unknown:
        raise ExportError(f"{flag} {folder}: folder(s) {unknown[:3]} are not among the model's labels")
    items = [(f, index[c]) for c in classes for f in list_images(os.path.join(folder, c), flag)]
    if limit is not None:
        picks = np.linspace(0, len(items) - 1, min(limit, len(items))).round().astype(int)
        items = [items[i] for i in picks]
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        images = np.stack([normalize(load_image(f, input_shape, flag), norm) for f, _ in chunk])
        yield images, np.array([y for _, y in chunk])
