import os
import pathlib

import numpy as np
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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
