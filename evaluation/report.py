"""Run summaries: the papers' reference numbers, the end-of-run table, final TensorBoard entries."""

import tensorflow as tf

TABLE_COLUMNS = ("auroc", "accuracy", "precision", "recall", "f1", "specificity")
_ROWS = {  # model: (brain_mri Table I, mvtec_ad bottle Table II, plant_village Table III); columns as TABLE_COLUMNS
    "improved_bigan": ((0.892, 0.854, 0.959, 0.862, 0.905, 0.815), (0.921, 0.823, 0.981, 0.813, 0.892, 0.782),
                       (0.939, 0.919, 0.969, 0.931, 0.949, 0.850)),
    "bigan": ((0.852, 0.820, 0.950, 0.820, 0.890, 0.780), (0.872, 0.792, 0.953, 0.784, 0.864, 0.753),
              (0.852, 0.820, 0.949, 0.820, 0.879, 0.780)),
    "ganomaly": ((0.840, 0.810, 0.947, 0.810, 0.875, 0.760), (0.854, 0.781, 0.941, 0.771, 0.847, 0.732),
                 (0.840, 0.810, 0.946, 0.810, 0.872, 0.770)),
    "anogan": ((0.837, 0.800, 0.941, 0.800, 0.860, 0.740), (0.832, 0.773, 0.932, 0.762, 0.834, 0.715),
               (0.837, 0.800, 0.943, 0.800, 0.865, 0.760)),
    "vae": ((0.835, 0.774, 0.934, 0.766, 0.844, 0.695), (0.803, 0.743, 0.903, 0.735, 0.813, 0.673),
            (0.835, 0.754, 0.926, 0.766, 0.839, 0.695)),
    "beta_vae": ((0.830, 0.766, 0.931, 0.751, 0.832, 0.720), (0.791, 0.736, 0.892, 0.724, 0.802, 0.662),
                 (0.830, 0.746, 0.928, 0.751, 0.832, 0.720)),
    "fcae": ((0.796, 0.787, 0.939, 0.785, 0.855, 0.696), (0.764, 0.751, 0.911, 0.752, 0.823, 0.684),
             (0.796, 0.769, 0.927, 0.785, 0.849, 0.690)),
    "cae": ((0.409, 0.555, 0.840, 0.653, 0.726, 0.371), (0.382, 0.523, 0.803, 0.604, 0.683, 0.347),
            (0.409, 0.606, 0.838, 0.653, 0.731, 0.370)),
    "vq_vae": ((0.411, 0.446, 0.908, 0.402, 0.571, 0.484), (0.395, 0.427, 0.872, 0.374, 0.526, 0.438),
               (0.789, 0.889, 0.938, 0.928, 0.933, 0.695)),
    "cvae": ((0.810, 0.773, 0.928, 0.789, 0.853, 0.695), (0.781, 0.739, 0.888, 0.748, 0.808, 0.669),
             (0.410, 0.711, 0.896, 0.773, 0.831, 0.550)),
}
# Improved BiGAN paper (Das et al.), Tables I-III; MVTec AD numbers are for the `bottle` category.
PAPER_RESULTS = {
    (model, dataset): dict(zip(TABLE_COLUMNS, row))
    for model, rows in _ROWS.items()
    for dataset, row in zip(("brain_mri", "mvtec_ad-bottle", "plant_village"), rows)
}


def paper_reference(config):
    """The paper's numbers for this model and dataset, or None where the paper reports none."""
    dataset = config["dataset"] + (f"-{config['category']}" if config.get("category") else "")
    return PAPER_RESULTS.get((config["model"], dataset))


def summary_table(metrics, config):
    """Plain-text table of the headline metrics, with the paper's numbers beside ours where they exist."""
    reference = paper_reference(config)
    rows = [("metric", "ours", "paper" if reference else "")]
    for name in (*TABLE_COLUMNS, "average_precision", "threshold", "oracle_accuracy", "pixel_auroc",
                 "psnr_normal", "psnr_abnormal", "ssim_normal", "ssim_abnormal"):
        if name in metrics:
            paper = f"{reference[name]:.3f}" if reference and name in reference else ""
            rows.append((name, f"{metrics[name]:.3f}", paper))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def write_tensorboard_results(log_dir, metrics, roc_png, step):
    """Final metrics as scalars and a markdown table, and the ROC plot as an image."""
    with tf.summary.create_file_writer(str(log_dir)).as_default(step=step):
        for name, value in metrics.items():
            tf.summary.scalar(f"test/{name}", float(value))
        table = "\n".join(["| metric | value |", "|---|---|"] + [f"| {k} | {v:.4g} |" for k, v in metrics.items()])
        tf.summary.text("test/metrics", table)
        tf.summary.image("test/roc", tf.image.decode_png(tf.io.read_file(str(roc_png)))[None])
