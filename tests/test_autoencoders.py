"""The six autoencoder baselines: each network learns in its step, the loss falls, saving, scoring, export."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.registry import build_model
from models.vae import ConditionalVAE, kl_divergence, squared_error
from training.profiles import resolve_config

MODELS = ("fcae", "cae", "vae", "beta_vae", "cvae", "vq_vae")


def tiny_model(name):
    config = resolve_config(name, "phantom", "smoke")
    model = build_model(name, config["architecture"])
    model.configure(config)
    return model


def networks(model):
    """Every part with weights of its own (encoder, decoder, a VQ-VAE's codebook)."""
    return {name: item for name, item in model.checkpoint_items().items() if isinstance(item, keras.layers.Layer)}


@pytest.mark.parametrize("name", MODELS)
def test_a_step_updates_every_network_and_the_loss_falls(name, fixed_batch):
    model = tiny_model(name)
    before = {part: [np.array(w) for w in network.trainable_weights] for part, network in networks(model).items()}
    assert set(before) >= {"encoder", "decoder"}
    first = float(model.train_step(tf.constant(fixed_batch))["loss"])
    for part, network in networks(model).items():
        moved = [not np.allclose(old, new) for old, new in zip(before[part], network.trainable_weights)]
        assert any(moved), f"{name}: {part} did not change in a step"
    for _ in range(40):
        model.train_step(tf.constant(fixed_batch))
    model.trackers["loss"].reset_state()
    last = float(model.train_step(tf.constant(fixed_batch))["loss"])
    assert last < 0.8 * first, (name, first, last)


def test_vae_scores_use_the_posterior_mean_and_the_elbo(fixed_batch):
    model = tiny_model("beta_vae")
    images = keras.ops.convert_to_tensor(fixed_batch)
    reference, reconstruction, terms, _ = model.score_pairs(images)["beta_vae"]
    mean, log_variance = model.encoder(images)
    np.testing.assert_allclose(reconstruction, model.decoder(mean), atol=1e-6)  # no sampling at test time
    np.testing.assert_allclose(model(images), model(images), atol=0)
    kl = kl_divergence(mean, log_variance)
    assert model.config["beta"] == 4.0 and np.all(np.asarray(kl) >= 0)
    np.testing.assert_allclose(terms["neg_elbo"], squared_error(images, reconstruction) + 4.0 * kl, rtol=1e-5)


def test_cvae_cuts_the_image_into_positioned_patches_and_puts_them_back(fixed_batch):
    model = tiny_model("cvae")
    assert isinstance(model, ConditionalVAE)
    images = keras.ops.convert_to_tensor(fixed_batch)
    patches, positions = model.encoder_inputs(images)
    grid = model.config["patch_grid"]
    assert patches.shape == (len(fixed_batch) * grid**2, 32 // grid, 32 // grid, 1)
    np.testing.assert_array_equal(patches[1], fixed_batch[0, : 32 // grid, 32 // grid: 2 * 32 // grid])  # row-major
    np.testing.assert_array_equal(np.argmax(positions, axis=1), np.tile(np.arange(grid**2), len(fixed_batch)))
    np.testing.assert_array_equal(model.to_image(patches), fixed_batch)


def test_vq_vae_reconstructs_from_codebook_entries_only(fixed_batch):
    model = tiny_model("vq_vae")
    images = keras.ops.convert_to_tensor(fixed_batch)
    quantized = np.asarray(model.code(images)).reshape(-1, model.config["code_dim"])
    codebook = np.asarray(model.quantizer.codebook)
    assert np.min(np.abs(quantized[:, None] - codebook[None]).sum(-1), axis=1).max() == 0.0
    assert 1.0 <= float(model.train_step(tf.constant(fixed_batch))["perplexity"]) <= model.config["codes"]
