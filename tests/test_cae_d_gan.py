"""CAE-D-GAN: block counts of the paper preset, each module's update rule, the cascade, serialisation."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.cae_d_gan import (
    CAEDGAN, PRESETS, TRAINING, build_ddgan_generator, build_dgan_generator, build_discriminator,
    validate_architecture,
)
from models.config import ConfigError
from models.losses import hinge_discriminator_loss, hinge_generator_loss

NETWORKS = ("cae_encoder", "cae_decoder", "dgan_generator", "dgan_discriminator", "ddgan_generator",
            "ddgan_discriminator")


def tiny_model(**training):
    model = CAEDGAN(PRESETS["tiny"])
    model.configure({**TRAINING["smoke"], **training})
    return model


@pytest.fixture(scope="module")
def model():
    """One tiny model shared by the update-rule tests: each snapshots the weights it compares against."""
    keras.utils.set_random_seed(0)
    return tiny_model()


def networks(model):
    return {name: item for name, item in model.checkpoint_items().items() if name in NETWORKS}


def snapshot(model):
    return {name: [np.array(v) for v in network.weights] for name, network in networks(model).items()}


def moved(model, before):
    """Names of the networks whose weights differ from the snapshot."""
    return {
        name for name, network in networks(model).items()
        if any(not np.array_equal(a, np.asarray(b)) for a, b in zip(before[name], network.weights))
    }


def count(network, pattern):
    return sum(bool(re.fullmatch(pattern, layer.name)) for layer in network.layers)


def test_paper_generators_have_16_residual_blocks_and_24_rrdbs_of_three_dense_blocks():
    config = PRESETS["paper"]
    assert count(build_dgan_generator(config), r"res\d+_add") == 16
    ddgan = build_ddgan_generator(config)
    assert count(ddgan, r"rrdb\d+_add") == 24
    assert count(ddgan, r"rrdb\d+_dense\d+_add") == 72
    assert ddgan.output_shape == (None, 128, 128, 1)


def test_discriminators_sum_parallel_kernels():
    discriminator = build_discriminator(PRESETS["tiny"], [3, 5], "d")
    assert [layer.name for layer in discriminator.layers if layer.name.startswith("block0_k")] == ["block0_k3",
                                                                                                   "block0_k5"]
    assert count(discriminator, r"block\d+_sum") == len(PRESETS["tiny"]["discriminator_filters"])
    assert discriminator.output_shape == (None, 8, 8, 1)  # patch logits


def test_degradation_is_a_half_resolution_view(model):
    checkerboard = np.indices((32, 32)).sum(axis=0) % 2 * 2.0 - 1.0  # pixel-level detail only
    ramp = np.tile(np.linspace(-1, 1, 32), (32, 1))  # smooth content
    degraded = np.asarray(model.degrader(np.stack([checkerboard, ramp])[..., None].astype("float32")))
    np.testing.assert_allclose(degraded[0], 0.0, atol=1e-6)
    assert np.abs(degraded[1, 4:-4, 4:-4, 0] - ramp[4:-4, 4:-4]).max() < 0.05


def test_score_pairs_compare_each_module_with_its_reference(model, fixed_batch):
    pairs = model.score_pairs(fixed_batch)
    assert list(pairs) == ["module_1", "module_2", "module_3"]
    np.testing.assert_array_equal(pairs["module_1"][0], fixed_batch)
    np.testing.assert_allclose(pairs["module_2"][0], model.degrader(fixed_batch))
    np.testing.assert_array_equal(pairs["module_3"][0], fixed_batch)
    np.testing.assert_allclose(pairs["module_3"][1], model(fixed_batch), atol=1e-6)
    for _, reconstruction in pairs.values():
        assert reconstruction.shape == fixed_batch.shape and float(np.abs(reconstruction).max()) <= 1.0

    images = keras.Input((32, 32, 1))
    symbolic = model.score_pairs(images)
    detector = keras.Model(images, [part for pair in symbolic.values() for part in pair])
    batch_outputs = detector(fixed_batch)
    for eager, functional in zip([part for pair in pairs.values() for part in pair], batch_outputs):
        np.testing.assert_allclose(functional, eager, atol=1e-6)
    alone = detector(fixed_batch[2:3])  # no batch leakage: one image scores as it does inside a batch
    for single, batched in zip(alone, batch_outputs):
        np.testing.assert_allclose(single[0], batched[2], atol=1e-5)


@pytest.mark.parametrize(
    "module, trained",
    [("cae", {"cae_encoder", "cae_decoder"}),
     ("dgan", {"dgan_generator", "dgan_discriminator"}),
     ("ddgan", {"ddgan_generator", "ddgan_discriminator"})],
)
def test_a_module_step_updates_its_networks_only(model, fixed_batch, module, trained):
    reconstruction = np.asarray(model.cae(fixed_batch))
    degraded = np.asarray(model.dgan(reconstruction))
    data = {"cae": (fixed_batch,),
            "dgan": (reconstruction, np.asarray(model.degrader(fixed_batch))),
            "ddgan": (degraded, fixed_batch)}[module]
    before = snapshot(model)
    logs = getattr(model, module).train_on_batch(*data, return_dict=True)
    assert moved(model, before) == trained  # the CAE encoder only scores L_en in the GAN steps
    assert logs and all(np.isfinite(value) for value in logs.values())


def test_cascade_step_trains_every_network_with_its_own_optimizers(fixed_batch):
    model = tiny_model()
    before = snapshot(model)
    logs = model.train_on_batch(fixed_batch, return_dict=True)
    assert moved(model, before) == set(NETWORKS)
    optimizers = {name: item for name, item in model.checkpoint_items().items() if name.endswith("optimizer")}
    assert len(optimizers) == 5 and all(int(optimizer.iterations) == 1 for optimizer in optimizers.values())
    gan_terms = {"g_loss", "recon_loss", "en_loss", "adv_loss", "d_loss", "d_real", "d_fake"}
    assert set(logs) == {"m1_pixel_loss"} | {f"{m}_{term}" for m in ("m2", "m3") for term in gan_terms}
    assert all(np.isfinite(value) for value in logs.values())
    for m in ("m2", "m3"):  # L_G = 50·L_recon + 1·L_en + 1·L_adv (§3.1, §4.2)
        expected = 50 * logs[f"{m}_recon_loss"] + logs[f"{m}_en_loss"] + logs[f"{m}_adv_loss"]
        assert logs[f"{m}_g_loss"] == pytest.approx(expected, rel=1e-4)


def test_losses_fall_on_a_fixed_batch(fixed_batch):
    model = tiny_model(lr=3e-3)
    first = model.train_on_batch(fixed_batch, return_dict=True)
    for _ in range(30):
        last = model.train_on_batch(fixed_batch, return_dict=True)
    for name in ("m1_pixel_loss", "m2_recon_loss", "m3_recon_loss"):
        assert last[name] < 0.7 * first[name], name


def test_saves_and_loads_with_safe_mode(model, fixed_batch, tmp_path):
    model.save(tmp_path / "cae_d_gan.keras")
    restored = keras.saving.load_model(tmp_path / "cae_d_gan.keras", safe_mode=True)
    assert restored.get_config()["config"] == PRESETS["tiny"]
    for (_, expected), (_, actual) in zip(model.score_pairs(fixed_batch).values(),
                                          restored.score_pairs(fixed_batch).values()):
        np.testing.assert_array_equal(actual, expected)


def test_checkpoint_items_restore_networks_and_optimizer_slots(model, fixed_batch, tmp_path):
    model.train_on_batch(fixed_batch)
    path = tf.train.Checkpoint(**model.checkpoint_items()).save(tmp_path / "ckpt")
    restored = tiny_model()
    tf.train.Checkpoint(**restored.checkpoint_items()).restore(path).assert_existing_objects_matched()
    for name, item in model.checkpoint_items().items():
        for a, b in zip(item.variables, restored.checkpoint_items()[name].variables):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_schedule_is_one_phase_of_the_profiles_epochs(model):
    schedule = model.make_schedule(TRAINING["paper"])
    assert schedule.total_epochs == 50
    assert {schedule.phase(epoch) for epoch in range(50)} == {"cascade"}


def test_paper_training_settings():
    paper = TRAINING["paper"]
    assert (paper["lr"], paper["beta_1"], paper["beta_2"], paper["batch_size"]) == (1e-4, 0.9, 0.999, 64)
    assert (paper["lambda_recon"], paper["lambda_en"], paper["lambda_adv"]) == (50, 1, 1)
    for preset in PRESETS.values():
        validate_architecture(preset)


@pytest.mark.parametrize(
    "override, message",
    [({"image_size": 40}, "multiple of 16"), ({"degrade_factor": 3}, "power of two")],
)
def test_impossible_architectures_are_refused_with_a_message(override, message):
    with pytest.raises(ConfigError, match=message):
        validate_architecture({**PRESETS["quick"], **override})


def test_hinge_losses():
    real, fake = tf.constant([2.0, 0.5]), tf.constant([-2.0, 0.5])
    assert float(hinge_discriminator_loss(real, fake)) == pytest.approx(0.25 + 0.75)
    assert float(hinge_generator_loss(fake)) == pytest.approx(0.75)
