"""Shared fixtures: tiny configs and data so every test runs in seconds on a CPU, offline."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from models.registry import architecture  # noqa: E402


@pytest.fixture
def tiny_config():
    return architecture("improved_bigan", "tiny")


@pytest.fixture
def fixed_batch():
    """A deterministic batch of smooth 32x32 'images' in [-1, 1]."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    images = [np.sin(2 * np.pi * (a * xx + b * yy)) * 0.8 for a, b in rng.uniform(0.5, 2.0, (8, 2))]
    return np.asarray(images, dtype="float32")[..., None]


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)
