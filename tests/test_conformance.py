"""One contract, checked for every registered model (issue 19): a training step changes each network's weights and
only checkpointed ones, the loss is finite, model.keras reloads to identical outputs, the SavedModel reproduces the
scores to 1e-3, mixed precision builds and steps (in colour, so RGB is exercised too), and a non-finite loss stops
training. Smoke settings at 32x32, so the whole registry takes seconds per model."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from data.collection import DatasetError
from evaluation.evaluate import calibrate
from evaluation.export import ImageDetector, export_saved_model
from evaluation.scoring import build_detector
from models.base import FittedModel, score_variants
from models.registry import FAMILIES
from training.callbacks import TrainingDivergedError
from training.profiles import resolve_config
from training.trainer import compiled_model, fit


def batches(images):
    return tf.data.Dataset.from_tensor_slices(images).batch(4)


def values(variables):
    return {variable.path: np.array(variable) for variable in variables}


@pytest.fixture
def float32_afterwards():
    yield
    keras.config.set_dtype_policy("float32")  # compiled_model sets the global policy; leave it as found


# Every registered model, and every option that changes what a model trains (its own networks and map).
CASES = [(name, {}) for name in FAMILIES] + [("improved_bigan", {"synthetic_anomalies": True})]


@pytest.mark.parametrize(("name", "options"), CASES, ids=[name + "".join(f"+{key}" for key in options) for name, options in CASES])
def test_every_model_keeps_the_contract(name, options, fixed_batch, tmp_path, float32_afterwards):
    config = resolve_config(name, "phantom", "smoke", image_size=32, **options)  # the fixed batch's (efficient_gan's smoke input is 64)
    model = compiled_model(config)
    fitted = isinstance(model, FittedModel)  # the floors and patchcore: one pass over the normals, no epochs
    networks = {key: item for key, item in model.checkpoint_items().items() if isinstance(item, keras.layers.Layer)}
    before = {key: values(network.weights) for key, network in networks.items()}

    # 1-2. Training (the real schedule, every phase of the smoke profile) changes every network, every weight it
    # trains is checkpointed (so --resume restores it), and its losses are finite.
    history = fit(model, batches(fixed_batch), batches(fixed_batch), fixed_batch[:2], config, tmp_path, verbose=0)
    for key, network in networks.items():
        after = values(network.weights)
        assert any(not np.array_equal(before[key][path], after[path]) for path in after), f"{key} did not change"
    checkpointed = {variable.path for network in networks.values() for variable in network.weights}
    assert {variable.path for variable in model.trainable_variables} <= checkpointed
    assert fitted or history and all(np.isfinite(value) for record in history for key, value in record.items()
                                       if key not in ("epoch", "phase"))

    # 3-4. The calibrated detector reloads from model.keras (safe_mode) to identical outputs, and the SavedModel
    # serving raw [0, 1] images reproduces its scores.
    detector = build_detector(model, 32, 1, config["score"])
    calibrate(detector, batches(fixed_batch), batches(fixed_batch[:4]), quantile=0.95)
    outputs = detector(fixed_batch, training=False)
    for variant in score_variants(model):  # every score variant of the model (and of its options) is finite
        assert np.isfinite(outputs[f"score_{variant}"]).all(), variant
    detector.save(tmp_path / "detector.keras")
    restored = keras.saving.load_model(tmp_path / "detector.keras", safe_mode=True)
    reloaded = restored(fixed_batch, training=False)
    for key in ("score", "anomaly_map", *(["reconstruction"] if model.reconstructs else [])):
        np.testing.assert_allclose(reloaded[key], outputs[key], atol=1e-6, err_msg=key)
    export_saved_model(ImageDetector(restored), tmp_path / "saved_model")
    served = tf.saved_model.load(str(tmp_path / "saved_model")).signatures["serving_float"](
        images=tf.constant((fixed_batch + 1.0) / 2.0))
    np.testing.assert_allclose(served["score"], outputs["score"], rtol=1e-3, atol=1e-3)

    # 5. Mixed precision builds bfloat16 networks with float32 weights, steps with finite losses and scores in
    # float32, here in colour.
    colour = np.concatenate([fixed_batch, -fixed_batch, np.roll(fixed_batch, 8, axis=2)], axis=-1)
    mixed_config = resolve_config(name, "phantom", "smoke", mixed_precision=True, channels=3, image_size=32, **options)
    mixed = compiled_model(mixed_config)
    if fitted:
        mixed.fit_normals(batches(colour))
    else:
        layers = [layer for item in mixed.checkpoint_items().values() if isinstance(item, keras.Model)
                  for layer in item._flatten_layers()]
        assert "bfloat16" in {layer.compute_dtype for layer in layers if isinstance(layer, (keras.layers.Conv2D,
                                                                                        keras.layers.Dense))}
        assert {variable.dtype for variable in mixed.trainable_variables} == {"float32"}
        logs = mixed.train_step(tf.constant(colour))
        assert logs and all(np.isfinite(float(value)) for value in logs.values()), logs
    mixed.finish_training(batches(colour))
    scores = build_detector(mixed, 32, 3, mixed_config["score"])(colour, training=False)["score"]
    assert scores.dtype == "float32" and scores.shape == (8,) and np.isfinite(scores).all()
    keras.config.set_dtype_policy("float32")

    # 6. A non-finite loss stops training with the divergence message (a floor refuses non-finite normals).
    poisoned = fixed_batch.copy()
    poisoned[:, 0, 0, 0] = np.nan
    (tmp_path / "diverged").mkdir()
    if fitted:
        with pytest.raises(DatasetError, match="non-finite"):
            model.fit_normals(batches(poisoned))
    else:  # the trained model again (its train functions are traced already), from epoch 0 in a new folder
        with pytest.raises(TrainingDivergedError, match="diverged"):
            fit(model, batches(poisoned), batches(fixed_batch), fixed_batch[:2], config, tmp_path / "diverged", verbose=0)
