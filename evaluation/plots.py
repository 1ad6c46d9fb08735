"""Diagnostic plots of a run, written as PNGs under a run's ``plots/``.

Each function draws one self-explanatory figure (title, axis labels, legend, the decision
threshold marked and named), saves it, closes it, and returns the path. The report's two figures
(report.png, report_roc.png) are also built by `*_figure` functions that return the figure unsaved,
so tests can check what it shows, not only that a PNG exists. Colours are fixed per
meaning across plots: normal = blue, abnormal = orange, threshold = black.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")  # headless: runs on servers and in tests without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import colors as mcolors  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from sklearn import metrics as skm  # noqa: E402

from evaluation.metrics import minmax_bounds  # noqa: E402
from training.callbacks import error_heatmap  # noqa: E402 (TensorBoard's heat maps are drawn alike)

DPI = 120
FIGSIZE = (6.0, 4.5)
NORMAL_COLOUR = "tab:blue"
ABNORMAL_COLOUR = "tab:orange"
THRESHOLD_COLOUR = "black"
OURS_COLOUR, FLOOR_COLOUR, PAPER_COLOUR = "tab:green", "grey", "black"  # the model comparison (report.png)
MASK_COLOUR_RGB = (0, 255, 0)
# Pale, line-free colours so phase shading never reads as a loss curve.
PHASE_COLOURS = ("lightgrey", "navajowhite", "lightcyan", "thistle")
# Legends go below the axes: inside, they hide curves wherever the data happens to put them.
LEGEND_BELOW = {"loc": "upper center", "bbox_to_anchor": (0.5, -0.14), "ncol": 2}
GRID_COLUMNS = ("input", "reconstruction", "anomaly map", "overlay")


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _as_arrays(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(labels).astype(int).ravel(), np.asarray(scores, dtype=np.float64).ravel()


def plot_roc(labels, scores, path, title="ROC") -> Path:
    """ROC curve with its AUROC in the legend and the chance diagonal for reference."""
    return plot_roc_curves({"model": (labels, scores)}, path, title)


def plot_roc_curves(curves, path, title="ROC") -> Path:
    """Several ROC curves on one set of axes ({legend name: (labels, scores)}), e.g. one per cascade
    module or per test set (CAE-D-GAN Figs. 9-10); a curve whose labels hold one class is named as undefined."""
    fig, ax = plt.subplots(figsize=FIGSIZE)
    _draw_rocs(ax, curves, title)
    ax.legend(loc="lower right")
    return _save(fig, path)


def _draw_rocs(ax: plt.Axes, curves, title) -> None:
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance (AUROC 0.5)")
    single = len(curves) == 1
    for name, (labels, scores) in curves.items():
        labels, scores = _as_arrays(labels, scores)
        if np.unique(labels).size == 2:
            fpr, tpr, _ = skm.roc_curve(labels, scores)
            auroc = skm.roc_auc_score(labels, scores)
            ax.plot(fpr, tpr, linewidth=2, color=ABNORMAL_COLOUR if single else None, label=f"{name} (AUROC {auroc:.3f})")
        elif single:
            ax.text(0.5, 0.6, "ROC undefined:\nthe test set holds one class only", ha="center",
                    bbox={"facecolor": "white", "edgecolor": "grey"})
        else:
            ax.plot([], [], label=f"{name} (undefined: one class only)")
    ax.set(
        xlim=(0, 1), ylim=(0, 1.01), title=title,
        xlabel="false positive rate (normals flagged)", ylabel="true positive rate (anomalies caught)",
    )
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)


def roc_overlay_figure(panels) -> plt.Figure:
    """One ROC panel per dataset ({title: {model: (labels, scores)}}), every model's curve on it, so the
    models' trade-offs compare at a glance; distinct colours (tab20 beyond 10 curves, as 16 models need; its
    pairs of light and dark shades read as one colour when fewer would do) and the legend below the axes."""
    fig, axes = plt.subplots(1, len(panels), squeeze=False, layout="constrained",
                             figsize=(FIGSIZE[0] * len(panels), FIGSIZE[1] + 2.5))
    for ax, (title, curves) in zip(axes[0], panels.items()):
        ax.set_prop_cycle(color=plt.get_cmap("tab10" if len(curves) <= 10 else "tab20").colors)
        _draw_rocs(ax, curves, title)
        ax.legend(fontsize=7, **LEGEND_BELOW)
    return fig


def auroc_comparison_figure(panels) -> plt.Figure:
    """One panel per dataset, one line per model, ranked best at the top: our mean AUROC over seeds as a
    point with its 95 % bootstrap interval as whiskers, the paper's AUROC as a hollow diamond, the
    floors in grey and the better floor's AUROC as a dashed vertical line, so whether a model beats
    the classical floor, and the paper, reads off without a table.

    panels: {title: [{"label", "auroc", "interval": (low, high), "paper", "floor": bool}, ...]}, best first.
    """
    rows = max(len(entries) for entries in panels.values())
    fig, axes = plt.subplots(1, len(panels), squeeze=False, layout="constrained",
                             figsize=(FIGSIZE[0] * len(panels), 1.8 + 0.32 * rows))
    for ax, (title, entries) in zip(axes[0], panels.items()):
        positions = np.arange(len(entries))
        for floor, colour, name in ((False, OURS_COLOUR, "ours: mean over seeds, 95 % bootstrap interval"),
                                    (True, FLOOR_COLOUR, "classical floor, same split")):
            chosen = [i for i, entry in enumerate(entries) if entry["floor"] == floor]
            if chosen:
                auroc = np.array([entries[i]["auroc"] for i in chosen])
                whiskers = np.abs(np.array([entries[i]["interval"] for i in chosen]).T - auroc)
                ax.errorbar(auroc, positions[chosen], xerr=whiskers, fmt="o", color=colour, capsize=3, label=name)
        papers = [(entry["paper"], y) for entry, y in zip(entries, positions) if not np.isnan(entry["paper"])]
        if papers:
            ax.plot(*zip(*papers), "D", markerfacecolor="none", color=PAPER_COLOUR, linestyle="none",
                    label="paper's AUROC")
        floors = [entry for entry in entries if entry["floor"] and not np.isnan(entry["auroc"])]
        if floors:
            best = max(floors, key=lambda entry: entry["auroc"])
            ax.axvline(best["auroc"], color=FLOOR_COLOUR, linestyle="--",
                       label=f"better floor: {best['label']} {best['auroc']:.3f}")
        ax.set_yticks(positions, [entry["label"] for entry in entries])
        ax.set(xlim=(0, 1), ylim=(len(entries) - 0.5, -0.5), xlabel="test AUROC")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3, axis="x")
        # A fixed gap under the axes (borderaxespad is in font sizes): a panel of 3 rows is too short
        # for LEGEND_BELOW's fraction of the axes height to clear the x label.
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0), borderaxespad=4.5, ncol=2)
    return fig


def plot_roc_overlay(panels, path) -> Path:
    return _save(roc_overlay_figure(panels), path)


def plot_auroc_comparison(panels, path) -> Path:
    return _save(auroc_comparison_figure(panels), path)


def plot_f1_confidence(labels, scores, threshold, path) -> Path:
    """F1, precision and recall against the threshold on the min-max-normalised test score
    ('confidence'), with the chosen threshold marked and its F1 stated."""
    labels, scores = _as_arrays(labels, scores)
    low, span = minmax_bounds(scores)
    precision, recall, cuts = skm.precision_recall_curve(labels, (scores - low) / span)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(precision),
                   where=precision + recall > 0)
    chosen_f1 = skm.f1_score(labels, scores >= threshold, zero_division=0)
    chosen_x = (threshold - low) / span
    outside = "" if 0.0 <= chosen_x <= 1.0 else " (outside test scores)"
    chosen_x = float(np.clip(chosen_x, 0.0, 1.0))
    best = int(np.argmax(f1))

    fig, ax = plt.subplots(figsize=FIGSIZE)
    # A metric at cut i holds for every threshold in (cut i-1, cut i]: steps, not interpolation.
    ax.plot(cuts, f1, color="tab:green", linewidth=2.2, drawstyle="steps-pre", label="F1")
    ax.plot(cuts, precision, color="tab:purple", linewidth=1, drawstyle="steps-pre", label="precision")
    ax.plot(cuts, recall, color="tab:cyan", linewidth=1, drawstyle="steps-pre", label="recall")
    ax.axvline(chosen_x, color=THRESHOLD_COLOUR, linestyle="--",
               label=f"chosen threshold (validation){outside}: F1 {chosen_f1:.3f}")
    ax.plot(cuts[best], f1[best], marker="o", color="tab:green", linestyle="none",
            label=f"best F1 on test (oracle): {f1[best]:.3f} at {cuts[best]:.2f}")
    ax.set(
        xlim=(0, 1), ylim=(0, 1.02), title="F1–confidence curve",
        xlabel="threshold on min-max-normalised test score (confidence)", ylabel="metric value",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, **LEGEND_BELOW)
    return _save(fig, path)


def plot_score_histogram(labels, scores, threshold, path, threshold_label="threshold") -> Path:
    """Overlapping score histograms of normal and abnormal test images on shared bins, with the
    decision threshold and the share of each class above it."""
    labels, scores = _as_arrays(labels, scores)
    bins = np.histogram_bin_edges(scores, bins=min(40, max(10, scores.size // 10)))
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for label, name, colour in ((0, "normal", NORMAL_COLOUR), (1, "abnormal", ABNORMAL_COLOUR)):
        class_scores = scores[labels == label]
        if class_scores.size:
            flagged = np.mean(class_scores >= threshold)
            ax.hist(class_scores, bins=bins, alpha=0.55, color=colour, edgecolor="white", linewidth=0.5,
                    label=f"{name} (n={class_scores.size}): {flagged:.0%} flagged")
    ax.axvline(threshold, color=THRESHOLD_COLOUR, linestyle="--", linewidth=1.5,
               label=f"{threshold_label} = {threshold:.3g}")
    ax.set(title="Anomaly score distribution", xlabel="anomaly score (higher = more anomalous)",
           ylabel="number of test images")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, ax.get_ylim()[1] * 1.3)  # headroom so the legend does not cover the bars
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path)


def _stack_2d(array) -> np.ndarray:
    """[N, H, W, 1] or [N, H, W] -> [N, H, W] float; colour [N, H, W, 3] stays as it is."""
    array = np.asarray(array, dtype=np.float32)
    return array[..., 0] if array.ndim == 4 and array.shape[-1] == 1 else array


def _show_image(ax: plt.Axes, image: np.ndarray) -> None:
    """A [-1, 1] image: grey [H, W] on the grey colour map, colour [H, W, 3] in its own RGB."""
    if image.ndim == 3:
        ax.imshow(np.clip((image + 1.0) / 2.0, 0.0, 1.0))
    else:
        ax.imshow(image, cmap="gray", vmin=-1, vmax=1)


def _spread_by_score(indices: np.ndarray, scores: np.ndarray, count: int) -> np.ndarray:
    """Up to `count` of `indices`, evenly spaced in score order (lowest, typical, highest)."""
    ordered = indices[np.argsort(scores[indices], kind="stable")]
    positions = np.unique(np.linspace(0, len(ordered) - 1, min(count, len(ordered))).round().astype(int))
    return ordered[positions]


def select_examples(labels, scores, per_class=4) -> np.ndarray:
    """Indices of the error-grid examples: up to `per_class` normals then abnormals, spread by score."""
    labels, scores = _as_arrays(labels, scores)
    return np.concatenate([_spread_by_score(np.flatnonzero(labels == label), scores, per_class) for label in (0, 1)])


def _to_rgb(image: np.ndarray) -> np.ndarray:
    """A [-1, 1] grey [H, W] or colour [H, W, 3] image -> RGB uint8 [H, W, 3]."""
    pixels = np.clip((image + 1.0) * 127.5, 0, 255).astype(np.uint8)
    return pixels if pixels.ndim == 3 else cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB)


def error_overlay(image, error_map, error_scale, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """Heat map (RGB) of the error on the scale [0, error_scale] and its overlay on the input in [-1, 1]
    (grey [H, W] or colour [H, W, 3], same size), mask outlined: one look for the error grid and for `predict`'s
    full-size overlays."""
    heat = error_heatmap(error_map, error_scale)
    overlay = cv2.addWeighted(_to_rgb(image), 0.5, heat, 0.5, 0)
    if mask is not None:
        contours, _ = cv2.findContours((mask > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(overlay, contours, -1, MASK_COLOUR_RGB, max(1, image.shape[0] // 64))
    return heat, overlay


def plot_error_grid(images, reconstructions, error_maps, labels, scores, path, masks=None, per_class=4) -> Path:
    """Input | reconstruction | anomaly heat map | overlay, one row per example (no reconstruction column for a
    model that predicts its map without rebuilding the image: `reconstructions` None).

    Examples: up to `per_class` normal then up to `per_class` abnormal images, evenly spaced by
    score within each class (lowest, typical and highest scores), so the grid shows neither only
    the easy nor only the extreme cases. Heat maps share one scale (the largest error in the grid)
    so colours compare across rows; ground-truth masks, when given, are outlined in green.
    """
    columns = GRID_COLUMNS if reconstructions is not None else tuple(c for c in GRID_COLUMNS if c != "reconstruction")
    images, error_maps = _stack_2d(images), _stack_2d(error_maps)
    reconstructions = None if reconstructions is None else _stack_2d(reconstructions)
    labels, scores = _as_arrays(labels, scores)
    chosen = select_examples(labels, scores, per_class)
    if chosen.size == 0:
        raise ValueError("No images to plot; the error grid needs at least one scored image.")
    error_scale = float(error_maps[chosen].max()) or 1.0

    fig, axes = plt.subplots(len(chosen), len(columns), squeeze=False, layout="constrained",
                             figsize=(1.7 * len(columns) + 1.2, 1.7 * len(chosen) + 0.6))
    for row, index in zip(axes, chosen):
        mask = None if masks is None else np.asarray(masks[index])
        heat, overlay = error_overlay(images[index], error_maps[index], error_scale, mask)
        _show_image(row[0], images[index])
        if reconstructions is not None:
            _show_image(row[1], reconstructions[index])
        row[-2].imshow(heat)
        row[-1].imshow(overlay)
        name = "abnormal" if labels[index] else "normal"
        row[0].set_ylabel(f"{name}\nscore {scores[index]:.3g}", fontsize=9,
                          color=ABNORMAL_COLOUR if labels[index] else NORMAL_COLOUR)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    overlay_title = "overlay\n(green: true anomaly)" if masks is not None else "overlay"
    for ax, title in zip(axes[0], (*columns[:-1], overlay_title)):
        ax.set_title(title, fontsize=9)
    colourbar = fig.colorbar(
        plt.cm.ScalarMappable(norm=mcolors.Normalize(0, error_scale), cmap="inferno"),
        ax=axes, shrink=min(1.0, 4.0 / len(chosen)),
    )
    colourbar.set_label("error ÷ normals' typical error there (one scale for all rows)", fontsize=8)
    fig.suptitle(("Reconstructions and anomaly maps" if reconstructions is not None else "Anomaly maps")
                 + " (examples spread by score)", fontsize=10)
    return _save(fig, path)


def plot_synthetic_samples(corrupted, masks, images, path, count=8) -> Path:
    """What a synthetic-anomaly model is taught (data.synthesis): per column, a training normal, its corrupted
    version and the mask the model must find (clean samples, mask all zero, are labelled so)."""
    corrupted, images = _stack_2d(corrupted)[:count], _stack_2d(images)[:count]
    masks = np.asarray(masks, np.float32)[:count]
    rows = (("normal", images), ("synthetic anomaly", corrupted), ("mask", masks))
    fig, axes = plt.subplots(len(rows), len(images), squeeze=False, layout="constrained",
                             figsize=(1.5 * len(images) + 0.8, 1.6 * len(rows) + 0.4))
    for column in range(len(images)):
        for row, (name, pictures) in enumerate(rows):
            ax = axes[row][column]
            if name == "mask":
                ax.imshow(pictures[column], cmap="gray", vmin=0, vmax=1)
            else:
                _show_image(ax, pictures[column])
            ax.set_xticks([])
            ax.set_yticks([])
            if not column:
                ax.set_ylabel(name, fontsize=9)
        share = float(masks[column].mean())
        axes[0][column].set_title(f"{share:.1%} marked" if share else "clean", fontsize=8)
    fig.suptitle("Synthetic anomalies the model learns from (training normals)", fontsize=10)
    return _save(fig, path)


def is_adversarial(key: str) -> bool:
    """Adversarial terms: `adv*`/`*_adv*`, discriminator `d_*`, a GAN generator's total `g_loss` and its
    encoder-consistency `en_loss`; a cascade prefixes its module (`m2_d_loss`), which is looked through."""
    base = re.sub(r"^m\d+_", "", key)
    return "adv" in base or base.startswith(("d_", "g_")) or base == "en_loss"


def _series(history: list[dict], key: str) -> tuple[list, list]:
    points = [(entry["epoch"], entry[key]) for entry in history if key in entry]
    return [epoch for epoch, _ in points], [value for _, value in points]


def _phase_spans(history: list[dict]) -> list[tuple[str, float, float]]:
    """Consecutive runs of one phase as (name, first epoch - 0.5, last epoch + 0.5)."""
    spans = []
    for entry in history:
        phase = entry.get("phase", "training")
        if spans and spans[-1][0] == phase:
            spans[-1][2] = entry["epoch"] + 0.5
        else:
            spans.append([phase, entry["epoch"] - 0.5, entry["epoch"] + 0.5])
    return [tuple(span) for span in spans]


def _log_scale_if_wide(ax: plt.Axes, values: list[float]) -> None:
    values = np.asarray(values, dtype=np.float64)
    if values.size and (values > 0).all() and values.max() / values.min() > 10:
        ax.set_yscale("log")
        ax.set_ylabel(f"{ax.get_ylabel()} (log scale)")


# A curve of this many epochs or fewer also gets markers: a line through one point draws nothing.
FEW_POINTS = 10


def plot_loss_curves(history: list[dict], path) -> Path:
    """Reconstruction terms over all epochs, several phases shaded and their boundaries dashed;
    beside them, when any were logged, the adversarial terms over the epochs that have them (sparse
    ones, e.g. a discriminator trained every 5th epoch, as markers only). A model with only one kind
    of term (an autoencoder; a plain BiGAN, which has no reconstruction loss) gets one "Training
    losses" panel, not an empty second one."""
    if not history:
        raise ValueError("The loss history is empty; plot it after at least one epoch.")
    keys = list(dict.fromkeys(k for entry in history for k in entry if k not in ("epoch", "phase")))
    adversarial_keys = [k for k in keys if is_adversarial(k)]
    recon_keys = [k for k in keys if not is_adversarial(k)]
    both = bool(recon_keys and adversarial_keys)
    fig, axes = plt.subplots(1, 2 if both else 1, figsize=(12, 5) if both else (7, 5), layout="constrained",
                             squeeze=False)
    for ax in axes[0]:  # 20 distinct colours: a cascade logs 15 terms
        ax.set_prop_cycle(color=plt.get_cmap("tab20").colors)
        ax.set(xlabel="epoch", ylabel="loss")
        ax.grid(alpha=0.3)
    spans = _phase_spans(history)
    for number, (phase, start, end) in enumerate(spans if len(spans) > 1 else [], start=1):
        axes[0, 0].axvspan(start, end, color=PHASE_COLOURS[(number - 1) % len(PHASE_COLOURS)], alpha=0.4,
                           label=f"phase {number}: {phase}")
        if number > 1:
            axes[0, 0].axvline(start, color="grey", linestyle="--", linewidth=1)

    if recon_keys:
        recon_ax, recon_values = axes[0, 0], []
        for key in recon_keys:
            epochs, values = _series(history, key)
            recon_ax.plot(epochs, values, linewidth=2.2 if key == "recon_loss" else 1.1, label=key,
                          marker="o" if len(epochs) <= FEW_POINTS else None, markersize=4)  # one point draws no line
            recon_values += values
        recon_ax.set_title("Reconstruction losses" if both else "Training losses")
        _log_scale_if_wide(recon_ax, recon_values)
    if adversarial_keys:
        adv_ax = axes[0, -1]
        adv_epochs = {entry["epoch"] for entry in history if any(k in entry for k in adversarial_keys)}
        for key in adversarial_keys:
            epochs, values = _series(history, key)
            dense = len(epochs) == len(adv_epochs)
            adv_ax.plot(epochs, values, marker="o", markersize=3 if dense else 6,
                        linestyle="-" if dense else "none", label=key if dense else f"{key} (trained epochs only)")
        adv_ax.set_title("Adversarial losses (generator and discriminator)" if both else "Training losses")
    for ax in axes[0]:
        ax.legend(fontsize=8, **LEGEND_BELOW)
    return _save(fig, path)
