"""CAE-D-GAN: block counts of the paper preset, each module's update rule, the cascade, serialisation, and the
paper profile's order (CAE, DGAN, DDGAN), unpaired DGAN, inference-time code search and score."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from evaluation.evaluate import calibrate
from evaluation.export import ImageDetector, export_saved_model
from evaluation.scoring import build_detector
from models.cae_d_gan import (
    CAEDGAN,
    PRESETS,
    STAGES,
    TRAINING,
    CodeSearch,
    build_ddgan_generator,
    build_dgan_generator,
    build_discriminator,
    validate_architecture,
)
from models.config import ConfigError
from models.losses import hinge_discriminator_loss, hinge_generator_loss
from models.registry import paper_score
from training.profiles import resolve_config

NETWORKS = ("cae_encoder", "cae_decoder", "dgan_generator", "dgan_discriminator", "ddgan_generator",
            "ddgan_discriminator")
# The paper profile's training settings (order, DGAN pairing, score) on the smoke profile's tiny model.
PAPER_TRAINING = {key: TRAINING["paper"][key] for key in ("training_order", "dgan_paired", "score")}
SEARCH = {"search_steps": 4, "search_lr": 0.05}  # a paper-like code search for the tiny preset
STAGE_NETWORKS = {stage: {f"{stage}_{part}" for part in parts}
                  for stage, parts in zip(STAGES, [("encoder", "decoder"), *[("generator", "discriminator")] * 2])}


def tiny_model(search=None, **training):
    model = CAEDGAN({**PRESETS["tiny"], **(search or {})})
    model.configure({**TRAINING["smoke"], **training})
    return model


def trained_with_and_without_search(images):
    """Two tiny models with the same weights, trained a few joint steps: one with the code search, one without."""
    plain = tiny_model(lr=3e-3)
    for _ in range(5):
        plain.train_on_batch(images)
    searching = tiny_model(SEARCH)
    for name, network in networks(searching).items():
        network.set_weights(networks(plain)[name].get_weights())
    return plain, searching


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
    for reference, reconstruction, terms, _ in pairs.values():
        assert reconstruction.shape == fixed_batch.shape and float(np.abs(reconstruction).max()) <= 1.0
        l1 = np.mean(np.abs(np.asarray(reference) - np.asarray(reconstruction)), axis=(1, 2, 3)) / 2  # on [0, 1]
        np.testing.assert_allclose(terms["l1"], l1, rtol=1e-5)

    def parts(pairs):
        return [part for reference, reconstruction, terms, _ in pairs.values() for part in (reference, reconstruction, terms["l1"])]

    images = keras.Input((32, 32, 1))
    detector = keras.Model(images, parts(model.score_pairs(images)))
    batch_outputs = detector(fixed_batch)
    for eager, functional in zip(parts(pairs), batch_outputs):
        np.testing.assert_allclose(functional, eager, atol=1e-6)
    alone = detector(fixed_batch[2:3])  # no batch leakage: one image scores as it does inside a batch
    for single, batched in zip(alone, batch_outputs):
        np.testing.assert_allclose(single[0], batched[2], atol=1e-5)


def test_paper_order_trains_the_cae_then_the_dgan_then_the_ddgan(fixed_batch):
    """Under the paper's order each epoch of a stage moves that module's networks only (its optimizers step, the
    others' do not) and logs that module only; the modules before it run frozen to make its inputs."""
    model = tiny_model(**PAPER_TRAINING)
    schedule = model.make_schedule({**TRAINING["smoke"], **PAPER_TRAINING})
    assert schedule.total_epochs == 3 * TRAINING["smoke"]["epochs"]
    optimizers = {name: item for name, item in model.checkpoint_items().items() if name.endswith("optimizer")}
    epochs = []

    class Watch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.before = snapshot(model)
            self.iterations = {name: int(optimizer.iterations) for name, optimizer in optimizers.items()}

        def on_epoch_end(self, epoch, logs=None):
            stepped = {name for name, optimizer in optimizers.items() if int(optimizer.iterations) > self.iterations[name]}
            epochs.append((schedule.phase(epoch), moved(model, self.before), stepped, {key[:2] for key in logs}))

    dataset = tf.data.Dataset.from_tensor_slices(fixed_batch).batch(4)  # two steps an epoch
    model.fit(dataset, epochs=schedule.total_epochs, callbacks=[schedule, Watch()], verbose=0, shuffle=False)
    assert [epoch[0] for epoch in epochs] == list(STAGES)
    for (stage, moved_networks, stepped, prefixes), prefix in zip(epochs, ("m1", "m2", "m3")):
        assert moved_networks == STAGE_NETWORKS[stage], stage
        assert stepped == {name for name in optimizers if name.split("_")[0] == stage}, (stage, stepped)
        assert prefixes == {prefix}, (stage, prefixes)


@pytest.mark.parametrize("paired", [True, False])
def test_the_dgan_learns_degrade_x_paired_and_its_own_input_unpaired(fixed_batch, paired):
    """quick's DGAN is paired (L_recon and L_en against degrade(x)); the paper's is not: eq. (1)-(2) compare its
    output with its own input, the CAE reconstruction, and degrade(x) only reaches its discriminator as real."""
    model = tiny_model(dgan_paired=paired)
    reconstruction = model.cae(fixed_batch)
    generated = model.dgan(reconstruction)  # before the step, as the step computes its losses
    degraded = model.degrader(fixed_batch)
    real_logits = model.dgan.discriminator(degraded)
    target = degraded if paired else reconstruction
    model.set_stage("dgan")
    logs = model.train_on_batch(fixed_batch, return_dict=True)
    assert logs["m2_recon_loss"] == pytest.approx(float(np.mean(np.abs(target - generated))), rel=1e-4)
    encoder = model.cae.encoder
    assert logs["m2_en_loss"] == pytest.approx(float(np.mean(np.abs(encoder(target) - encoder(generated)))), rel=1e-4)
    assert logs["m2_d_real"] == pytest.approx(float(np.mean(real_logits)), rel=1e-4)


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


@pytest.mark.parametrize("search", [None, SEARCH])
def test_saves_and_loads_with_safe_mode(search, fixed_batch, tmp_path):
    model = tiny_model(search)
    model.save(tmp_path / "cae_d_gan.keras")
    restored = keras.saving.load_model(tmp_path / "cae_d_gan.keras", safe_mode=True)
    assert restored.get_config()["config"] == {**PRESETS["tiny"], **(search or {})}
    assert (restored.code_search is None) == (search is None)
    for (_, expected, expected_terms, _), (_, actual, terms, _) in zip(model.score_pairs(fixed_batch).values(),
                                                                 restored.score_pairs(fixed_batch).values()):
        np.testing.assert_array_equal(actual, expected)
        np.testing.assert_array_equal(terms["l1"], expected_terms["l1"])


def test_checkpoint_items_restore_networks_and_optimizer_slots(model, fixed_batch, tmp_path):
    model.train_on_batch(fixed_batch)
    path = tf.train.Checkpoint(**model.checkpoint_items()).save(tmp_path / "ckpt")
    restored = tiny_model()
    tf.train.Checkpoint(**restored.checkpoint_items()).restore(path).assert_existing_objects_matched()
    for name, item in model.checkpoint_items().items():
        for a, b in zip(item.variables, restored.checkpoint_items()[name].variables):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_schedules_quick_one_phase_and_paper_its_epochs_per_module_in_order(model):
    schedule = model.make_schedule(TRAINING["quick"])
    assert schedule.total_epochs == 30
    assert {schedule.phase(epoch) for epoch in range(30)} == {"cascade"}
    schedule = model.make_schedule(TRAINING["paper"])
    assert schedule.total_epochs == 150
    assert [schedule.phase(epoch) for epoch in (0, 49, 50, 99, 100, 149)] == ["cae", "cae", "dgan", "dgan", "ddgan", "ddgan"]
    assert schedule.representative_epochs() == {"cae": 0, "dgan": 50, "ddgan": 100}


def test_paper_training_settings():
    paper = TRAINING["paper"]
    assert (paper["lr"], paper["beta_1"], paper["beta_2"], paper["batch_size"]) == (1e-4, 0.9, 0.999, 64)
    assert (paper["lambda_recon"], paper["lambda_en"], paper["lambda_adv"]) == (50, 1, 1)
    for preset in PRESETS.values():
        validate_architecture(preset)


def test_only_the_paper_profile_orders_unpairs_searches_and_scores_as_the_paper():
    paper, quick, smoke = (resolve_config("cae_d_gan", "phantom", profile) for profile in ("paper", "quick", "smoke"))
    assert (paper["training_order"], paper["dgan_paired"], paper["score"]) == ("sequential", False, "cae_d_gan")
    assert paper["architecture"]["search_steps"] > 0 and paper["architecture"]["search_lr"] > 0
    assert paper_score("cae_d_gan") == "cae_d_gan"  # the report's "paper's score" column
    for config in (quick, smoke):  # joint, paired, error_zmax, no search: as before
        assert config["score"] == "error_zmax"
        assert not {"training_order", "dgan_paired"} & set(config)
        assert "search_steps" not in config["architecture"]
        assert CAEDGAN(config["architecture"]).code_search is None


def test_the_code_search_lowers_the_reconstruction_error_and_changes_the_score(fixed_batch):
    """With `search_steps` the CAE code is refined at inference from E(x) (§2.2): module 1's L1 error falls step
    by step on average, the searched x̂1 feeds modules 2 and 3, and the detector's score differs from no search."""
    plain, searching = trained_with_and_without_search(fixed_batch)
    search = searching.code_search
    assert isinstance(search, CodeSearch) and search.steps == SEARCH["search_steps"]
    images = tf.constant(fixed_batch)

    def l1_after(steps):
        return np.mean(np.abs(fixed_batch - np.asarray(search.decoder(search.search(images, steps)))), axis=(1, 2, 3)) / 2

    errors = np.array([l1_after(steps) for steps in range(search.steps + 1)])
    np.testing.assert_allclose(errors[0], plain.score_pairs(images)["module_1"][2]["l1"], rtol=1e-5)  # starts at E(x)
    assert np.all(np.diff(errors.mean(axis=1)) < 0), errors.mean(axis=1)
    assert errors[-1].mean() < errors[0].mean()
    pairs = searching.score_pairs(images)
    np.testing.assert_allclose(pairs["module_1"][2]["l1"], errors[-1], rtol=1e-5)
    np.testing.assert_allclose(pairs["module_2"][1], searching.dgan.generator(pairs["module_1"][1]), atol=1e-6)
    np.testing.assert_allclose(pairs["module_3"][1], searching.ddgan.generator(pairs["module_2"][1]), atol=1e-6)
    with_search = build_detector(searching, 32, score="cae_d_gan")(images)
    without = build_detector(plain, 32, score="cae_d_gan")(images)
    assert np.all(with_search["module_1_l1"] < without["module_1_l1"])
    assert not np.allclose(with_search["score"], without["score"], atol=1e-4)
    alone = build_detector(searching, 32, score="cae_d_gan")(images[2:3])  # per-image code and moments: no leakage
    np.testing.assert_allclose(alone["score"][0], with_search["score"][2], rtol=1e-4, atol=1e-5)


def test_model_keras_and_the_saved_model_reproduce_the_detector_with_the_search(fixed_batch, tmp_path):
    """The calibrated, searching detector as evaluation scores it (scores.csv) and as deployed: model.keras
    (safe_mode) and the SavedModel run the same search and give the same scores to 1e-3."""
    _, searching = trained_with_and_without_search(fixed_batch)
    detector = build_detector(searching, 32, score="cae_d_gan")
    normals = tf.data.Dataset.from_tensor_slices(fixed_batch).batch(4)
    calibrate(detector, normals, normals, 0.95)
    raw = tf.cast(tf.round((tf.constant(fixed_batch) + 1.0) * 127.5), tf.uint8)
    expected = detector(tf.cast(raw, tf.float32) / 127.5 - 1.0)  # what evaluation computes from the decoded files
    deployed = ImageDetector(detector)
    np.testing.assert_allclose(deployed(raw)["score"], expected["score"], rtol=1e-5, atol=1e-5)
    deployed.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert [layer.steps for layer in loaded.detector.layers if isinstance(layer, CodeSearch)] == [SEARCH["search_steps"]]
    serving = tf.saved_model.load(str(export_saved_model(deployed, tmp_path / "saved_model"))).signatures["serving_default"]
    for outputs in (loaded(raw), serving(images=raw)):
        for key in ("score", "module_1_score", "module_2_score", "module_3_score"):
            np.testing.assert_allclose(outputs[key], expected[key], rtol=1e-3, atol=1e-3, err_msg=key)


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
