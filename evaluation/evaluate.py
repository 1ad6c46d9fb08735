"""Calibrate on validation normals, score the test sets, and write metrics, scores and plots."""

import csv
import json
import time

import numpy as np

from data.pipeline import image_dataset
from evaluation import plots
from evaluation.metrics import (
    auroc,
    classification_metrics,
    oracle_threshold,
    pixel_auroc,
    pro_auc,
    reconstruction_quality,
    validation_threshold,
)
from evaluation.scoring import module_scorers, score_batches, smooth_error

SCORE_COLUMNS = ("score", "raw_score", "mse", "ssim_error", "error_zmax", "psnr")


def calibrate(detector, reference_ds, validation_ds, quantile):
    """Fix every module's score normalisation and the default threshold from normal images only.

    The per-pixel statistics of the z-map come from `reference_ds`, the training normals (many
    images, so a stable mean and std at every pixel); the term normalisation and the threshold from
    `validation_ds`, normals the model never trained on. Judged by the images that defined "normal"
    at each pixel, normals would look more typical than unseen normals do, so the threshold must
    come from other images (same images for both: 0.68 specificity at the 95 % threshold on the
    phantom; training normals for pixels: 0.95). Returns the validation scores; the threshold is
    their `quantile` and is stored in the detector, so exports flag exactly what evaluation flags.
    """
    scorers = module_scorers(detector)
    moments = pixel_moments(detector, reference_ds, [prefix + "error_map" for _, prefix in scorers.values()])
    for scorer, prefix in scorers.values():
        scorer.calibrate_pixels(*moments[prefix + "error_map"])
    raw = score_batches(detector, validation_ds, keep=[prefix + term for scorer, prefix in scorers.values() for term in scorer.terms])
    for scorer, prefix in scorers.values():
        scorer.calibrate({term: raw[prefix + term] for term in scorer.terms})
    scores = score_batches(detector, validation_ds, keep=("score",))["score"]
    detector.get_layer("score_combiner").threshold.assign(validation_threshold(scores, quantile))
    return scores


def pixel_moments(detector, dataset, keys):
    """{key: (mean, std)} per pixel of the smoothed error maps `keys`, accumulated batch by batch (any dataset size)."""
    count, sums, squares = 0, dict.fromkeys(keys, 0.0), dict.fromkeys(keys, 0.0)
    for batch in dataset:
        outputs = detector(batch, training=False)
        for key in keys:
            smoothed = np.asarray(smooth_error(outputs[key]), np.float64)
            sums[key] = sums[key] + smoothed.sum(axis=0)
            squares[key] = squares[key] + np.square(smoothed).sum(axis=0)
        count += len(batch)
    moments = {}
    for key in keys:
        mean = sums[key] / count
        moments[key] = (mean, np.sqrt(np.maximum(squares[key] / count - np.square(mean), 0.0)))
    return moments


def evaluate(detector, collection, split, batch_size, run_dir, history, threshold_label, per_class=4,
             extra_metrics=None, started=None):
    """Score every test set of the split; write scores.csv, metrics.json and plots/; return the metrics.

    Flat keys describe split.test (for the CAE-D-GAN protocol its 100% set); `test_sets` holds the
    same metrics for each named test set, `module_auroc` each cascade module's AUROC, and
    `per_defect` each abnormal class's AUROC against the test normals. `extra_metrics` (e.g. the
    floors' AUROCs on this split) are added as given. `started` (time.perf_counter() when training
    began) gives `minutes`, the run's training and scoring wall time until metrics.json is written,
    which the report averages per model to put a cost beside each AUROC.
    """
    size = detector.input_shape[1]
    test = split.test
    scorers = module_scorers(detector)
    module_columns = [prefix + "score" for _, prefix in scorers.values() if prefix]
    variant_columns = {
        name: [f"{prefix}score_{name}" for _, prefix in scorers.values()] for name in next(iter(scorers.values()))[0].variants
    }
    masks = collection.masks_for(test, size)  # error maps are kept only where there is ground truth
    keep = (SCORE_COLUMNS + tuple(module_columns) + tuple(c for columns in variant_columns.values() for c in columns)
            + (("error_map", "z_map", "anomaly_map") if masks is not None else ()))
    outputs = score_batches(detector, detector_images(detector, collection, test, batch_size), keep=keep)
    labels = collection.labels[test]
    threshold = float(detector.get_layer("score_combiner").threshold.numpy())

    metrics = _test_set_metrics(labels, outputs, threshold, module_columns)
    # Every score variant's AUROC (a cascade's variant: the mean of its standardised module scores).
    metrics["score_variants"] = {
        name: auroc(labels, np.mean([outputs[column] for column in columns], axis=0))
        for name, columns in variant_columns.items()
    }
    if masks is not None:
        # Localisation: the anomaly map; the raw error map and the z-map for comparison.
        metrics["pixel_auroc"] = pixel_auroc(masks, outputs["anomaly_map"])
        metrics["pixel_auroc_raw_error"] = pixel_auroc(masks, outputs["error_map"])
        metrics["pixel_auroc_z_map"] = pixel_auroc(masks, outputs["z_map"])
        metrics["pro"] = pro_auc(masks, outputs["anomaly_map"])
    if collection.classes is not None:
        metrics["per_defect"] = _per_class_auroc([collection.classes[i] for i in test], labels, outputs["score"])
    subsets = {name: np.isin(test, indices) for name, indices in split.test_sets.items()}  # masks over split.test
    if subsets:
        metrics["test_sets"] = {
            name: _test_set_metrics(labels[subset], {k: v[subset] for k, v in outputs.items()}, threshold, module_columns)
            for name, subset in subsets.items()
        }

    metrics.update(extra_metrics or {})
    if started is not None:
        metrics["minutes"] = (time.perf_counter() - started) / 60
    columns = [c for c in SCORE_COLUMNS if c in outputs] + module_columns + [c for cs in variant_columns.values() for c in cs]
    _write_scores(run_dir / "scores.csv", [collection.ids[i] for i in test], labels, outputs, threshold, columns)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    _write_plots(detector, run_dir / "plots", collection, test, outputs["score"], threshold, threshold_label, masks,
                 history, per_class)
    _write_comparison_rocs(run_dir / "plots", labels, outputs, module_columns, subsets)
    return metrics


def _write_comparison_rocs(directory, labels, outputs, module_columns, subsets):
    """roc_modules.png: one curve per cascade module and the cascade; roc_test_sets.png: one per test set."""
    if module_columns:
        curves = {column.removesuffix("_score"): (labels, outputs[column]) for column in module_columns}
        curves["cascade"] = (labels, outputs["score"])
        plots.plot_roc_curves(curves, directory / "roc_modules.png", title="ROC per module (test set)")
    if subsets:
        curves = {
            f"{name}% abnormals" if name.isdigit() else name: (labels[subset], outputs["score"][subset])
            for name, subset in subsets.items()
        }
        plots.plot_roc_curves(curves, directory / "roc_test_sets.png", title="ROC per test set")


def _test_set_metrics(labels, outputs, threshold, module_columns):
    metrics = classification_metrics(labels, outputs["score"], threshold)
    metrics["oracle_threshold"], metrics["oracle_accuracy"] = oracle_threshold(labels, outputs["score"])
    # The sweep's best can be "flag every image" (accuracy = the abnormal share): say so wherever it is shown.
    metrics["oracle_flags_all"] = bool(np.all(outputs["score"] >= metrics["oracle_threshold"]))
    if "psnr" in outputs:  # a model that rebuilds its input
        metrics.update(reconstruction_quality(outputs["psnr"], 1.0 - outputs["ssim_error"], labels))
    if module_columns:
        metrics["module_auroc"] = {
            column.removesuffix("_score"): auroc(labels, outputs[column]) for column in module_columns
        }
    metrics["n_test_normal"] = int((labels == 0).sum())
    metrics["n_test_abnormal"] = int((labels == 1).sum())
    return metrics


def detector_images(detector, collection, indices, batch_size):
    """The images of `indices` batched as `detector` reads them: its input size and channels."""
    _, size, _, channels = detector.input_shape
    return image_dataset(collection, indices, size, batch_size, channels=channels)


def _per_class_auroc(classes, labels, scores):
    """Each abnormal class (defect type, disease) against all test normals."""
    classes, normal = np.asarray(classes), labels == 0
    return {
        name: auroc(labels[normal | (classes == name)], scores[normal | (classes == name)])
        for name in sorted(set(classes[labels == 1]))
    }


def _write_scores(path, ids, labels, outputs, threshold, columns):
    """One row per test image; `is_anomalous` (score >= threshold) is the exported model's verdict, and the
    threshold is repeated on every row so the file reads on its own."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "is_anomalous", "threshold", *columns])
        for row, (identifier, label) in enumerate(zip(ids, labels)):
            writer.writerow([identifier, int(label), int(outputs["score"][row] >= threshold), f"{threshold:.8g}",
                             *(f"{outputs[name][row]:.8g}" for name in columns)])


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
        images = next(iter(detector_images(detector, collection, test_indices[chosen], len(chosen))))
        outputs = detector(images, training=False)
        reconstructions = np.asarray(outputs["reconstruction"]) if "reconstruction" in outputs else None
        plots.plot_error_grid(
            images, reconstructions, np.asarray(outputs["anomaly_map"]),
            labels[chosen], scores[chosen], directory / "error_grid.png",
            masks=None if masks is None else masks[chosen], per_class=per_class,
        )
    if history:
        plots.plot_loss_curves(history, directory / "loss_curves.png")
