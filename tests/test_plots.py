"""Every plot writes a readable, plausibly sized PNG for the shapes a run produces."""

import cv2
import numpy as np
import pytest

from evaluation import plots


def _read_png(path):
    assert path.suffix == ".png" and path.stat().st_size > 0
    image = cv2.imread(str(path))
    assert image is not None
    return image


@pytest.fixture
def scored():
    rng = np.random.default_rng(0)
    labels = np.array([0] * 60 + [1] * 40)
    return labels, rng.normal(size=100) + 1.5 * labels


def _images(count: int, size: int = 32, channel_axis: bool = False, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 1, (count, size, size)).astype(np.float32)
    reconstructions = np.clip(images + 0.1 * rng.normal(size=images.shape), -1, 1).astype(np.float32)
    errors = np.abs(images - reconstructions)
    if channel_axis:
        images, reconstructions = images[..., None], reconstructions[..., None]
    return images, reconstructions, errors


def test_roc_writes_png(tmp_path, scored):
    path = plots.plot_roc(*scored, tmp_path / "nested" / "roc.png", title="ROC phantom")
    height, width = _read_png(path).shape[:2]
    assert 300 < height < 1200 and 300 < width < 1200


def test_roc_with_one_class_still_writes_png(tmp_path):
    _read_png(plots.plot_roc(np.zeros(10), np.arange(10.0), tmp_path / "roc.png"))


def test_f1_confidence_writes_png(tmp_path, scored):
    path = plots.plot_f1_confidence(*scored, threshold=1.0, path=tmp_path / "f1.png")
    assert _read_png(path).shape[1] > 300


def test_f1_confidence_with_threshold_outside_score_range(tmp_path, scored):
    _read_png(plots.plot_f1_confidence(*scored, threshold=100.0, path=str(tmp_path / "f1.png")))


def test_score_histogram_writes_png(tmp_path, scored):
    path = plots.plot_score_histogram(*scored, 1.0, tmp_path / "hist.png",
                                      threshold_label="threshold (validation 95th pct)")
    assert _read_png(path).shape[1] > 300


@pytest.mark.parametrize("channel_axis", [False, True])
def test_error_grid_without_masks(tmp_path, channel_axis):
    images, reconstructions, errors = _images(12, channel_axis=channel_axis)
    labels = np.array([0] * 6 + [1] * 6)
    path = plots.plot_error_grid(images, reconstructions, errors, labels, errors.mean(axis=(1, 2)),
                                 tmp_path / "grid.png")
    height, width = _read_png(path).shape[:2]
    assert height > width  # 8 rows of 4 columns


def test_error_grid_with_masks_and_few_examples(tmp_path):
    images, reconstructions, errors = _images(3, size=64)
    masks = np.zeros((3, 64, 64), np.uint8)
    masks[2, 20:40, 20:40] = 1
    path = plots.plot_error_grid(images, reconstructions, errors, np.array([0, 0, 1]),
                                 np.array([0.1, 0.2, 0.9]), tmp_path / "grid.png", masks=masks, per_class=4)
    _read_png(path)


def test_spread_by_score_spans_lowest_to_highest():
    scores = np.array([5.0, 1.0, 3.0, 6.0, 2.0, 4.0, 0.0])
    chosen = plots._spread_by_score(np.arange(7), scores, 3)
    assert list(scores[chosen]) == [0.0, 3.0, 6.0]
    assert len(plots._spread_by_score(np.arange(2), scores, 4)) == 2


def test_loss_curves_reconstruction_phase_only(tmp_path):
    history = [{"epoch": e, "phase": "reconstruction", "recon_loss": 1 / e, "mse": 0.5 / e,
                "mae": 0.3 / e, "ssim_loss": 0.2, "perceptual": 2.0 / e} for e in range(1, 11)]
    path = plots.plot_loss_curves(history, tmp_path / "loss.png")
    assert _read_png(path).shape[1] > 600


def test_loss_curves_of_a_one_epoch_run_draw_its_point(tmp_path, monkeypatch):
    """Issue 21.15: a line through one point draws nothing, so loss_curves.png of a one-epoch run was blank."""
    history = [{"epoch": 1, "phase": "training", "loss": 0.5}]

    def curve_pixels(name):
        image = _read_png(plots.plot_loss_curves(history, tmp_path / name)).astype(int)
        first_colour = np.array(plots.plt.get_cmap("tab20").colors[0])[::-1] * 255  # BGR, as cv2 reads it
        in_colour = np.abs(image - first_colour).sum(axis=2) < 60
        return in_colour[: image.shape[0] * 3 // 4].sum()  # the axes; the legend sits below them

    assert curve_pixels("loss.png") > 20
    monkeypatch.setattr(plots, "FEW_POINTS", 0)  # lines only, as before the fix
    assert curve_pixels("lines_only.png") == 0


def test_loss_curves_of_a_model_without_adversary_have_one_panel_and_no_phase_shading(tmp_path, monkeypatch):
    history = [{"epoch": e, "phase": "reconstruction", "loss": 1 / e, "kl": 0.1 * e} for e in range(1, 6)]
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    plots.plot_loss_curves(history, tmp_path / "loss.png")
    (ax,) = figures[0].axes
    assert ax.get_title() == "Training losses" and not ax.patches
    assert {line.get_label() for line in ax.get_lines()} == {"loss", "kl"}


def test_loss_curves_of_a_model_with_only_adversarial_terms_have_one_panel(tmp_path, monkeypatch):
    """A plain BiGAN logs no reconstruction loss: its curves, not an empty "Reconstruction losses" panel."""
    history = [{"epoch": e, "phase": "adversarial", "adv_loss": 2 / e, "d_loss": 0.7, "d_real": 0.6, "d_fake": 0.4}
               for e in range(1, 6)]
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    plots.plot_loss_curves(history, tmp_path / "loss.png")
    (ax,) = figures[0].axes
    assert ax.get_title() == "Training losses" and not ax.patches
    assert {line.get_label() for line in ax.get_lines()} == {"adv_loss", "d_loss", "d_real", "d_fake"}


def test_loss_curves_both_phases_with_sparse_discriminator(tmp_path):
    history = [{"epoch": e, "phase": "reconstruction", "recon_loss": 1 / e} for e in range(1, 6)]
    for e in range(6, 21):
        entry = {"epoch": e, "phase": "adversarial", "recon_loss": 0.2, "adv_loss": 0.7 + 0.01 * e}
        if e % 5 == 0:
            entry["d_loss"] = 1.3 - 0.02 * e
        history.append(entry)
    _read_png(plots.plot_loss_curves(history, tmp_path / "loss.png"))
    assert plots._phase_spans(history) == [("reconstruction", 0.5, 5.5), ("adversarial", 5.5, 20.5)]


def test_roc_curves_draw_one_labelled_curve_per_set(tmp_path, scored):
    labels, scores = scored
    path = plots.plot_roc_curves(
        {"module_1": (labels, scores), "module_2": (labels, -scores), "only normals": (np.zeros(4), np.arange(4.0))},
        tmp_path / "rocs.png", title="ROC per module",
    )
    assert _read_png(path).shape[2] == 3


def test_cascade_loss_curves_put_gan_terms_in_the_adversarial_panel_with_distinct_colours(tmp_path, monkeypatch):
    """CAE-D-GAN logs `m<module>_<term>`: discriminator and generator totals (~25) must not flatten module 1."""
    terms = ["m1_pixel_loss", "m2_recon_loss", "m3_recon_loss", "m2_d_loss", "m2_d_real", "m2_d_fake", "m2_g_loss",
             "m2_adv_loss", "m2_en_loss", "m3_d_loss", "m3_d_real", "m3_d_fake", "m3_g_loss", "m3_adv_loss", "m3_en_loss"]
    history = [{"epoch": e, "phase": "cascade", **{t: 25.0 / e if t.endswith("g_loss") else 0.1 / e for t in terms}}
               for e in range(1, 6)]
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    plots.plot_loss_curves(history, tmp_path / "loss.png")
    recon_ax, adv_ax = figures[0].axes[:2]
    assert {line.get_label() for line in recon_ax.get_lines()} == {"m1_pixel_loss", "m2_recon_loss", "m3_recon_loss"}
    adversarial = [line for line in adv_ax.get_lines() if not line.get_label().startswith("_")]
    assert len(adversarial) == 12
    assert len({line.get_color() for line in adversarial}) == 12  # no colour repeats
    assert not plots.is_adversarial("recon_loss") and plots.is_adversarial("d_loss") and plots.is_adversarial("adv_loss")


def test_auroc_comparison_without_interval_paper_or_floor_draws_the_points_only():
    nan = float("nan")
    figure = plots.auroc_comparison_figure({"phantom": [
        {"label": "improved_bigan", "auroc": 0.8, "interval": (nan, nan), "paper": nan, "floor": False},
        {"label": "vae", "auroc": 0.6, "interval": (0.5, 0.7), "paper": nan, "floor": False},
    ]})
    (ax,) = figure.axes
    _, labels = ax.get_legend_handles_labels()
    assert labels == ["ours: mean over seeds, 95 % bootstrap interval"]  # no paper marker, no floor line
    assert list(ax.containers[0].lines[0].get_xdata()) == [0.8, 0.6]


def test_roc_overlay_gives_each_of_16_models_its_own_colour_in_one_panel_per_dataset(scored):
    labels, scores = scored
    models = {f"model_{i}": (labels, scores + i * labels) for i in range(16)}
    figure = plots.roc_overlay_figure({"brain_mri, seed 0": models, "phantom, seed 0": dict(list(models.items())[:2])})
    brain, phantom = figure.axes
    curves = [line for line in brain.get_lines() if line.get_label().startswith("model_")]
    assert len(curves) == 16 and len({line.get_color() for line in curves}) == 16
    assert len([line for line in phantom.get_lines() if line.get_label().startswith("model_")]) == 2
