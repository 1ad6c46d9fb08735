"""Metric conventions: label 1 = anomalous, higher score = more anomalous, flag when score >= threshold."""

import math

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from evaluation import metrics


def test_perfect_separation_gives_auroc_and_oracle_accuracy_one():
    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    threshold, accuracy = metrics.oracle_threshold(labels, scores)
    result = metrics.classification_metrics(labels, scores, threshold)
    assert result["auroc"] == 1.0
    assert result["average_precision"] == 1.0
    assert accuracy == 1.0
    assert result["accuracy"] == accuracy


def test_random_scores_give_chance_auroc():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=4000)
    result = metrics.classification_metrics(labels, rng.random(4000), threshold=0.5)
    assert result["auroc"] == pytest.approx(0.5, abs=0.03)


def test_counts_on_hand_worked_example():
    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.6, 0.3, 0.2, 0.8, 0.9])
    # flagged (>= 0.5): indices 1, 4, 5 -> TP 2 (4, 5), FP 1 (1), TN 2 (0, 2), FN 1 (3)
    result = metrics.classification_metrics(labels, scores, threshold=0.5)
    assert (result["tp"], result["fp"], result["tn"], result["fn"]) == (2, 1, 2, 1)
    assert all(isinstance(result[k], int) for k in ("tp", "fp", "tn", "fn"))
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["precision"] == pytest.approx(2 / 3)
    assert result["recall"] == pytest.approx(2 / 3)
    assert result["f1"] == pytest.approx(2 / 3)
    assert result["specificity"] == pytest.approx(2 / 3)
    assert result["threshold"] == 0.5


def test_specificity_is_true_negative_rate():
    labels = np.array([0, 0, 0, 0, 1])
    scores = np.array([0.9, 0.1, 0.1, 0.1, 0.9])  # one of four normals flagged
    result = metrics.classification_metrics(labels, scores, threshold=0.5)
    assert result["specificity"] == pytest.approx(result["tn"] / (result["tn"] + result["fp"])) == 0.75


def test_score_equal_to_threshold_is_flagged():
    result = metrics.classification_metrics(np.array([0, 1]), np.array([0.2, 0.5]), threshold=0.5)
    assert (result["tp"], result["fp"]) == (1, 0)


def test_nothing_flagged_gives_zero_precision_not_an_error():
    result = metrics.classification_metrics(np.array([0, 1]), np.array([0.1, 0.2]), threshold=1.0)
    assert result["precision"] == 0.0 and result["f1"] == 0.0


def test_validation_threshold_is_the_quantile():
    scores = np.random.default_rng(1).normal(size=500)
    assert metrics.validation_threshold(scores) == pytest.approx(np.quantile(scores, 0.95))
    assert metrics.validation_threshold(scores, 0.99) == pytest.approx(np.quantile(scores, 0.99))


def test_few_validation_normals_get_a_normal_fit_threshold_not_the_top_score():
    """4 scores cannot carry a 95th percentile (it would sit between the two largest): below 20 the
    threshold is mean + 1.645 std, recorded as the 'normal_fit' rule."""
    scores = np.array([-1.0, -0.2, 0.3, 0.9])
    assert metrics.threshold_rule(4, 0.95) == "normal_fit" and metrics.threshold_rule(20, 0.95) == "quantile"
    assert metrics.quantile_support(0.99) == 100
    expected = scores.mean() + 1.6448536 * scores.std(ddof=1)
    assert metrics.validation_threshold(scores, 0.95) == pytest.approx(expected, rel=1e-6)
    assert metrics.validation_threshold(scores, 0.95) != pytest.approx(np.quantile(scores, 0.95))


def test_oracle_threshold_is_in_raw_units():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, size=300)
    scores = rng.normal(size=300) + labels
    threshold, accuracy = metrics.oracle_threshold(labels, scores)
    scaled_threshold, scaled_accuracy = metrics.oracle_threshold(labels, 10 * scores + 3)
    assert scaled_accuracy == pytest.approx(accuracy)
    assert scaled_threshold == pytest.approx(10 * threshold + 3)
    assert metrics.classification_metrics(labels, scores, threshold)["accuracy"] == pytest.approx(accuracy)


def test_oracle_threshold_keeps_first_best_and_handles_constant_scores():
    labels = np.array([0, 1, 1])
    threshold, accuracy = metrics.oracle_threshold(labels, np.full(3, 4.0))
    assert (threshold, accuracy) == (4.0, pytest.approx(2 / 3))  # t = 0 flags all; nothing beats it
    # Any t in (0, 0.5] separates these; the first one, 0.01, is returned.
    threshold, accuracy = metrics.oracle_threshold(np.array([0, 1]), np.array([0.0, 1.0]))
    assert (threshold, accuracy) == (pytest.approx(0.01), 1.0)


def test_one_class_gives_nan_ranking_metrics():
    result = metrics.classification_metrics(np.zeros(5, int), np.arange(5.0), threshold=2.0)
    assert math.isnan(result["auroc"]) and math.isnan(result["average_precision"])
    assert result["specificity"] == pytest.approx(0.4)


def test_mismatched_lengths_raise_a_readable_error():
    with pytest.raises(ValueError, match="one score per labelled image"):
        metrics.classification_metrics(np.array([0, 1]), np.array([0.1]), threshold=0.5)


def test_pixel_auroc_on_planted_square():
    masks = np.zeros((3, 16, 16), np.uint8)
    masks[1, 4:8, 4:8] = 1
    errors = np.random.default_rng(3).random((3, 16, 16)) * 0.5
    errors[1, 4:8, 4:8] += 1.0
    assert metrics.pixel_auroc(masks, errors) == 1.0
    assert math.isnan(metrics.pixel_auroc(np.zeros_like(masks), errors))


def test_pixel_auroc_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="resize the masks"):
        metrics.pixel_auroc(np.zeros((2, 8, 8)), np.zeros((2, 16, 16)))


def test_reconstruction_quality_is_per_class_means():
    labels = np.array([0, 0, 1, 1, 1])
    result = metrics.reconstruction_quality([30.0, 32.0, 20.0, 22.0, 24.0], [0.9, 0.8, 0.5, 0.6, 0.7], labels)
    assert result == pytest.approx({"psnr": 25.6, "ssim": 0.7, "psnr_normal": 31.0, "psnr_abnormal": 22.0,
                                    "ssim_normal": 0.85, "ssim_abnormal": 0.6})


def test_reconstruction_quality_missing_class_and_perfect_reconstruction():
    result = metrics.reconstruction_quality([math.inf, 30.0], [1.0, 0.9], np.zeros(2))
    assert result["psnr_normal"] == math.inf  # tf.image.psnr of a zero MSE, reported as is
    assert math.isnan(result["psnr_abnormal"]) and math.isnan(result["ssim_abnormal"])


def test_bootstrap_interval_equals_sklearn_auroc_on_the_same_resamples():
    """The vectorised Mann-Whitney AUROC must give roc_auc_score's numbers, ties included."""
    rng = np.random.default_rng(5)
    labels = np.repeat([0, 1], [30, 20])
    scores = np.round(rng.normal(size=50) + labels, 1)  # rounded: many ties
    draws, groups = np.random.default_rng(0), [np.flatnonzero(labels == label) for label in (0, 1)]
    values = []
    for _ in range(200):
        drawn = np.concatenate([draws.choice(group, size=len(group)) for group in groups])
        values.append(roc_auc_score(labels[drawn], scores[drawn]))
    expected = tuple(np.percentile(values, [2.5, 97.5]))
    assert metrics.bootstrap_auroc_interval(labels, scores, resamples=200) == pytest.approx(expected)


def _blob_masks(rng, count=24, size=48):
    """Random masks of a few discs each (some images without any), i.e. regions of many sizes."""
    yy, xx = np.mgrid[:size, :size]
    masks = np.zeros((count, size, size), np.uint8)
    for mask in masks[count // 3:]:
        for _ in range(rng.integers(1, 4)):
            y, x, radius = rng.integers(0, size, 2).tolist() + [rng.uniform(1, 8)]
            mask[(yy - y) ** 2 + (xx - x) ** 2 <= radius ** 2] = 1
    return masks


def _brute_force_pro(masks, maps, max_fpr=0.3, steps=400):
    """PRO the slow, obvious way: every region from scipy's 8-connected labelling, one threshold at a time."""
    regions = []
    for mask, scores in zip(masks, maps):
        labelled, count = ndimage.label(mask, structure=np.ones((3, 3)))
        regions += [scores[labelled == region] for region in range(1, count + 1)]
    normal = maps[masks == 0]
    points = [(np.mean(normal >= t), np.mean([np.mean(region >= t) for region in regions]))
              for t in np.linspace(maps.max() + 1e-6, maps.min(), steps)]
    fpr, pro = np.array(points).T
    inside = fpr < max_fpr
    x, y = np.append(fpr[inside], max_fpr), np.append(pro[inside], np.interp(max_fpr, fpr, pro))
    return np.trapezoid(y, x) / max_fpr


def test_pro_is_one_for_a_perfect_map_and_about_zero_for_an_inverted_one():
    rng = np.random.default_rng(6)
    masks = _blob_masks(rng)
    perfect = masks + 0.9 * rng.random(masks.shape)
    assert metrics.pro_auc(masks, perfect) == pytest.approx(1.0)
    assert metrics.pro_auc(masks, -perfect) == pytest.approx(0.0, abs=1e-3)
    assert metrics.pro_auc(masks, rng.random(masks.shape)) == pytest.approx(0.15, abs=0.02)  # random: the diagonal


def test_pro_finding_one_of_two_equal_regions_is_one_half():
    masks = np.zeros((2, 16, 16), np.uint8)
    masks[1, 2:6, 2:6] = masks[1, 9:13, 9:13] = 1
    maps = np.random.default_rng(7).random(masks.shape) * 0.5
    maps[1, 2:6, 2:6] += 1.0
    maps[1, 9:13, 9:13] = -1.0
    assert metrics.pro_auc(masks, maps) == pytest.approx(0.5, abs=1e-3)


def test_pro_weighs_a_small_region_like_a_large_one_unlike_pixel_auroc():
    """The small region lies under the large one's place in the next image: still its own region (900 / 904 if merged)."""
    masks = np.zeros((2, 64, 64), np.uint8)
    masks[0, 10:40, 10:40] = 1  # 900 pixels, found
    masks[1, 20:22, 20:22] = 1  # 4 pixels, missed
    maps = np.random.default_rng(8).random(masks.shape) * 0.5
    maps[0, 10:40, 10:40] += 1.0
    maps[1, 20:22, 20:22] = -1.0
    assert metrics.pixel_auroc(masks, maps) > 0.99
    assert metrics.pro_auc(masks, maps) == pytest.approx(0.5, abs=1e-3)


def test_pro_regions_are_8_connected():
    """Two squares touching only at a corner are one region (8-connectivity), found by half its pixels."""
    masks = np.zeros((1, 16, 16), np.uint8)
    masks[0, 2:6, 2:6] = masks[0, 6:8, 6:8] = 1  # 16 + 4 pixels meeting diagonally at (5, 5)-(6, 6)
    maps = np.random.default_rng(9).random(masks.shape) * 0.5
    maps[masks > 0] = -1.0
    maps[0, 2:6, 2:4] = 1.0  # 8 of the 20 pixels found: 0.4 as one region; 4-connected it would be 0.25
    assert metrics.pro_auc(masks, maps) == pytest.approx(0.4, abs=1e-3)


def test_pro_agrees_with_a_brute_force_reference_on_random_blobs():
    rng = np.random.default_rng(10)
    for _ in range(3):
        masks = _blob_masks(rng)
        maps = ndimage.gaussian_filter(rng.random(masks.shape), sigma=(0, 1.5, 1.5)) + rng.uniform(0.02, 0.1) * masks
        expected = _brute_force_pro(masks, maps)
        assert 0.2 < expected < 0.95  # neither trivial nor hopeless
        assert metrics.pro_auc(masks, maps) == pytest.approx(expected, abs=1e-3)  # measured: within 2e-4


def test_pro_without_anomalous_pixels_is_nan_and_mismatched_shapes_raise():
    maps = np.random.default_rng(11).random((3, 8, 8))
    assert math.isnan(metrics.pro_auc(np.zeros((3, 8, 8)), maps))
    with pytest.raises(ValueError, match="resize the masks"):
        metrics.pro_auc(np.zeros((3, 4, 4)), maps)
