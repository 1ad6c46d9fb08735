"""--channels 3: every model trains and scores RGB, and colour reaches the exported model and `predict`."""

import numpy as np
import pytest
import tensorflow as tf

from evaluation.scoring import build_detector
from models.registry import FAMILIES
from training.profiles import resolve_config
from training.trainer import compiled_model


@pytest.fixture
def colour_batch(fixed_batch):
    """fixed_batch's smooth patterns with a different picture in each channel: [8, 32, 32, 3] in [-1, 1]."""
    return np.concatenate([fixed_batch, -fixed_batch, np.roll(fixed_batch, 8, axis=2)], axis=-1)


@pytest.mark.parametrize("name", FAMILIES)
def test_every_model_trains_a_step_and_scores_rgb(name, colour_batch):
    config = resolve_config(name, "phantom", "smoke", channels=3)
    model = compiled_model(config)
    images = tf.constant(colour_batch)
    normals = tf.data.Dataset.from_tensor_slices(images).batch(4)
    if hasattr(model, "fit_normals"):  # the floors learn in one pass, not by steps
        model.fit_normals(normals)
    else:
        logs = model.train_step(images)
        assert logs and all(np.isfinite(float(value)) for value in logs.values()), logs
    model.finish_training(normals)
    outputs = build_detector(model, 32, 3, config["score"])(images, training=False)
    assert outputs["score"].shape == (8,) and np.isfinite(outputs["score"]).all()
    assert outputs["reconstruction"].shape == (8, 32, 32, 3) and outputs["error_map"].shape == (8, 32, 32)
