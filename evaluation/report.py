"""Run summaries: the papers' reference numbers, end-of-run tables, report.md/csv/txt/png, final TensorBoard entries."""

import csv
import json
import math
import os
import pathlib

import numpy as np
import tensorflow as tf

from evaluation import plots
from evaluation.metrics import BOOTSTRAP_RESAMPLES, bootstrap_auroc_interval
from models.registry import FLOOR_NAMES, paper_score

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
# Improved BiGAN paper (Das et al.), Tables I-III, by the dataset label they stand beside. Table II is
# MVTec AD's `bottle` only. Table III's "Plant Disease dataset" is healthy vs diseased leaves with no
# species named, so it stands beside plant_village with every species pooled (no --category), not
# beside one species: a single species is an easier, different task.
PAPER_SOURCES = {
    "brain_mri": "Improved BiGAN Table I, brain MRI",
    "mvtec_ad-bottle": "Improved BiGAN Table II, MVTec AD bottle",
    "plant_village": "Improved BiGAN Table III, Plant Disease, all species pooled",
}
PAPER_RESULTS = {
    (model, dataset): dict(zip(TABLE_COLUMNS, row))
    for model, rows in _ROWS.items()
    for dataset, row in zip(PAPER_SOURCES, rows)
}
# CAE-D-GAN paper, Table 3 (precision, recall, F1, AUROC, PSNR, SSIM). The paper does not say which
# of its three chest X-ray datasets the table is for, so it stands beside all three.
_CHEST_COLUMNS = ("precision", "recall", "f1", "auroc", "psnr", "ssim")
_CHEST_ROWS = {
    "ganomaly": (0.80, 0.90, 0.84, 0.76, 26.19, 0.79),
    "efficient_gan": (0.81, 0.86, 0.86, 0.78, 26.58, 0.83),
    "skip_ganomaly": (0.83, 0.89, 0.90, 0.82, 27.93, 0.91),
    "egbad": (0.83, 0.93, 0.88, 0.80, 27.32, 0.89),
    "cae_d_gan": (0.85, 0.95, 0.91, 0.86, 28.46, 0.94),
}
PAPER_RESULTS.update({
    (model, f"chest_xray_{n}"): dict(zip(_CHEST_COLUMNS, row)) for model, row in _CHEST_ROWS.items() for n in (1, 2, 3)
})
PAPER_SOURCES.update({f"chest_xray_{n}": "CAE-D-GAN Table 3, chest X-ray, dataset not stated" for n in (1, 2, 3)})
# CAE-D-GAN paper, Figure 9: module AUROCs (modules 1, 2, 3) on chest X-ray dataset 1 per test set.
PAPER_MODULE_AUROC = {
    "25": (0.92, 0.87, 0.84), "50": (0.91, 0.90, 0.84), "75": (0.92, 0.93, 0.86), "100": (0.91, 0.90, 0.85),
}
PAPER_RESULTS[("cae_d_gan", "chest_xray_1")].update(
    {f"module_{index}_auroc": value for index, value in enumerate(PAPER_MODULE_AUROC["100"], start=1)}
)
PAPER_SOURCES["chest_xray_1"] += "; module AUROCs Fig. 9, dataset 1"
_SUMMARY_ROWS = (*TABLE_COLUMNS, "balanced_accuracy", "average_precision", "threshold", "oracle_accuracy", "pixel_auroc",
                 "pro", "psnr", "ssim", "psnr_normal", "psnr_abnormal", "ssim_normal", "ssim_abnormal")
REPORT_COLUMNS = (*TABLE_COLUMNS, "balanced_accuracy", "average_precision", "oracle_accuracy", "pixel_auroc", "pro",
                  "psnr", "ssim", "minutes")


# Beside report.md: the run folders (relative to it) behind the report's rows, so a later call into the same --out
# merges its rows with these instead of overwriting them.
REPORT_RUNS = "report_runs.json"


def dataset_label(config):
    return config["dataset"] + (f"-{config['category']}" if config.get("category") else "")


def paper_reference(config):
    """The papers' numbers for this model and dataset, or None where the papers report none."""
    return PAPER_RESULTS.get((config["model"], dataset_label(config)))


def paper_source(config):
    """Which paper, table and dataset the numbers beside this run come from; None where there are none."""
    return PAPER_SOURCES[dataset_label(config)] if paper_reference(config) else None


def _table(rows):
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def summary_table(metrics, config):
    """Plain-text tables of the headline metrics with the papers' numbers beside ours where they exist;
    then module AUROCs and the per-test-set AUROCs when the run has them."""
    reference = paper_reference(config) or {}
    rows = [("metric", "ours", f"paper ({paper_source(config)})" if reference else "")]
    for name in _SUMMARY_ROWS:
        if name in metrics:
            flags_all = name == "oracle_accuracy" and metrics.get("oracle_flags_all")
            rows.append((name, f"{metrics[name]:.3f}" + (" (flags every test image)" if flags_all else ""),
                         f"{reference[name]:.3f}" if name in reference else ""))
    text = _table(rows)
    if metrics.get("score_variants"):
        text += "\n\nAUROC per score variant (--score): " + " · ".join(
            f"{name} {value:.3f}" + (" (used)" if name == config.get("score") else "")
            for name, value in metrics["score_variants"].items())
    test_sets = metrics.get("test_sets") or {"all": metrics}
    modules = list(metrics.get("module_auroc", {}))
    if len(test_sets) > 1 or modules:
        paper_modules = (config["model"], dataset_label(config)) == ("cae_d_gan", "chest_xray_1")  # Fig. 9's dataset
        header = ("test set", "auroc", *(f"{m} auroc" for m in modules), *(["paper (Fig. 9, dataset 1)"] if paper_modules else []))
        rows = [header]
        for name, values in test_sets.items():
            paper = " / ".join(f"{v:.2f}" for v in PAPER_MODULE_AUROC.get(name, ())) if paper_modules else None
            rows.append((name, f"{values['auroc']:.3f}", *(f"{values['module_auroc'][m]:.3f}" for m in modules),
                         *([paper] if paper is not None else [])))
        text += "\n\n" + _table(rows)
    if metrics.get("floor"):
        text += "\n\n" + floor_line(metrics["auroc"], metrics["floor"], "floor (same split)")
    if metrics.get("floor_same_score"):
        text += "\n" + floor_line(metrics["auroc"], metrics["floor_same_score"],
                                   f"floor scored like the model ({config['score']})")
    return text


def floor_line(auroc, floor, label):
    """The model's AUROC beside the floors' on the same split, and plainly which is better."""
    best = max(floor.values())
    verdict = ("floor wins: a classical detector does at least as well" if best >= auroc
               else f"the model beats the best floor by {auroc - best:.3f}")
    floors = ", ".join(f"{name} {value:.3f}" for name, value in floor.items())
    return f"AUROC {auroc:.3f} vs {label} {floors}: {verdict}."


def _numeric(metrics, prefix=""):
    """Flatten nested metric dicts to {"a/b": float} for TensorBoard (text entries, e.g. a rule's name, are left out)."""
    flat = {}
    for name, value in metrics.items():
        if isinstance(value, dict):
            flat.update(_numeric(value, f"{prefix}{name}/"))
        elif not isinstance(value, str):
            flat[prefix + name] = float(value)
    return flat


def write_tensorboard_results(log_dir, metrics, roc_png, step):
    """Final metrics as scalars and a markdown table, and the ROC plot as an image."""
    flat = _numeric(metrics)
    with tf.summary.create_file_writer(str(log_dir)).as_default(step=step):
        for name, value in flat.items():
            tf.summary.scalar(f"test/{name}", value)
        table = "\n".join(["| metric | value |", "|---|---|"] + [f"| {k} | {v:.4g} |" for k, v in flat.items()])
        tf.summary.text("test/metrics", table)
        tf.summary.image("test/roc", tf.image.decode_png(tf.io.read_file(str(roc_png)))[None])


def write_tensorboard_image(log_dir, name, png, step=0):
    """A PNG (e.g. plots/synthetic_samples.png) as a TensorBoard image, so it sits beside the run's curves."""
    with tf.summary.create_file_writer(str(log_dir)).as_default(step=step):
        tf.summary.image(name, tf.image.decode_png(tf.io.read_file(str(png)), channels=3)[None])


def _mean_std(values):
    """Mean and std of the measured values; the std of one value is undefined (nan), not 0."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return float("nan"), float("nan")
    return float(np.mean(values)), float(np.std(values)) if len(values) > 1 else float("nan")


def _csv_row(row):
    """A report row as report.csv writes it: an undefined std (one seed) is an empty cell, not 0.0 or nan."""
    return {key: "" if key.endswith("_std") and math.isnan(value) else value for key, value in row.items()}


def _report_values(metrics):
    """A run's reportable numbers: its flat metrics and each cascade module's AUROC as module_N_auroc."""
    return {**metrics, **{f"{module}_auroc": value for module, value in metrics.get("module_auroc", {}).items()}}


def report_columns(results):
    """REPORT_COLUMNS, then the module AUROCs when any run is a cascade."""
    modules = sorted({f"{module}_auroc" for _, metrics, _ in results for module in metrics.get("module_auroc", {})})
    return (*REPORT_COLUMNS, *modules)


def run_scores(run_dir):
    """(labels, scores) of a run's test images from its scores.csv, or None without the file."""
    path = pathlib.Path(run_dir) / "scores.csv"
    if not path.is_file():
        return None
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [int(row["label"]) for row in rows], [float(row["score"]) for row in rows]


def run_auroc_interval(run_dir):
    """A run's bootstrap AUROC interval from its scores.csv; (nan, nan) without the file."""
    scored = run_scores(run_dir)
    return bootstrap_auroc_interval(*scored) if scored else (float("nan"), float("nan"))


def _add_better_floor(rows):
    """Each deep row gets the better floor's mean AUROC on the same dataset and its own AUROC minus that."""
    for row in rows:
        floors = [other for other in rows if other["dataset"] == row["dataset"] and other["model"] in FLOOR_NAMES
                  and (other["profile"], other["seeds"]) == (row["profile"], row["seeds"])  # the same splits
                  and not math.isnan(other["auroc_mean"])]
        best = max(floors, key=lambda other: other["auroc_mean"]) if floors and row["model"] not in FLOOR_NAMES else None
        row["better_floor"] = best["model"] if best else ""
        row["better_floor_auroc"] = best["auroc_mean"] if best else float("nan")
        row["auroc_minus_floor"] = row["auroc_mean"] - row["better_floor_auroc"]


def _by_auroc(rows):
    """Datasets in the order they ran; within each, the highest mean AUROC first and rows without one last,
    so a reader finds the ranking, and where the floors fall in it, without sorting by eye."""
    order = list(dict.fromkeys(row["dataset"] for row in rows))
    return sorted(rows, key=lambda row: (order.index(row["dataset"]), math.isnan(row["auroc_mean"]),
                                         -np.nan_to_num(row["auroc_mean"])))


def report_rows(results):
    """One row per (dataset, model), ranked by AUROC within each dataset: mean and std over seeds of the
    report columns (minutes: each run's training and scoring time), the paper's numbers and their source,
    the 95 % bootstrap AUROC interval (mean of the per-seed bounds) and, for deep models, the better floor."""
    columns = report_columns(results)
    groups = {}
    for config, metrics, run_dir in results:
        groups.setdefault(row_key(config), []).append((config, metrics, run_dir))
    rows = []
    for (dataset, model, profile, score, synthetic), runs in groups.items():
        row = {"dataset": dataset, "model": model, "floor": model in FLOOR_NAMES, "synthetic_anomalies": synthetic,
               "seeds": ",".join(str(c["seed"]) for c, _, _ in runs), "runs": " ".join(str(d) for _, _, d in runs),
               "paper_source": paper_source(runs[0][0]) or ""}
        reference = paper_reference(runs[0][0]) or {}
        for column in columns:
            row[f"{column}_mean"], row[f"{column}_std"] = _mean_std([_report_values(m).get(column) for _, m, _ in runs])
            row[f"{column}_paper"] = reference.get(column, float("nan"))
        row["oracle_flags_all_runs"] = sum(bool(m.get("oracle_flags_all")) for _, m, _ in runs)
        # The model's AUROC under its own paper's score, when the call scored it another way (e.g. quick's error_zmax).
        own = None if row["floor"] else paper_score(model)
        own_values = [m.get("score_variants", {}).get(own) for c, m, _ in runs if c.get("score") != own]
        row["paper_score"] = own if own_values and None not in own_values else ""
        row["paper_score_auroc_mean"], row["paper_score_auroc_std"] = (
            _mean_std(own_values) if row["paper_score"] else (float("nan"),) * 2)
        intervals = np.array([run_auroc_interval(run_dir) for _, _, run_dir in runs])
        row["auroc_ci95_low"], row["auroc_ci95_high"] = (
            (float("nan"),) * 2 if np.isnan(intervals).all() else np.nanmean(intervals, axis=0).tolist())
        # The floors under this model's own score, as its runs recorded them (metrics.json: floor_same_score).
        same = {name: np.mean([m["floor_same_score"][name] for _, m, _ in runs]) for name in FLOOR_NAMES
                if all(name in m.get("floor_same_score", {}) for _, m, _ in runs)}
        best = max(same, key=same.get) if same else ""
        row["same_score_floor"], row["same_score_floor_auroc"] = best, same.get(best, float("nan"))
        row["profile"], row["score"] = profile or "", score or ""
        rows.append(row)
    for row in rows:  # a model in two rows of one dataset (merged calls): say which settings each row is
        twice = sum((other["dataset"], other["model"], other["synthetic_anomalies"])
                    == (row["dataset"], row["model"], row["synthetic_anomalies"]) for other in rows) > 1
        row["setting"] = f"profile {row['profile']}, score {row['score']}" if twice else ""
    _add_better_floor(rows)
    return _by_auroc(rows)


def row_key(config):
    """What one report row stands for: a model on a dataset (and category) under one profile and score variant,
    trained with synthetic anomalies or not (--synthetic-anomalies: another model in effect)."""
    return (dataset_label(config), config["model"], config.get("profile"), config.get("score"),
            bool(config.get("architecture", {}).get("synthetic_anomalies")))


def merged_results(results, folder):
    """This call's results, then the runs of earlier calls' rows in `folder` (its REPORT_RUNS) that this call did not
    replace: a row of the same row_key is this call's; every other earlier row is kept, recomputed from its runs."""
    listed = pathlib.Path(folder) / REPORT_RUNS
    try:
        earlier_dirs = [pathlib.Path(folder) / path for path in json.loads(listed.read_text())]
    except (OSError, ValueError):
        return list(results)
    replaced = {row_key(config) for config, _, _ in results}
    current = {pathlib.Path(run_dir).resolve() for _, _, run_dir in results}
    earlier = []
    for run_dir in earlier_dirs:
        try:
            config, metrics = (json.loads((run_dir / name).read_text()) for name in ("config.json", "metrics.json"))
        except (OSError, ValueError):
            continue  # a run folder deleted since: its row goes with it
        if row_key(config) not in replaced and run_dir.resolve() not in current and "auroc" in metrics:
            earlier.append((config, metrics, run_dir))
    return [*results, *earlier]


def model_label(row):
    """The model's name, marked when it is a classical floor (and with its profile and score when the model has
    two rows of one dataset; `+synthetic` when trained with --synthetic-anomalies), as every table and figure shows it."""
    return (row["model"] + (" (floor)" if row["floor"] else "") + ("+synthetic" if row.get("synthetic_anomalies") else "")
            + (f" [{row['setting']}]" if row.get("setting") else ""))


def _number(value, digits=3):
    return "–" if math.isnan(value) else f"{value:.{digits}f}"


def _mean_std_cell(row, column):
    mean, std = row[f"{column}_mean"], row[f"{column}_std"]
    return _number(mean) + ("" if math.isnan(std) else f" ± {std:.3f}")  # one seed: the mean only


def _markdown_cell(row, column):
    text, paper = _mean_std_cell(row, column), row[f"{column}_paper"]
    if column == "oracle_accuracy" and row["oracle_flags_all_runs"]:  # accuracy = the abnormal share
        text += f" [flags every image in {row['oracle_flags_all_runs']} of {len(row['seeds'].split(','))} runs]"
    return text + ("" if math.isnan(paper) else f" ({paper:.3f})")


def _interval_cell(row):
    low, high = row["auroc_ci95_low"], row["auroc_ci95_high"]
    return "–" if math.isnan(low) else f"{low:.3f}–{high:.3f}"


def _paper_score_cell(row):
    return f"{_mean_std_cell(row, 'paper_score_auroc')} ({row['paper_score']})" if row["paper_score"] else "–"


def _floor_cell(row, prefix="better_floor"):
    if not row[prefix]:
        return "–"
    auroc = row[f"{prefix}_auroc"]
    return f"{row[prefix]} {auroc:.3f} ({row['auroc_mean'] - auroc:+.3f})"


def _by_dataset(rows):
    """{dataset: its rows} in report order."""
    groups = {}
    for row in rows:
        groups.setdefault(row["dataset"], []).append(row)
    return groups


def _paper_note(rows):
    """Where one dataset's paper numbers come from, said wherever they are shown."""
    sources = {row["paper_source"] for row in rows} - {""}
    return f"paper: {sources.pop()}" if sources else "no paper numbers for this dataset"


def console_table(rows):
    """The report in a terminal's 100 columns, one block per dataset: what a reader checks first."""
    blocks = []
    for dataset, group in _by_dataset(rows).items():
        table = [("model", "AUROC", "95% CI", "AP", "paper AUROC", "minutes", "AUROC, paper's score")]
        table += [(model_label(row), _mean_std_cell(row, "auroc"), _interval_cell(row),
                   _number(row["average_precision_mean"]), _number(row["auroc_paper"]),
                   _number(row["minutes_mean"], 2), _paper_score_cell(row)) for row in group]
        blocks.append(f"{dataset} ({_paper_note(group)})\n{_table(table)}")
    return "\n\n".join(blocks)


def _comparison_panels(rows):
    """report.png's panels: one per dataset, one entry per row in report order."""
    return {f"{dataset}\n{_paper_note(group)}": [
        {"label": model_label(row), "auroc": row["auroc_mean"], "floor": row["floor"], "paper": row["auroc_paper"],
         "interval": (row["auroc_ci95_low"], row["auroc_ci95_high"])} for row in group]
        for dataset, group in _by_dataset(rows).items()}


def _roc_panels(results, rows):
    """report_roc.png's panels: per dataset, each model's run with the call's first seed, in report order;
    runs without scores.csv are left out, and so is a dataset with none."""
    seed = results[0][0]["seed"]
    first = {}
    for config, _, run_dir in results:
        if config["seed"] == seed:
            first.setdefault(tuple(value or "" for value in row_key(config)), run_dir)
    panels = {}
    for dataset, group in _by_dataset(rows).items():
        keys = {model_label(row): (dataset, row["model"], row["profile"], row["score"], row["synthetic_anomalies"] or "")
                for row in group}
        curves = {label: run_scores(first[key]) for label, key in keys.items() if key in first}
        curves = {name: scored for name, scored in curves.items() if scored}
        if curves:
            panels[f"{dataset}, seed {seed}"] = curves
    return panels


def write_report(results, out_root):
    """report.md, .csv, .txt (the console table), .png (AUROC per model) and report_roc.png (ROC of every
    model, first seed) for a multi-model / multi-seed / multi-category call; returns their path stem.

    An earlier call's report in the same folder is merged, not overwritten: its rows stay unless this call has a
    row of the same dataset, model, profile and score (merged_results); REPORT_RUNS lists the runs of every row."""
    labels = {dataset_label(config) for config, _, _ in results}
    datasets = {config["dataset"] for config, _, _ in results}
    # runs/<dataset>[-<category>]/report for one dataset (all categories: runs/<dataset>/report), else runs/multi/.
    folder = labels.pop() if len(labels) == 1 else datasets.pop() if len(datasets) == 1 else "multi"
    stem = pathlib.Path(out_root) / folder / "report"
    stem.parent.mkdir(parents=True, exist_ok=True)
    results = merged_results(results, stem.parent)
    rows = report_rows(results)
    (stem.parent / REPORT_RUNS).write_text(json.dumps(
        [os.path.relpath(run_dir, stem.parent) for _, _, run_dir in results], indent=1))
    with open(stem.with_suffix(".csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(map(_csv_row, rows))

    columns = report_columns(results)
    extra = ("auroc 95% CI", "better floor (auroc, model − floor)", "better floor with the model's score",
             "auroc with its paper's score")
    lines = ["| dataset | model | seeds | " + " | ".join((*columns, *extra)) + " |",
             "|---|---|---|" + "---|" * (len(columns) + len(extra))]
    lines += [f"| {row['dataset']} | {model_label(row)} | {row['seeds']} | "
              + " | ".join([*(_markdown_cell(row, c) for c in columns), _interval_cell(row), _floor_cell(row),
                                _floor_cell(row, "same_score_floor"), _paper_score_cell(row)]) + " |"
              for row in rows]
    note = ("Rows are ranked by mean AUROC within each dataset; (floor) marks the classical floors. "
            "Mean ± std over seeds (one seed: the mean only); the paper's own number, where it reports one, in parentheses. "
            "Thresholded metrics use the validation-normal threshold; oracle_accuracy is the papers' test-set sweep. "
            "minutes: a run's wall time for training and scoring the test set (not plots or export; a resumed "
            "run counts its last call only). "
            f"auroc 95% CI: percentile bootstrap over {BOOTSTRAP_RESAMPLES} resamples of each run's test images "
            "(with replacement, within each class; fixed RNG seed) from its scores.csv; over several seeds, the mean "
            "of the per-seed bounds. better floor: the higher-AUROC classical floor (pca, knn) on the same dataset "
            "and seeds, each with its own score (PCA reconstruction error, kNN distance). With the model's score: the "
            "same floors scored by the deep model's score variant (e.g. error_zmax), which separates what the score "
            "does from what the network learns. auroc with its paper's score: the same runs scored by the variant "
            "the model's own paper uses (its --profile paper default), when the call used another. "
            f"Calls into the same folder merge: a row (dataset, model, profile, score) of a later call replaces the "
            f"earlier one, every other earlier row stays; {REPORT_RUNS} lists the runs behind the rows.")
    sources = "\n".join(f"- {dataset}: {_paper_note(group)}" for dataset, group in _by_dataset(rows).items())
    stem.with_suffix(".md").write_text(f"# Results\n\n{note}\n\n{sources}\n\n" + "\n".join(lines) + "\n")
    stem.with_suffix(".txt").write_text(console_table(rows) + "\n")
    plots.plot_auroc_comparison(_comparison_panels(rows), stem.with_suffix(".png"))
    roc_panels = _roc_panels(results, rows)
    if roc_panels:
        plots.plot_roc_overlay(roc_panels, stem.with_name("report_roc.png"))
    return stem
