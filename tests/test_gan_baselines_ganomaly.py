"""GANomaly, Skip-GANomaly and AnoGAN: each network learns in its own step, BatchNorm stays in inference mode at
test time, saving, the falling losses, AnoGAN's bounded latent search, the paper settings, export."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from evaluation.export import ImageDetector
from evaluation.scoring import build_detector
from models.registry import FAMILIES, build_model
from training.callbacks import StopOnNonFinite, TrainingDivergedError
from training.profiles import resolve_config

MODELS = ("ganomaly", "skip_ganomaly", "anogan")
PAPER_SCORES = {"ganomaly": "latent", "skip_ganomaly": "skip_ganomaly", "anogan": "anogan"}


def tiny_model(name, lr=None):
    config = resolve_config(name, "phantom", "smoke", lr=lr)
    model = build_model(name, config["architecture"])
    model.configure(config)
    return model, config


def networks(model):
    return {name: item for name, item in model.checkpoint_items().items() if isinstance(item, keras.layers.Layer)}


def snapshot(model, weights="trainable_weights"):
    return {name: [np.array(w) for w in getattr(network, weights)] for name, network in networks(model).items()}


def moved(before, model, weights="trainable_weights"):
    return {name for name, network in networks(model).items()
            if any(not np.allclose(old, new) for old, new in zip(before[name], getattr(network, weights)))}


def generator_parts(model):
    return set(networks(model)) - {"discriminator"}


def update(model, step, images):
    """The generator or the discriminator update alone; D's takes the fake images its train_step gives it."""
    if step == "generator":
        return model.generator_update(images)
    fake = model.generator(model.noise(images)) if model.name == "anogan" else model.generator_terms(images)[1]
    return model.discriminator_update(images, fake)


@pytest.mark.parametrize("name", MODELS)
def test_each_network_learns_in_its_own_step_only(name, fixed_batch):
    model, _ = tiny_model(name)
    images = tf.constant(fixed_batch)
    assert "discriminator" in networks(model) and generator_parts(model)
    before = snapshot(model)
    update(model, "generator", images)
    assert moved(before, model) == generator_parts(model), "a generator step must move every G part and not D"
    before = snapshot(model)
    update(model, "discriminator", images)
    assert moved(before, model) == {"discriminator"}, "a discriminator step must move D only"
    logs = model.train_step(images)
    assert all(np.isfinite(float(value)) for value in logs.values())


def batchnorm_statistics(model):
    return {f"{part}/{layer.name}": [np.array(layer.moving_mean), np.array(layer.moving_variance)]
            for part, network in networks(model).items() for layer in network.layers
            if isinstance(layer, keras.layers.BatchNormalization)}


@pytest.mark.parametrize("name", MODELS)
def test_scoring_leaves_batchnorm_statistics_alone_and_uses_them(name, fixed_batch):
    """Scoring in BatchNorm's training mode would (a) move the moving statistics and (b) make an image's score
    depend on the rest of its batch; neither may happen on any inference path (the detector as evaluation and
    calibration call it, its default call, the deployable model, the model's own call)."""
    model, config = tiny_model(name)
    for _ in range(3):
        model.train_step(tf.constant(fixed_batch))
    model.finish_training(tf.data.Dataset.from_tensor_slices(fixed_batch).batch(4))
    statistics = batchnorm_statistics(model)
    assert statistics, "every generator here has BatchNorm"
    images = tf.constant(0.5 * fixed_batch[::-1] + 0.2)  # not the statistics' batch: training mode would move them
    detector = build_detector(model, 32, score=config["score"])
    batch = detector(images, training=False)
    detector(images)
    ImageDetector(detector)(tf.cast((images + 1.0) * 127.5, tf.uint8))
    model(images)
    model.score_pairs(images)
    for layer, (mean, variance) in batchnorm_statistics(model).items():
        np.testing.assert_array_equal(mean, statistics[layer][0], err_msg=layer)
        np.testing.assert_array_equal(variance, statistics[layer][1], err_msg=layer)
    alone = detector(images[:1])
    for key in ("reconstruction", "mse", f"score_{PAPER_SCORES[name]}"):
        np.testing.assert_allclose(alone[key][0], batch[key][0], rtol=1e-4, atol=1e-5, err_msg=key)


@pytest.mark.parametrize("name", MODELS)
def test_saves_and_loads_with_safe_mode(name, fixed_batch, tmp_path):
    model, config = tiny_model(name)
    images = tf.constant(fixed_batch)
    model.train_step(images)
    model.finish_training(tf.data.Dataset.from_tensor_slices(fixed_batch).batch(4))
    model.save(tmp_path / f"{name}.keras")
    restored = keras.saving.load_model(tmp_path / f"{name}.keras", safe_mode=True)
    np.testing.assert_allclose(restored(images), model(images), atol=1e-5)
    original, reloaded = model.score_pairs(images)[name][2], restored.score_pairs(images)[name][2]
    assert set(reloaded) == set(original) == set(model.score_variants[PAPER_SCORES[name]]) - {"mse"}
    for term in original:
        np.testing.assert_allclose(reloaded[term], original[term], rtol=1e-5, atol=1e-5)
    # The deployable model (raw images -> detector with the scorer) too: for AnoGAN it holds the search layer.
    deployed = ImageDetector(build_detector(model, 32, score=config["score"]))
    deployed.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    raw = tf.cast((images + 1.0) * 127.5, tf.uint8)
    np.testing.assert_allclose(loaded(raw)["score"], deployed(raw)["score"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, losses", [("ganomaly", ("con_loss", "g_loss")), ("skip_ganomaly", ("con_loss", "g_loss")),
                                          ("anogan", ("d_loss",))])
def test_losses_fall_on_a_fixed_batch(name, losses, fixed_batch):
    """The generators' reconstruction (and total) loss, and AnoGAN's discriminator loss (its generator's
    adversarial loss rises as D wins: on one fixed batch that is the sign of learning)."""
    model, _ = tiny_model(name, lr=3e-3)
    images = tf.constant(fixed_batch)
    first = {loss: float(value) for loss, value in model.train_step(images).items()}
    for _ in range(30):
        model.train_step(images)
    for tracker in model.metrics:
        tracker.reset_state()
    last = {loss: float(value) for loss, value in model.train_step(images).items()}
    for loss in losses:
        assert np.isfinite(last[loss]) and last[loss] < 0.7 * first[loss], (loss, first[loss], last[loss])


def test_anogan_search_lowers_the_loss_over_its_fixed_number_of_steps(fixed_batch, monkeypatch):
    model, _ = tiny_model("anogan", lr=3e-3)
    images = tf.constant(fixed_batch)
    for _ in range(10):
        model.train_step(images)
    search = model.latent_search
    assert search.steps == 3  # tiny preset
    real_features = search.discriminator(images)[1]

    def loss_after(steps):
        residual, discrimination, _ = search.terms(images, real_features, search.search(images, steps))
        return np.asarray(0.9 * residual + 0.1 * discrimination), np.asarray(residual)

    losses, residuals = zip(*(loss_after(steps) for steps in range(6)))
    assert np.all(losses[-1] < losses[0]) and np.all(residuals[-1] < residuals[0]), (losses, residuals)
    assert np.mean(np.diff(np.mean(losses, axis=1)) < 0) >= 0.8  # mostly downhill, step by step
    # Bounded: scoring runs exactly `steps` gradient steps (one loss evaluation each) plus the final terms.
    calls = []
    terms = search.terms
    monkeypatch.setattr(search, "terms", lambda *args: calls.append(1) or terms(*args))
    reconstruction, residual, _ = search(images)
    assert len(calls) == search.steps + 1
    np.testing.assert_allclose(residual, residuals[search.steps], rtol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_a_non_finite_loss_stops_training_with_the_clear_message(name, tmp_path, fixed_batch):
    model, _ = tiny_model(name)
    images = np.full_like(fixed_batch, np.nan)
    with pytest.raises(TrainingDivergedError, match="Training diverged"):
        model.fit(images, epochs=1, batch_size=8, verbose=0, callbacks=[StopOnNonFinite(tmp_path)])


def test_profiles_follow_the_papers():
    """CAE-D-GAN Table 2's batch 64 and 50 epochs (its input sizes: the next test); the original papers' Adam 2e-4,
    β1 0.5 and loss weights; each model's own score under `paper`, error_zmax under `quick`."""
    for name in MODELS:
        paper, quick = (resolve_config(name, "phantom", profile) for profile in ("paper", "quick"))
        assert (paper["batch_size"], paper["epochs"], paper["lr"], paper["beta_1"]) == (64, 50, 2e-4, 0.5)
        assert paper["score"] == PAPER_SCORES[name] and quick["score"] == "error_zmax"
        assert quick["architecture"]["image_size"] == 64 and quick["min_updates"] == 600
    ganomaly, skip = resolve_config("ganomaly", "phantom", "paper"), resolve_config("skip_ganomaly", "phantom", "paper")
    assert (ganomaly["w_adv"], ganomaly["w_con"], ganomaly["w_enc"]) == (1.0, 50.0, 1.0)
    assert (skip["w_adv"], skip["w_con"], skip["w_lat"]) == (1.0, 50.0, 1.0)
    assert resolve_config("anogan", "phantom", "quick")["architecture"]["search_steps"] == 10


IMPROVED_BIGAN_DATASETS = ("brain_mri", "mvtec_ad", "plant_village", "phantom", "folder")
CHEST_X_RAYS = ("chest_xray_1", "chest_xray_2", "chest_xray_3")


def test_paper_input_is_128_on_the_improved_bigan_datasets_and_table_2s_256_on_the_chest_x_rays_only():
    """The Improved BiGAN resized every image of its datasets to 128×128 (§IV-B), whatever the model; the 256×256 of
    CAE-D-GAN Table 2 (GANomaly, Efficient-GAN) is its chest X-ray setting. quick and explicit flags are unchanged."""
    # patchcore's and draem's paper inputs are their own papers' (224, 256)
    papers_models = [name for name in FAMILIES if name not in ("patchcore", "draem")]
    for dataset in IMPROVED_BIGAN_DATASETS + CHEST_X_RAYS:
        sizes = {name: resolve_config(name, dataset, "paper")["architecture"]["image_size"] for name in papers_models}
        at_256 = {"ganomaly", "efficient_gan"} if dataset in CHEST_X_RAYS else set()
        assert {name for name, size in sizes.items() if size == 256} == at_256, dataset
        assert all(size == 128 for name, size in sizes.items() if name not in at_256), dataset
    chest, brain = resolve_config("ganomaly", "chest_xray_2", "paper"), resolve_config("ganomaly", "brain_mri", "paper")
    assert (chest["preset"], len(chest["architecture"]["filters"])) == ("paper_256", 6)  # down to 4×4 either way
    assert (brain["preset"], len(brain["architecture"]["filters"])) == ("paper", 5)
    assert {resolve_config("ganomaly", dataset, "quick")["architecture"]["image_size"]
            for dataset in IMPROVED_BIGAN_DATASETS + CHEST_X_RAYS} == {64}
    assert resolve_config("ganomaly", "brain_mri", "paper", image_size=256)["architecture"]["image_size"] == 256
    assert resolve_config("ganomaly", "chest_xray_1", "paper", image_size=128)["architecture"]["image_size"] == 128
