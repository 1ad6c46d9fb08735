"""Trainer: checkpoints every epoch, restore into the right epoch, divergence keeps the last good state."""

import json

import numpy as np
import pytest
import tensorflow as tf

from training.callbacks import TrainingDivergedError
from training.checkpoints import TrainingCheckpoint
from training.profiles import resolve_config
from training.trainer import compiled_model, fit


def smoke_config(**overrides):
    return resolve_config("improved_bigan", "phantom", "smoke", **overrides)


def batches(images):
    return tf.data.Dataset.from_tensor_slices(images).batch(4)


def test_divergence_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path, fixed_batch):
    config = smoke_config(epochs_recon=1, epochs_adv=0)
    fit(compiled_model(config), batches(fixed_batch), fixed_batch[:2], config, tmp_path, verbose=0)
    assert TrainingCheckpoint(compiled_model(config).checkpoint_items(), tmp_path / "checkpoints").restore_latest() == 1

    config = smoke_config(epochs_recon=3, epochs_adv=0)
    poisoned = fixed_batch.copy()
    poisoned[0, 0, 0, 0] = np.nan
    with pytest.raises(TrainingDivergedError, match="diverged.*last good checkpoint"):
        fit(compiled_model(config), batches(poisoned), fixed_batch[:2], config, tmp_path, verbose=0)
    restored = compiled_model(config)
    assert TrainingCheckpoint(restored.checkpoint_items(), tmp_path / "checkpoints").restore_latest() == 1
    assert all(np.isfinite(np.asarray(v)).all() for v in restored.trainable_variables)
    assert [record["epoch"] for record in json.loads((tmp_path / "history.json").read_text())] == [1]


def test_restored_checkpoint_holds_weights_and_optimizer_state(tmp_path, fixed_batch):
    config = smoke_config(epochs_recon=1, epochs_adv=1)
    model = compiled_model(config)
    fit(model, batches(fixed_batch), fixed_batch[:2], config, tmp_path, verbose=0)
    restored = compiled_model(config)
    assert TrainingCheckpoint(restored.checkpoint_items(), tmp_path / "checkpoints").restore_latest() == 2
    for network in ("encoder", "generator", "discriminator"):
        for a, b in zip(getattr(model, network).weights, getattr(restored, network).weights):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(restored.reconstruction_optimizer.iterations) == int(model.reconstruction_optimizer.iterations) > 0
    assert int(restored.discriminator_optimizer.iterations) == int(model.discriminator_optimizer.iterations) > 0


@pytest.mark.parametrize("xla, expected", [("on", True), ("off", False)])
def test_xla_setting_reaches_the_compiled_train_step(xla, expected):
    assert compiled_model(resolve_config("improved_bigan", "phantom", "smoke", xla=xla)).jit_compile is expected
