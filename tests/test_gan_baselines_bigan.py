"""The plain BiGAN family (bigan, egbad, efficient_gan): who learns in which step, inference-mode BatchNorm,
saving, the losses, Zenati's score terms, weight averaging, settings, and one smoke run of all three."""


import keras
import numpy as np
import pytest
import tensorflow as tf

from evaluation.scoring import build_detector, score_batches
from models.bigan import BiGAN
from models.losses import bigan_losses
from models.registry import build_model
from training.profiles import resolve_config

MODELS = ("bigan", "egbad", "efficient_gan")
NETWORKS = ("encoder", "generator", "discriminator")


def tiny_model(name="bigan", lr=None, **settings):
    config = {**resolve_config(name, "phantom", "smoke"), **settings}
    if lr:
        config["lr"] = lr
    model = build_model(name, config["architecture"])
    model.configure(config)
    return model


def snapshot(model):
    return {part: [np.array(w) for w in getattr(model, part).trainable_weights] for part in NETWORKS}


def moved(before, model):
    """{network: whether any of its trainable weights changed since `before`}."""
    return {part: any(not np.allclose(old, new) for old, new in zip(before[part], getattr(model, part).trainable_weights))
            for part in NETWORKS}


@pytest.mark.parametrize("step, expected", [
    ("_discriminator_update", {"encoder": False, "generator": False, "discriminator": True}),
    ("_encoder_generator_update", {"encoder": True, "generator": True, "discriminator": False}),
    ("train_step", {"encoder": True, "generator": True, "discriminator": True}),
])
def test_each_step_updates_its_own_networks_only(fixed_batch, step, expected):
    model = tiny_model()
    before = snapshot(model)
    getattr(model, step)(tf.constant(fixed_batch))
    assert moved(before, model) == expected


def test_train_step_is_one_discriminator_and_one_encoder_generator_update(fixed_batch):
    model = tiny_model()
    logs = model.train_step(tf.constant(fixed_batch))
    assert int(model.autoencoder_optimizer.iterations) == 1 and int(model.discriminator_optimizer.iterations) == 1
    assert set(logs) == {"adv_loss", "d_loss", "d_real", "d_fake"} and all(np.isfinite(float(v)) for v in logs.values())


def test_discriminator_learns_and_encoder_generator_fool_it_on_a_fixed_batch(fixed_batch):
    """D alone: its loss falls and it tells real pairs from fake; then E+G alone: their loss falls against the fixed D."""
    model = tiny_model(lr=2e-3)
    images = tf.constant(fixed_batch)

    def d_logs():
        logs = {name: float(model.trackers[name].result()) for name in ("d_loss", "d_real", "d_fake")}
        for name in logs:
            model.trackers[name].reset_state()
        return logs

    model._discriminator_update(images)
    first = d_logs()
    for _ in range(30):
        model._discriminator_update(images)
    last = d_logs()
    assert last["d_loss"] < 0.7 * first["d_loss"], (first, last)
    assert last["d_real"] - last["d_fake"] > first["d_real"] - first["d_fake"] + 0.2, (first, last)

    def game():  # (D's loss, E+G's loss) on the batch, measured apart from the steps' own logs, over 5 draws of z
        return np.mean([[float(loss) for loss in bigan_losses(*model._pairs_logits(images, training=True))]
                        for _ in range(5)], axis=0)

    d_before, eg_before = game()
    for _ in range(30):
        model._encoder_generator_update(images)
    d_after, eg_after = game()
    assert eg_after < 0.7 * eg_before and d_after > d_before, (d_before, eg_before, d_after, eg_after)


def batchnorm_statistics(model):
    return [np.array(weight) for network in (model.encoder, model.generator) for layer in network.layers
            if isinstance(layer, keras.layers.BatchNormalization) for weight in (layer.moving_mean, layer.moving_variance)]


def test_scoring_runs_batchnorm_in_inference_mode(fixed_batch):
    """Scoring (score_pairs, the detector called plainly and as evaluation calls it) leaves the moving statistics
    alone and reconstructs with them, not with the batch's statistics."""
    model = tiny_model()
    model.train_step(tf.constant(fixed_batch))
    model.finish_training(tf.data.Dataset.from_tensor_slices(fixed_batch).batch(8))
    statistics = batchnorm_statistics(model)
    assert statistics and any(np.abs(s).max() > 1e-3 for s in statistics[::2])  # re-estimated, not the initial zeros
    images = tf.constant(fixed_batch[::-1] * 0.5 + 0.3)  # another distribution: batch statistics would differ
    _, reconstruction, _, _ = model.score_pairs(images)["bigan"]
    detector = build_detector(model, 32, score="zenati_fm")
    detector(images)
    score_batches(detector, tf.data.Dataset.from_tensors(images))
    for before, after in zip(statistics, batchnorm_statistics(model)):
        np.testing.assert_array_equal(before, after)
    inference = model.generator(model.encoder(images, training=False), training=False)
    np.testing.assert_allclose(reconstruction, inference, atol=1e-6)
    batch_mode = model.generator(model.encoder(images, training=True), training=True)
    assert np.abs(np.asarray(batch_mode) - np.asarray(inference)).mean() > 1e-3  # the check can tell the two apart


def test_zenati_terms_are_present_finite_and_as_defined(fixed_batch):
    model = tiny_model()
    model.train_step(tf.constant(fixed_batch))
    images = tf.constant(fixed_batch)
    reference, reconstruction, terms, _ = model.score_pairs(images)["bigan"]
    assert set(terms) == {"l1_error", "feature_distance", "discriminator_error"}
    for value in terms.values():
        assert value.shape == (len(fixed_batch),) and np.all(np.isfinite(value)) and np.all(np.asarray(value) >= 0)
    latent = model.encoder(images, training=False)
    logit, features = model.discriminator([images, latent])
    _, reconstruction_features = model.discriminator([reconstruction, latent])
    np.testing.assert_allclose(terms["l1_error"], np.abs(fixed_batch - reconstruction).sum(axis=(1, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(terms["feature_distance"], np.abs(features - reconstruction_features).sum(-1), rtol=1e-5)
    np.testing.assert_allclose(terms["discriminator_error"], np.log1p(np.exp(-np.asarray(logit)[:, 0])), rtol=1e-5)
    assert float(np.max(terms["feature_distance"])) > 0  # G(E(x)) is not x, so D's features differ
    outputs = build_detector(model, 32, score="zenati_fm")(images)
    np.testing.assert_allclose(outputs["raw_score"], 0.9 * terms["l1_error"] + 0.1 * terms["feature_distance"], rtol=1e-5)
    assert {"score_feature", "score_zenati_fm", "score_zenati_ce"} <= set(outputs)


def test_weight_averaging_replaces_the_weights_after_training(fixed_batch):
    """Zenati et al. test with averaged weights (paper profile of egbad and efficient_gan): finish_training swaps
    them in; a model that never trained keeps its weights (the averages start as zeros)."""
    untrained = tiny_model("egbad", ema_momentum=0.9)
    weights = snapshot(untrained)
    untrained.finish_training(tf.data.Dataset.from_tensor_slices(fixed_batch).batch(8))
    assert not any(moved(weights, untrained).values())

    model = tiny_model("egbad", lr=2e-3, ema_momentum=0.9)
    for _ in range(3):
        model.train_step(tf.constant(fixed_batch))
    live = snapshot(model)
    averages = [np.array(v) for v in model.discriminator_optimizer._model_variables_moving_average]
    model.finish_training(tf.data.Dataset.from_tensor_slices(fixed_batch).batch(8))
    assert all(moved(live, model).values())
    for average, weight in zip(averages, model.discriminator.trainable_weights):
        np.testing.assert_allclose(weight, average, atol=1e-7)


def test_settings_follow_the_papers():
    """CAE-D-GAN Table 2 for egbad / efficient_gan under --profile paper, Zenati's optimizer; quick as the baselines
    with what tells the three apart kept (no two train the same network): averaged weights, efficient_gan's doubled input."""
    quick = {name: resolve_config(name, "phantom", "quick") for name in MODELS}
    for name, config in quick.items():
        assert tiny_model(name).__class__ is BiGAN
        assert (config["epochs"], config["batch_size"], config["score"], config["min_updates"]) == (50, 32, "error_zmax", 600)
    assert [(c["architecture"]["image_size"], c["ema_momentum"]) for c in quick.values()] == [
        (64, None), (64, 0.99), (128, 0.99)]
    papers = {name: resolve_config(name, "chest_xray_1", "paper") for name in MODELS}
    assert [(c["architecture"]["image_size"], c["batch_size"], c["epochs"], c["lr"], c["score"], c["ema_momentum"])
            for c in papers.values()] == [(128, 32, 100, 2e-4, "paper", None), (128, 64, 50, 1e-5, "zenati_ce", 0.999),
                                          (256, 64, 50, 1e-5, "zenati_fm", 0.999)]
    assert all(c["beta_1"] == 0.5 for c in papers.values())
