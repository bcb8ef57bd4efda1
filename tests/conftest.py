import os
import pathlib

import numpy as np
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The int8 parity tests compare files with the QAT Keras model to the element. TF turns its oneDNN kernels on by
# itself on CPUs with AVX-512 VNNI/AMX, and their float sums land on the other side of an int8 rounding boundary
# now and then: on the 2026-11-30 Xeon (Emerald Rapids) 0-78 elements per block were one step off against 0-1 with
# the Eigen kernels TF uses everywhere else. The tests pin the Eigen kernels so that what they measure is the file.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir():
    """../shared beside the project root; tests that need it skip without it."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not found: shared data (datasets, weights, fixtures) is not part of a fresh clone")
    return SHARED


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def images(tmp_path_factory):
    """A small image folder tree (train/, test/) of the embedded synthetic dataset."""
    from pipelines import synthetic

    root = tmp_path_factory.mktemp("data")
    synthetic.write_image_folder(root / "train", images_per_class=8, size=32, seed=0)
    synthetic.write_image_folder(root / "test", images_per_class=2, size=32, seed=1)
    return root
