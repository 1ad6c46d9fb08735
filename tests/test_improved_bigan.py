"""Improved BiGAN: sub-network shapes, the two-phase update rule, losses, serialisation."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.improved_bigan import ImprovedBiGAN, build_discriminator, build_encoder, build_generator
from models.losses import ReconstructionLoss
from models.schedule import TwoPhaseSchedule
from training.profiles import resolve_config


def compiled(config, lr=1e-3):
    model = ImprovedBiGAN(config)
    model.compile(keras.optimizers.Adam(lr, beta_1=0.5), keras.optimizers.Adam(lr, beta_1=0.5), ReconstructionLoss())
    return model


def snapshot(network):
    return [np.array(v) for v in network.trainable_variables]


def changed(before, network):
    return any(not np.allclose(a, np.array(b)) for a, b in zip(before, network.trainable_variables))


def test_sub_network_shapes(tiny_config):
    encoder, generator, discriminator = (build(tiny_config) for build in (build_encoder, build_generator, build_discriminator))
    images = keras.ops.zeros((3, 32, 32, 1))
    latent = encoder(images)
    assert latent.shape == (3, tiny_config["latent_dim"])
    assert generator(latent).shape == images.shape
    assert discriminator([images, latent]).shape == (3, 1)
    assert float(np.max(np.abs(generator(np.random.normal(size=(3, 8)).astype("float32"))))) <= 1.0  # tanh output
    assert any(layer.__class__.__name__ == "SqueezeExcite" for layer in encoder.layers)
    assert any(layer.__class__.__name__ == "Add" for layer in generator.layers)
    assert any(layer.__class__.__name__ == "Concatenate" for layer in discriminator.layers)


@pytest.mark.parametrize(
    "adversarial, train_discriminator, discriminator_moves",
    [(False, False, False), (True, True, True), (True, False, False)],
    ids=["phase1", "phase2-discriminator-epoch", "phase2-other-epoch"],
)
def test_each_phase_updates_the_right_networks(tiny_config, fixed_batch, adversarial, train_discriminator,
                                               discriminator_moves):
    model = compiled(tiny_config)
    model.set_phase(adversarial, train_discriminator)
    before = {name: snapshot(getattr(model, name)) for name in ("encoder", "generator", "discriminator")}
    logs = model.train_on_batch(fixed_batch, return_dict=True)
    assert changed(before["encoder"], model.encoder)
    assert changed(before["generator"], model.generator)
    assert changed(before["discriminator"], model.discriminator) == discriminator_moves
    assert all(np.isfinite(value) for value in logs.values())
    assert ("adv_loss" in logs) == adversarial
    assert ("d_loss" in logs) == train_discriminator
    # Phase 2 makes three encoder-generator updates for each discriminator update (the paper's ratio).
    assert int(model.reconstruction_optimizer.iterations) == (3 if adversarial else 1)
    assert int(model.discriminator_optimizer.iterations) == int(train_discriminator)


def test_reconstruction_loss_falls_on_a_fixed_batch(tiny_config, fixed_batch):
    model = compiled(tiny_config, lr=3e-3)
    model.set_phase(False, False)
    first = model.train_on_batch(fixed_batch, return_dict=True)["recon_loss"]
    for _ in range(40):
        last = model.train_on_batch(fixed_batch, return_dict=True)["recon_loss"]
    assert np.isfinite(last) and last < 0.7 * first


def test_schedule_follows_the_paper():
    schedule = TwoPhaseSchedule(epochs_recon=3, epochs_adv=11, discriminator_every=5)
    assert [schedule.phase(e) for e in range(4)] == ["reconstruction"] * 3 + ["adversarial"]
    assert [e for e in range(14) if schedule.trains_discriminator(e)] == [3, 8, 13]
    assert schedule.total_epochs == 14


def test_reconstruction_loss_weights_and_terms(fixed_batch):
    loss = ReconstructionLoss()
    terms = loss(fixed_batch, fixed_batch * 0.5)
    assert "perceptual" not in terms  # no extractor: the term is absent, not silently zero-weighted
    expected = 0.5 * terms["mse"] + 0.2 * terms["mae"] + 0.1 * terms["ssim_loss"]
    np.testing.assert_allclose(float(terms["total"]), float(expected), rtol=1e-6)
    assert float(loss(fixed_batch, fixed_batch)["total"]) == pytest.approx(0.0, abs=1e-5)
    # The terms are on [0, 1] intensities, as in the paper, not on the model's [-1, 1] pixels.
    images01, halves01 = (fixed_batch + 1) / 2, (fixed_batch * 0.5 + 1) / 2
    np.testing.assert_allclose(float(terms["mse"]), np.mean(np.square(images01 - halves01)), rtol=1e-5)
    np.testing.assert_allclose(float(terms["mae"]), np.mean(np.abs(images01 - halves01)), rtol=1e-5)
    np.testing.assert_allclose(float(terms["ssim_loss"]), 1 - float(np.mean(tf.image.ssim(images01, halves01, 1.0))),
                               rtol=1e-4)


def test_the_paper_profile_uses_the_papers_weights_and_quick_the_weights_it_was_tuned_with():
    """quick's 2.0/0.4 on [0, 1] is exactly 0.5/0.2 on [-1, 1] pixels: its numbers did not move."""
    paper, quick = (resolve_config("improved_bigan", "phantom", p)["reconstruction_weights"] for p in ("paper", "quick"))
    assert paper == {"mse": 0.5, "mae": 0.2, "perceptual": 0.2, "ssim_loss": 0.1}
    assert quick == {"mse": 2.0, "mae": 0.4, "perceptual": 0.2, "ssim_loss": 0.1}


def test_adversarial_term_reaches_both_encoder_and_generator(tiny_config, fixed_batch):
    """The BiGAN loss trains E through D(x, E(x)) and G through D(G(z), z): both must get a gradient."""
    import tensorflow as tf

    from models.losses import bigan_losses

    model = compiled(tiny_config)
    with tf.GradientTape(persistent=True) as tape:
        _, adversarial = bigan_losses(*model._pairs_logits(tf.constant(fixed_batch), training=True))
    for network in (model.encoder, model.generator):
        gradients = tape.gradient(adversarial, network.trainable_variables)
        assert sum(float(tf.norm(g)) for g in gradients if g is not None) > 1e-4, network.name
