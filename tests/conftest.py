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
