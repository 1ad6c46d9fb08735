"""Calibrate on validation normals, score the test set, and write metrics, scores and plots."""

import csv
import json

import numpy as np
import tensorflow as tf

from data.pipeline import image_dataset
from evaluation import plots
from evaluation.metrics import (
    classification_metrics, oracle_threshold, pixel_auroc, reconstruction_quality, validation_threshold,
)
from evaluation.scoring import score_batches

SCORE_COLUMNS = ("score", "mse", "ssim_error", "psnr")


def calibrate(detector, validation_ds, quantile):
    """Fix score normalisation and the default threshold from validation normals only (SPEC §4).

    Returns the validation scores; the threshold is their `quantile` and is stored in the
    detector, so exports flag exactly what evaluation flags.
    """
    scorer = detector.get_layer("anomaly_scorer")
    raw = score_batches(detector, validation_ds, keep=("mse", "ssim_error"))
    scorer.calibrate(raw["mse"], raw["ssim_error"])
    scores = score_batches(detector, validation_ds, keep=("score",))["score"]
    scorer.threshold.assign(validation_threshold(scores, quantile))
    return scores


def evaluate(detector, collection, test_indices, test_ds, run_dir, history, threshold_label, per_class=4):
    """Score the test set; write scores.csv, metrics.json and plots/; return the flat metrics dict."""
    labels = collection.labels[test_indices]
    has_masks = collection.masks is not None
    outputs = score_batches(detector, test_ds, keep=SCORE_COLUMNS + (("error_map",) if has_masks else ()))
    scores = outputs["score"]
    threshold = float(detector.get_layer("anomaly_scorer").threshold.numpy())

    metrics = classification_metrics(labels, scores, threshold)
    metrics["oracle_threshold"], metrics["oracle_accuracy"] = oracle_threshold(labels, scores)
    metrics.update(reconstruction_quality(outputs["psnr"], 1.0 - outputs["ssim_error"], labels))
    masks = None
    if has_masks:
        size = outputs["error_map"].shape[1:3]
        masks = tf.image.resize(collection.masks[test_indices][..., None], size, method="nearest").numpy()[..., 0]
        metrics["pixel_auroc"] = pixel_auroc(masks, outputs["error_map"])
    metrics["n_test_normal"] = int((labels == 0).sum())
    metrics["n_test_abnormal"] = int((labels == 1).sum())

    _write_scores(run_dir / "scores.csv", [collection.ids[i] for i in test_indices], labels, outputs)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    _write_plots(detector, run_dir / "plots", collection, test_indices, scores, threshold, threshold_label, masks,
                 history, per_class)
    return metrics


def _write_scores(path, ids, labels, outputs):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", *SCORE_COLUMNS])
        for row, (identifier, label) in enumerate(zip(ids, labels)):
            writer.writerow([identifier, int(label), *(f"{outputs[name][row]:.8g}" for name in SCORE_COLUMNS)])


def _write_plots(detector, directory, collection, test_indices, scores, threshold, threshold_label, masks, history,
                 per_class):
    labels = collection.labels[test_indices]
    plots.plot_roc(labels, scores, directory / "roc.png", title="ROC (test set)")
    plots.plot_f1_confidence(labels, scores, threshold, directory / "f1_confidence.png")
    plots.plot_score_histogram(labels, scores, threshold, directory / "score_histogram.png",
                               threshold_label=threshold_label)
    chosen = np.sort(plots.select_examples(labels, scores, per_class))
    if len(chosen):
        # Decode only the chosen examples, not the whole test set again.
        images = next(iter(image_dataset(collection, test_indices[chosen], detector.input_shape[1], len(chosen))))
        outputs = detector(images, training=False)
        plots.plot_error_grid(
            images, np.asarray(outputs["reconstruction"]), np.asarray(outputs["error_map"]),
            labels[chosen], scores[chosen], directory / "error_grid.png",
            masks=None if masks is None else masks[chosen], per_class=per_class,
        )
    if history:
        plots.plot_loss_curves(history, directory / "loss_curves.png")
