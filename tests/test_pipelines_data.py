"""pipelines.synthetic and pipelines.data: layout checks, bad files, determinism, preprocessing."""
import numpy as np
import pytest

from pipelines import data, synthetic


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic") / "train"
    synthetic.write_image_folder(root, images_per_class=6, size=24, seed=3)
    return root


def test_synthetic_is_deterministic_and_balanced():
    a_images, a_labels = synthetic.generate(3, size=16, seed=7)
    b_images, _ = synthetic.generate(3, size=16, seed=7)
    c_images, _ = synthetic.generate(3, size=16, seed=8)
    assert a_images.shape == (30, 16, 16, 3) and a_images.dtype == np.uint8
    assert np.array_equal(a_images, b_images)
    assert not np.array_equal(a_images, c_images)
    assert np.bincount(a_labels).tolist() == [3] * len(synthetic.CLASSES)


def test_synthetic_png_decodes_to_the_same_pixels(tmp_path):
    from mobilecnn.compat import tf

    image = synthetic.generate(1, size=20, seed=1)[0][0]
    decoded = tf.io.decode_png(synthetic.encode_png(image)).numpy()
    assert np.array_equal(decoded, image)


def test_synthetic_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not empty"):
        synthetic.write_image_folder(tmp_path, images_per_class=1)


def test_scan_finds_classes_in_sorted_order(folder):
    loaded = data.load_folder(folder)
    assert loaded.class_names == tuple(sorted(synthetic.CLASSES))
    assert len(loaded) == 60 and loaded.bad_paths == ()
    assert np.bincount(loaded.labels).tolist() == [6] * 10


def test_missing_folder(tmp_path):
    with pytest.raises(data.DataError, match=r"data folder not found: .*nowhere"):
        data.load_folder(tmp_path / "nowhere")


def test_file_instead_of_folder(tmp_path):
    path = tmp_path / "images.zip"
    path.write_bytes(b"zip")
    with pytest.raises(data.DataError, match="not a folder"):
        data.load_folder(path)


def test_empty_folder(tmp_path):
    with pytest.raises(data.DataError, match="no class subfolders"):
        data.load_folder(tmp_path)


def test_one_class(tmp_path):
    synthetic.write_image_folder(tmp_path / "d", images_per_class=2, classes=("circle",))
    with pytest.raises(data.DataError, match=r"only one class folder \('circle'\)"):
        data.load_folder(tmp_path / "d")


def test_class_folder_without_images(tmp_path):
    synthetic.write_image_folder(tmp_path / "d", images_per_class=2, classes=("circle", "square"))
    (tmp_path / "d" / "empty").mkdir()
    (tmp_path / "d" / "empty" / "notes.txt").write_text("not an image")
    with pytest.raises(data.DataError, match=r"class folders without images .*\['empty'\]"):
        data.load_folder(tmp_path / "d")


def test_val_folder_must_have_the_training_classes(tmp_path):
    synthetic.write_image_folder(tmp_path / "d", images_per_class=2, classes=("circle", "square"))
    with pytest.raises(data.DataError, match=r"lacks class folders \['triangle'\]"):
        data.load_folder(tmp_path / "d", class_names=("circle", "square", "triangle"))


def _with_corrupt(tmp_path, count):
    root = tmp_path / "d"
    synthetic.write_image_folder(root, images_per_class=10, classes=("circle", "square"))
    bad = []
    for i in range(count):
        path = root / "circle" / f"corrupt{i}.jpg"
        path.write_bytes(b"\xff\xd8 not really a jpeg" if i % 2 else b"")
        bad.append(str(path))
    return root, bad


def test_corrupt_files_over_threshold_stop_with_their_paths(tmp_path):
    root, bad = _with_corrupt(tmp_path, 2)
    with pytest.raises(data.DataError, match=r"2 of 22 images .* cannot be decoded") as info:
        data.load_folder(root, max_bad_fraction=0.05)
    for path in bad:
        assert path in str(info.value)


def test_corrupt_files_under_threshold_are_skipped_and_counted(tmp_path, caplog):
    root, bad = _with_corrupt(tmp_path, 1)
    loaded = data.load_folder(root, max_bad_fraction=0.1)
    assert loaded.bad_paths == tuple(bad)
    assert len(loaded) == 20 and bad[0] not in loaded.paths
    assert bad[0] in caplog.text


def test_config_validation():
    with pytest.raises(ValueError, match="resize must be one of"):
        data.DataConfig(resize="squash")
    with pytest.raises(ValueError, match="normalization must be one of"):
        data.DataConfig(normalization="imagenet")
    with pytest.raises(ValueError, match="std > 0"):
        data.DataConfig(normalization={"mean": [0], "std": [0]})


def _batches(ds):
    return [(x, y) for x, y in ds.as_numpy_iterator()]


def test_same_seed_same_batches_and_epochs_reproducible_alone(folder):
    loaded = data.load_folder(folder)
    config = data.DataConfig(image_size=24, batch_size=16, seed=5)
    full = _batches(data.train_dataset(loaded, config, epochs=3))
    again = _batches(data.train_dataset(loaded, config, epochs=3))
    last = _batches(data.train_dataset(loaded, config, epochs=3, first_epoch=2))
    steps = data.steps_per_epoch(loaded, config)
    assert steps == 3 and len(full) == 9 and len(last) == 3
    for (xa, ya), (xb, yb) in zip(full, again):
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
    for (xa, ya), (xb, yb) in zip(full[6:], last):
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
    # Epochs differ from each other, and another seed gives other batches.
    assert not np.array_equal(full[0][0], full[3][0])
    other = _batches(data.train_dataset(loaded, data.DataConfig(image_size=24, batch_size=16, seed=6), epochs=1))
    assert not np.array_equal(full[0][0], other[0][0])


def test_eval_dataset_normalizes_with_the_card_statistics(folder):
    loaded = data.load_folder(folder)
    config = data.DataConfig(image_size=24, batch_size=64, augment="none", normalization="torch")
    images, labels = next(data.eval_dataset(loaded, config).as_numpy_iterator())
    raw = np.stack([synthetic.generate(6, size=24, seed=3)[0][i] for i in range(60)])
    # Folder order is class-sorted: map generator order (CLASSES) to sorted names.
    order = np.argsort(np.asarray(synthetic.CLASSES), kind="stable")
    raw = raw.reshape(10, 6, 24, 24, 3)[order].reshape(60, 24, 24, 3).astype(np.float32)
    mean, std = data.mean_std("torch")
    np.testing.assert_allclose(images, (raw - mean) / std, atol=1e-5)
    assert labels.shape == (60, 10) and np.all(labels.sum(axis=1) == 1)


@pytest.mark.parametrize("policy", data.RESIZE_POLICIES)
def test_resize_policies_give_the_requested_size(policy):
    from mobilecnn.compat import tf

    image = tf.constant(np.full((30, 50, 3), 200, np.uint8))
    out = data.resize(image, 16, policy).numpy()
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    if policy == "pad":
        assert out[0].max() == 0 and out[8, 8, 0] == 200  # letterbox bars above and below
    else:
        assert out.min() == 200


def test_crop_flip_augmentation_changes_images_but_keeps_shape(folder):
    loaded = data.load_folder(folder)
    plain = data.DataConfig(image_size=24, batch_size=60, augment="none")
    augmented = data.DataConfig(image_size=24, batch_size=60, augment="crop_flip")
    a = _batches(data.train_dataset(loaded, plain, epochs=1))[0][0]
    b = _batches(data.train_dataset(loaded, augmented, epochs=1))[0][0]
    assert a.shape == b.shape == (60, 24, 24, 3)
    assert not np.allclose(a, b)
