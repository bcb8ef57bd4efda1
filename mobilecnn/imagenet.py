"""ImageNet helpers with keras.applications semantics: `preprocess_input`,
`decode_predictions`, and `load_image` (the standard evaluation crop).

The 1,000 ILSVRC-2012 classes ship as package data
(`mobilecnn/data/imagenet_classes.json`: [wnid, name] pairs in class-index
order, i.e. wnids sorted alphabetically).
"""
import functools
import importlib.resources
import json

import numpy as np

NUM_CLASSES = 1000


@functools.lru_cache(maxsize=1)
def imagenet_classes():
    """[(wnid, name)] for the 1,000 ILSVRC-2012 classes, in class-index order."""
    text = importlib.resources.files("mobilecnn").joinpath("data/imagenet_classes.json").read_text()
    return [tuple(pair) for pair in json.loads(text)]


def preprocess_input(x, name):
    """Normalise RGB pixels in 0..255 (channels last) as registry model `name` expects.

    Uses the model card's normalization: (x - mean) / std per channel.
    Returns float32; `x` is not modified.
    """
    from .registry import get_card

    norm = get_card(name).mean_std
    x = np.asarray(x, dtype=np.float32)
    if x.ndim < 1 or x.shape[-1] != 3:
        raise ValueError(f"preprocess_input expects RGB pixels with 3 channels last, got shape {x.shape}")
    return (x - np.float32(norm["mean"])) / np.float32(norm["std"])


def decode_predictions(preds, top=5):
    """[[(wnid, name, score), ...] per sample], best first, for an (N, 1000) prediction array."""
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != NUM_CLASSES:
        raise ValueError(f"decode_predictions expects a batch of predictions of shape (N, {NUM_CLASSES}), "
                         f"got {preds.shape}")
    if not isinstance(top, int) or not 1 <= top <= NUM_CLASSES:
        raise ValueError(f"top must be an integer between 1 and {NUM_CLASSES}, got {top!r}")
    classes = imagenet_classes()
    results = []
    for row in preds:
        best = np.argsort(-row, kind="stable")[:top]
        results.append([(*classes[i], float(row[i])) for i in best])
    return results


def load_image(path, size=224, resize=256):
    """Standard ImageNet evaluation view as float32 RGB pixels (size, size, 3) in 0..255:
    shorter side resized to `resize` (bicubic; a no-op when it already is), then a centre crop."""
    from .compat import tf

    data = tf.io.read_file(str(path))
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    height, width = int(image.shape[0]), int(image.shape[1])
    image = tf.cast(image, tf.float32)
    if min(height, width) != resize:
        scale = resize / min(height, width)
        # torchvision's Resize(int): the longer side is truncated, not rounded.
        height, width = max(resize, int(height * scale)), max(resize, int(width * scale))
        image = tf.image.resize(image, (height, width), method="bicubic", antialias=True)
        image = tf.clip_by_value(image, 0.0, 255.0)
    # Offsets rounded as torchvision's CenterCrop does.
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    if top < 0 or left < 0:
        raise ValueError(f"{path}: {height}x{width} after resizing is smaller than the {size}x{size} crop")
    return image[top : top + size, left : left + size].numpy()
