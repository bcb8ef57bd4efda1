"""An embedded, procedurally generated image-classification set for demos and tests.

Nothing is downloaded: every image is drawn from a seed with NumPy, so the
same seed always gives the same pixels. Ten classes of simple shapes and
textures on noisy backgrounds, with random colour, position and size, are
easy enough to learn in a few epochs and hard enough that an untrained model
scores at chance. It is a smoke-test set, not a benchmark.

`write_image_folder` lays the images out as PNG files in the class-per-folder
layout that `pipelines.data` reads, so demos exercise the real data path.
"""
import os
import struct
import zlib
from pathlib import Path

import numpy as np

CLASSES = (
    "circle",
    "square",
    "triangle",
    "cross",
    "ring",
    "hstripes",
    "vstripes",
    "dstripes",
    "checker",
    "dots",
)


def _shape_mask(kind, yy, xx, rng):
    """Boolean HxW mask of one figure; yy/xx are pixel coordinates in [0, 1)."""
    cy, cx = rng.uniform(0.35, 0.65, size=2)
    radius = rng.uniform(0.2, 0.32)
    dy, dx = yy - cy, xx - cx
    if kind == "circle":
        return dy**2 + dx**2 <= radius**2
    if kind == "square":
        return (np.abs(dy) <= radius * 0.85) & (np.abs(dx) <= radius * 0.85)
    if kind == "triangle":
        # Upward triangle: below the apex, inside two slanted edges.
        inside = (dy <= radius * 0.8) & (dy >= -radius)
        return inside & (np.abs(dx) <= (dy + radius) * 0.6)
    if kind == "cross":
        arm = radius * 0.3
        bar = (np.abs(dy) <= arm) & (np.abs(dx) <= radius)
        return bar | ((np.abs(dx) <= arm) & (np.abs(dy) <= radius))
    if kind == "ring":
        dist = dy**2 + dx**2
        return (dist <= radius**2) & (dist >= (radius * 0.55) ** 2)
    period = rng.uniform(0.12, 0.22)
    phase = rng.uniform(0, period)
    if kind == "hstripes":
        return ((yy + phase) % period) < period / 2
    if kind == "vstripes":
        return ((xx + phase) % period) < period / 2
    if kind == "dstripes":
        return ((xx + yy + phase) % period) < period / 2
    if kind == "checker":
        return (((yy + phase) // period + (xx + phase) // period) % 2) == 0
    if kind == "dots":
        return (((yy + phase) % period) - period / 2) ** 2 + (((xx + phase) % period) - period / 2) ** 2 <= (
            period / 4
        ) ** 2
    raise ValueError(f"unknown synthetic class {kind!r}; expected one of {CLASSES}")


def _draw(kind, size, rng):
    yy, xx = np.meshgrid(np.arange(size) / size, np.arange(size) / size, indexing="ij")
    background = rng.uniform(0, 255, size=3)
    foreground = rng.uniform(0, 255, size=3)
    # Keep the figure visible: push the two colours apart if they are close.
    if np.abs(foreground - background).sum() < 150:
        foreground = 255 - background
    mask = _shape_mask(kind, yy, xx, rng)
    image = np.where(mask[..., None], foreground, background)
    image = image + rng.normal(0, 12, size=image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def generate(images_per_class, size=32, seed=0, classes=CLASSES):
    """Return (images uint8 [N, size, size, 3], labels int32 [N]), class-major order."""
    if images_per_class < 1:
        raise ValueError(f"images_per_class must be at least 1, got {images_per_class}")
    if size < 8:
        raise ValueError(f"size must be at least 8 px, got {size}")
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label, kind in enumerate(classes):
        for _ in range(images_per_class):
            images.append(_draw(kind, size, rng))
            labels.append(label)
    return np.stack(images), np.asarray(labels, np.int32)


def encode_png(image):
    """Encode an RGB uint8 HxWx3 array as PNG bytes (no imaging library needed)."""
    height, width, _ = image.shape
    raw = b"".join(b"\x00" + image[row].tobytes() for row in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def write_image_folder(root, images_per_class=50, size=32, seed=0, classes=CLASSES):
    """Write the synthetic set as ROOT/<class>/<index>.png; refuses a non-empty ROOT."""
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists and is not empty; choose a new folder for the synthetic dataset")
    images, labels = generate(images_per_class, size, seed, classes)
    for index, (image, label) in enumerate(zip(images, labels)):
        folder = root / classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{index:05d}.png"
        tmp = target.with_suffix(".png.tmp")
        tmp.write_bytes(encode_png(image))
        os.replace(tmp, target)
    return root
