"""DRAEM and its synthetic anomalies (issue 27): the synthesis is deterministic per seed, stays on the object,
leaves about half the samples clean, draws from three different sources, in grey and colour; a briefly trained
tiny DRAEM localises a planted defect that an untrained one does not; model.keras and the SavedModel reproduce its
scores in colour (tests/test_conformance.py covers grey and the rest of the contract)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import roc_auc_score

from data.synthesis import MIN_CHANGE, SOURCES, foreground_or_whole, synthesize, synthetic_batches
from evaluation.evaluate import calibrate
from evaluation.export import ImageDetector, export_saved_model
from evaluation.plots import plot_synthetic_samples
from evaluation.scoring import build_detector
from models.losses import focal_loss
from models.segmentation_head import window_size
from training.profiles import resolve_config
from training.trainer import compiled_model

SIZE = 32


def discs(count, channels=1, seed=0):
    """Textured bright discs of varied radius and position on a dark, slightly noisy background, in [-1, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    images = []
    for _ in range(count):
        cy, cx, radius = rng.uniform(12, 20), rng.uniform(12, 20), rng.uniform(7, 10)
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
        texture = 0.5 + 0.2 * np.sin(xx / rng.uniform(1.5, 3.0)) * np.cos(yy / rng.uniform(1.5, 3.0))
        image = np.where(inside, texture, -0.9) + rng.normal(0, 0.02, (SIZE, SIZE))
        images.append(np.repeat(image[..., None], channels, axis=-1) * np.linspace(1.0, 0.8, channels))
    return np.clip(np.asarray(images, np.float32), -1, 1)


def seed(value):
    return tf.constant([value, 7], tf.int64)


def test_synthesis_is_deterministic_per_seed_and_differs_between_seeds():
    images = discs(16)
    first, second, other = (synthesize(images, seed(value)) for value in (1, 1, 2))
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0]) and not np.array_equal(first[1], other[1])


def test_pipeline_gives_new_corruptions_each_epoch_and_the_same_run_again():
    batches = tf.data.Dataset.from_tensor_slices(discs(16)).batch(8)
    pipeline = synthetic_batches(batches, 3)
    epochs = [[batch[1].numpy() for batch in pipeline] for _ in range(2)]
    again = [batch[1].numpy() for batch in synthetic_batches(batches, 3)]
    assert not np.array_equal(epochs[0][0], epochs[1][0])  # a new iteration (epoch): new masks
    np.testing.assert_array_equal(epochs[0][0], again[0])  # a new pipeline with the same seed: the same masks


@pytest.mark.parametrize("channels", [1, 3])
def test_outputs_in_grey_and_colour(channels):
    images = discs(8, channels)
    corrupted, masks, clean = synthesize(images, seed(0))
    assert corrupted.shape == images.shape and masks.shape == (8, SIZE, SIZE)
    assert corrupted.dtype == tf.float32 and -1.0 <= float(tf.reduce_min(corrupted)) <= float(tf.reduce_max(corrupted)) <= 1.0
    assert set(np.unique(masks)) <= {0.0, 1.0}
    np.testing.assert_array_equal(clean, images)


def test_foreground_is_the_object_and_textures_use_the_whole_image():
    images = discs(8)
    foreground, found = foreground_or_whole(images)
    assert np.asarray(found).all()
    objects = images[..., 0] > 0
    agreement = (np.asarray(foreground) == objects).mean(axis=(1, 2))
    assert agreement.min() > 0.95, agreement
    rng = np.random.default_rng(0)
    texture = np.clip(rng.normal(0, 0.5, (4, SIZE, SIZE, 1)), -1, 1).astype(np.float32)
    foreground, found = foreground_or_whole(texture)
    assert not np.asarray(found).any() and np.asarray(foreground).min() == 1.0


def test_masks_stay_on_the_object_and_the_image_changes_only_under_them():
    images = discs(64)
    foreground, _ = foreground_or_whole(images)
    corrupted, masks, _ = synthesize(images, seed(5))
    masks = np.asarray(masks)
    assert (masks * (1.0 - np.asarray(foreground))).sum() == 0
    changed = np.abs(np.asarray(corrupted) - images).max(axis=-1) > 1e-6
    assert not (changed & (masks == 0)).any()


def test_about_half_clean_and_mask_sizes_from_small_to_large():
    images = discs(16)
    masks = np.concatenate([synthesize(images, seed(value))[1] for value in range(8)])  # 128 samples
    marked = masks.mean(axis=(1, 2))
    assert 0.5 <= (marked == 0).mean() <= 0.85  # half are drawn clean; an invisible corruption is labelled clean too
    object_share = (images[..., 0] > 0).mean()
    shares = marked[marked > 0] / object_share
    assert shares.min() < 0.03 and shares.max() > 0.25, (shares.min(), shares.max())


def test_a_corruption_that_changes_too_little_is_labelled_clean():
    """A mask whose pixels barely change (another normal of a texture, a gain near 1 at low opacity) was labelled
    anomalous and taught the map to fire on normal-looking pixels."""
    images = discs(16)
    for value in range(4):
        corrupted, masks, clean = (np.asarray(part) for part in synthesize(images, seed(value), clean_fraction=0.0))
        marked = masks.max(axis=(1, 2)) > 0
        change = np.abs(corrupted - clean)[..., 0]
        assert np.all((change * masks).sum(axis=(1, 2))[marked] >= MIN_CHANGE * masks.sum(axis=(1, 2))[marked] - 1e-4)
        np.testing.assert_array_equal(corrupted[~marked], clean[~marked])  # clean-labelled samples are unchanged
        assert marked.mean() >= 0.2  # some corruptions of these low-contrast discs are visible


def test_a_source_that_would_change_nothing_gives_way_to_a_visible_one():
    """Another normal of a texture is the same texture: drawn anyway and dropped as invisible, it left up to 7 of 8
    tile samples of a batch clean; now a visible source (a texture) is drawn instead."""
    texture = np.full((16, 32, 32, 1), 0.2, "float32")  # moved, turned or zoomed, another one is the same
    alone = np.asarray(synthesize(texture, seed(1), sources=("image",), clean_fraction=0.0)[1])
    assert alone.max(axis=(1, 2)).sum() == 0  # an identical partner changes nothing: every sample clean
    corrupted, masks, _ = (np.asarray(part) for part in synthesize(texture, seed(1), sources=("image", "texture"),
                                                                    clean_fraction=0.0))
    marked = masks.max(axis=(1, 2)) > 0
    assert marked.mean() >= 0.75, marked.mean()
    assert np.all(np.abs(corrupted - texture).max(axis=(1, 2, 3))[marked] > 0)


def test_the_three_sources_differ():
    images = discs(48, channels=3)
    results = {source: synthesize(images, seed(4), sources=(source,), clean_fraction=0.0) for source in SOURCES}
    # The same seed draws the same masks whatever the source; a source's invisible corruption is labelled clean.
    drawn = np.max([np.asarray(result[1]) for result in results.values()], axis=0)
    for source in SOURCES:
        kept = np.asarray(results[source][1]).max(axis=(1, 2)) > 0
        np.testing.assert_array_equal(np.asarray(results[source][1])[kept], drawn[kept])
    everywhere = np.all([np.asarray(result[1]).max(axis=(1, 2)) > 0 for result in results.values()], axis=0)
    assert everywhere.sum() >= 4
    masks = drawn * everywhere[:, None, None]
    inside = masks > 0
    pixels = {source: np.asarray(result[0])[inside] for source, result in results.items()}
    for first, second in [("image", "texture"), ("image", "intensity"), ("texture", "intensity")]:
        assert np.abs(pixels[first] - pixels[second]).mean() > 0.05, (first, second)
    for source in SOURCES:  # every source changes the image under its mask
        assert np.abs(pixels[source] - images[inside]).mean() > 0.02, source


def test_focal_loss_down_weights_easy_pixels():
    masks = tf.constant([[[1.0, 0.0]]])
    confident, unsure = tf.constant([[[4.0, -4.0]]]), tf.constant([[[0.0, 0.0]]])
    assert float(focal_loss(masks, confident)) < 1e-3 < float(focal_loss(masks, unsure))
    cross_entropy = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=masks, logits=unsure))
    np.testing.assert_allclose(focal_loss(masks, unsure), 0.25 * cross_entropy, rtol=1e-6)  # (1 − 0.5)^2


def test_window_scales_the_papers_21_pixels_with_the_input():
    assert window_size(256) == 21 and window_size(64) == 5 and window_size(32) == 3


def test_the_sample_grid_is_written(tmp_path):
    corrupted, masks, images = synthesize(discs(8, 3), seed(0))
    path = plot_synthetic_samples(corrupted, masks, images, tmp_path / "plots" / "synthetic_samples.png")
    assert path.exists() and path.stat().st_size > 1000


def planted(images, rng):
    """The images with a 6×6 square of another intensity pasted on the object."""
    images = images.copy()
    for image in images:
        y, x = rng.integers(11, 16, 2)
        image[y:y + 6, x:x + 6] = rng.choice([-0.4, 1.0])
    return images


def localisation(model, defects, clean):
    """Pixel AUROC of the predicted map on images with planted defects: are the defect's pixels ranked first?"""
    truth = (np.abs(defects - clean).max(axis=-1) > 0).ravel()
    return roc_auc_score(truth, np.asarray(model.score_pairs(tf.constant(defects))["draem"].anomaly_map).ravel())


def test_a_trained_draem_finds_a_planted_defect_an_untrained_one_does_not():
    keras.utils.set_random_seed(0)
    model = compiled_model(resolve_config("draem", "phantom", "smoke", seed=0))
    clean = discs(24, seed=3)
    defects = planted(clean, np.random.default_rng(1))
    untrained = localisation(model, defects, clean)
    data = synthetic_batches(tf.data.Dataset.from_tensor_slices(discs(64, seed=4)).shuffle(64, seed=0).batch(8), 0)
    model.fit(data.repeat(), steps_per_epoch=150, epochs=1, verbose=0)  # 0.72 against 0.17 untrained
    trained = localisation(model, defects, clean)
    assert trained >= 0.65 and trained >= untrained + 0.4, (untrained, trained)


def test_model_keras_and_the_saved_model_reproduce_colour_scores(tmp_path):
    config = resolve_config("draem", "phantom", "smoke", channels=3)
    model = compiled_model(config)
    images = discs(16, channels=3)
    model.fit(synthetic_batches(tf.data.Dataset.from_tensor_slices(images).batch(8), 0), epochs=1, verbose=0)
    batches = tf.data.Dataset.from_tensor_slices(images).batch(8)
    detector = build_detector(model, SIZE, 3, config["score"])
    calibrate(detector, batches, batches, quantile=0.95)
    outputs = detector(images, training=False)
    detector.save(tmp_path / "detector.keras")
    restored = keras.saving.load_model(tmp_path / "detector.keras", safe_mode=True)
    reloaded = restored(images, training=False)
    for key in ("score", "score_map_mean", "anomaly_map", "reconstruction"):
        np.testing.assert_allclose(reloaded[key], outputs[key], atol=1e-5, err_msg=key)
    export_saved_model(ImageDetector(restored), tmp_path / "saved_model")
    served = tf.saved_model.load(str(tmp_path / "saved_model")).signatures["serving_float"](
        images=tf.constant((images + 1.0) / 2.0))
    np.testing.assert_allclose(served["score"], outputs["score"], rtol=1e-3, atol=1e-3)


def test_improved_bigan_with_synthetic_anomalies_keeps_the_maps_score_and_not_the_domains():
    """--synthetic-anomalies scores improved_bigan by its head's map (`map_mean`, as draem): the chest domain's quick
    score was chosen on reconstruction errors and is not applied; without the option it is, and there is no head."""
    from training.profiles import resolve_config

    with_head = resolve_config("improved_bigan", "chest_xray_2", "quick", synthetic_anomalies=True)
    plain = resolve_config("improved_bigan", "chest_xray_2", "quick")
    assert with_head["score"] == "map_mean" and with_head["architecture"]["synthetic_anomalies"] is True
    assert resolve_config("draem", "chest_xray_2", "quick")["score"] == "map_mean"
    assert resolve_config("draem", "chest_xray_2", "paper")["score"] == "draem"  # the paper's own score
    assert (with_head["epochs_recon"], with_head["epochs_adv"], with_head["batch_size"], with_head["min_updates"]) == (
        10, 1, 16, 800)  # a step budget
    assert plain["score"] == "mse_ssim" and plain["architecture"]["synthetic_anomalies"] is False
    assert resolve_config("improved_bigan", "chest_xray_2", "quick", synthetic_anomalies=True, score="latent")["score"] == "latent"
