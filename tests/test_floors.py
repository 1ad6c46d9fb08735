"""The classical floors (pca, knn): exact against sklearn / brute force, saved and reloaded, run from the CLI
beside a deep model, and reported with a bootstrap interval and the better floor."""

import csv
import json
import pathlib
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.decomposition import PCA

import experiment
import run_experiments
from data.phantom import make_phantom
from data.pipeline import to_model_input
from evaluation.metrics import bootstrap_auroc_interval
from evaluation.scoring import build_detector
from models.config import ConfigError
from models.registry import architecture, build_model
from tests.test_cli import PLOTS, read_scores
from training.profiles import resolve_config
from training.trainer import compiled_model, fit

SIZE = 32


def normals_and_queries(n_normals=60, n_queries=7):
    """Phantom slices at 32x32 in [-1, 1]: training normals, and queries (normals and lesions) to score."""
    collection = make_phantom(n_normals + n_queries, n_queries, seed=3)
    images = np.asarray(to_model_input(collection.images[..., None].astype("float32") / 255.0, SIZE))
    return images[:n_normals], images[n_normals:]


def fitted(name, normals, **settings):
    model = build_model(name, architecture(name, "tiny"))
    model.configure({"pca_variance": 0.95, "knn_k": 5, **settings})
    model.fit_normals(tf.data.Dataset.from_tensor_slices(normals).batch(16))
    return model


def test_pca_reconstruction_equals_sklearn_projection():
    normals, queries = normals_and_queries()
    pca = PCA(n_components=0.95).fit(normals.reshape(len(normals), -1))
    expected = pca.inverse_transform(pca.transform(queries.reshape(len(queries), -1)))
    reference, reconstruction, _, _ = fitted("pca", normals).score_pairs(queries)["pca"]
    assert 1 < pca.n_components_ < len(normals)  # a real projection, neither trivial nor the identity
    np.testing.assert_allclose(np.asarray(reconstruction).reshape(len(queries), -1), expected, atol=1e-4)
    assert reference is queries


def test_knn_distance_and_reconstruction_equal_brute_force():
    normals, queries = normals_and_queries()
    _, nearest_mean, terms, _ = fitted("knn", normals, knn_k=3).score_pairs(queries)["knn"]
    flat_normals, flat_queries = normals.reshape(len(normals), -1), queries.reshape(len(queries), -1)
    rms = np.sqrt(((flat_queries[:, None] - flat_normals[None]) ** 2).mean(axis=-1))  # [queries, normals]
    nearest = np.argsort(rms, axis=1)[:, :3]
    np.testing.assert_allclose(terms["knn_distance"], np.take_along_axis(rms, nearest, 1).mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(nearest_mean).reshape(len(queries), -1), flat_normals[nearest].mean(axis=1),
                               atol=1e-6)


def test_knn_k_is_clipped_to_the_bank_and_a_normal_is_at_distance_zero():
    normals, _ = normals_and_queries(n_normals=4)
    _, nearest_mean, terms, _ = fitted("knn", normals, knn_k=1).score_pairs(normals)["knn"]
    np.testing.assert_allclose(terms["knn_distance"], 0.0, atol=1e-6)
    np.testing.assert_allclose(nearest_mean, normals, atol=1e-6)
    assert fitted("knn", normals, knn_k=50).neighbours.k == 4


@pytest.mark.parametrize("name", ["pca", "knn"])
def test_floor_detector_saves_to_model_keras_and_reloads_in_safe_mode(name, tmp_path):
    normals, queries = normals_and_queries()
    detector = build_detector(fitted(name, normals), SIZE, score="mse")
    detector.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    for key in ("score", "reconstruction", "error_map"):
        np.testing.assert_allclose(reloaded(queries)[key], detector(queries)[key], atol=1e-6)
    assert not any("Lambda" in type(layer).__name__ for layer in reloaded.layers)


def test_pca_scores_a_planted_blob_higher_than_the_same_slice_without_it():
    normals, queries = normals_and_queries()
    detector = build_detector(fitted("pca", normals), SIZE, score="mse")
    yy, xx = np.mgrid[:SIZE, :SIZE]
    blob = ((yy - 14) ** 2 + (xx - 18) ** 2 <= 9)[None, :, :, None]
    planted = np.clip(queries + 0.8 * blob, -1.0, 1.0).astype("float32")
    assert (np.asarray(detector(planted)["mse"]) > np.asarray(detector(queries)["mse"])).all()


def test_trainer_fits_a_floor_without_epochs_and_fits_it_again_on_resume(tmp_path):
    normals, queries = normals_and_queries()
    config = resolve_config("pca", "phantom", "smoke")
    dataset = tf.data.Dataset.from_tensor_slices(normals).batch(16)
    for _ in range(2):  # the second call is what --resume does in the same run directory
        model = compiled_model(config)
        assert fit(model, dataset, dataset, queries[:2], config, tmp_path, verbose=0) == []
        assert model.encoder.get_weights()[0].shape[1] > 1
    assert json.loads((tmp_path / "history.json").read_text()) == []
    assert not list(tmp_path.glob("checkpoints/ckpt-*"))  # refitting takes seconds, so nothing is kept


def test_bad_floor_settings_are_refused():
    normals, _ = normals_and_queries(n_normals=4)
    with pytest.raises(ConfigError, match="pca_variance"):
        fitted("pca", normals, pca_variance=1.5)
    with pytest.raises(ConfigError, match="knn_k"):
        fitted("knn", normals, knn_k=0)


def test_floors_implied_by_a_deep_model_take_only_the_flags_they_use():
    args = run_experiments.parse_args(["--epochs-recon", "3", "--image-size", "64", "--lr", "0.01", "--score", "error_zmax"])
    implied = experiment.run_config(args, "pca", 0, None, named=False)
    assert implied["architecture"]["image_size"] == 64 and "epochs_recon" not in implied and "lr" not in implied
    assert implied["score"] == "mse"  # the deep model's --score does not redefine the floor
    with pytest.raises(ConfigError, match="--epochs-recon does not apply to pca"):
        experiment.run_config(args, "pca", 0, None, named=True)
    assert experiment.planned_models(["improved_bigan"], no_floor=False) == ["pca", "knn", "improved_bigan"]
    assert experiment.planned_models(["knn", "improved_bigan"], no_floor=True) == ["knn", "improved_bigan"]
    assert experiment.planned_models(["pca"], no_floor=False) == ["pca"]


def test_bootstrap_interval_brackets_the_auroc_and_is_reproducible():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 40)
    scores = rng.normal(size=80) + labels  # AUROC about 0.76
    low, high = bootstrap_auroc_interval(labels, scores)
    assert low < 0.76 < high and high - low < 0.3
    assert bootstrap_auroc_interval(labels, scores, resamples=100, seed=1) == bootstrap_auroc_interval(
        labels, scores, resamples=100, seed=1)
    assert bootstrap_auroc_interval(labels, labels.astype(float), resamples=20) == (1.0, 1.0)
    assert np.isnan(bootstrap_auroc_interval(np.zeros(5), np.arange(5.0))).all()


@pytest.fixture(scope="module")
def floors_and_deep_run(tmp_path_factory):
    """One smoke call naming the floors and a deep model: each runs once, the floors first."""
    out = tmp_path_factory.mktemp("runs")
    code = run_experiments.main(["--model", "pca,knn,cae", "--dataset", "phantom", "--profile", "smoke",
                                 "--out", str(out)])
    assert code == 0
    runs = {path.parent.parent.name: path.parent for path in pathlib.Path(out).glob("phantom/*/*/config.json")}
    assert len(list(pathlib.Path(out).glob("phantom/*/*/config.json"))) == 3  # no floor run twice
    return out, runs


@pytest.mark.parametrize("name", ["pca", "knn"])
def test_floor_cli_run_writes_every_artefact(floors_and_deep_run, name):
    _, runs = floors_and_deep_run
    run_dir = runs[name]
    for file in ("config.json", "split.json", "metrics.json", "scores.csv", "model.keras"):
        assert (run_dir / file).is_file(), file
    assert json.loads((run_dir / "history.json").read_text()) == []  # no epochs
    assert PLOTS - {"loss_curves.png"} <= {path.name for path in (run_dir / "plots").glob("*.png")}
    assert json.loads((run_dir / "run_state.json").read_text())["status"] == "finished"
    # The SavedModel alone scores raw images as in scores.csv.
    serving = tf.saved_model.load(str(run_dir / "saved_model")).signatures["serving_float"]
    rows = read_scores(run_dir)[:6]
    collection = make_phantom(40, 12, seed=0)  # the smoke phantom
    index = {identifier: position for position, identifier in enumerate(collection.ids)}
    images = np.stack([collection.images[index[row["path"]]] for row in rows])[..., None].astype("float32") / 255.0
    np.testing.assert_allclose(serving(images=tf.constant(images))["score"], [float(row["score"]) for row in rows],
                               rtol=1e-3, atol=1e-4)


def test_deep_run_gets_the_floors_aurocs_on_the_same_split(floors_and_deep_run):
    _, runs = floors_and_deep_run
    metrics = {name: json.loads((run_dir / "metrics.json").read_text()) for name, run_dir in runs.items()}
    assert metrics["cae"]["floor"] == {"pca": metrics["pca"]["auroc"], "knn": metrics["knn"]["auroc"]}
    assert "floor" not in metrics["pca"]
    splits = {name: json.loads((run_dir / "split.json").read_text())["test"] for name, run_dir in runs.items()}
    assert splits["pca"] == splits["knn"] == splits["cae"]
    # Planted lesions: PCA's reconstruction error ranks the smoke phantom's abnormals above its normals.
    assert metrics["pca"]["auroc"] > 0.6


def test_report_rows_hold_the_interval_and_the_better_floor(floors_and_deep_run):
    out, runs = floors_and_deep_run
    markdown = (out / "phantom" / "report.md").read_text()
    metrics = {name: json.loads((run_dir / "metrics.json").read_text()) for name, run_dir in runs.items()}
    better = max(("pca", "knn"), key=lambda name: metrics[name]["auroc"])
    deep_row = next(line for line in markdown.splitlines() if line.startswith("| phantom | cae"))
    difference = metrics["cae"]["auroc"] - metrics[better]["auroc"]
    assert f"| {better} {metrics[better]['auroc']:.3f} ({difference:+.3f}) |" in deep_row
    # the floors scored with the deep model's own score (error_zmax), from their score variants
    same = {name: metrics[name]["score_variants"]["error_zmax"] for name in ("pca", "knn")}
    assert metrics["cae"]["floor_same_score"] == same
    best = max(same, key=same.get)
    assert f"| {best} {same[best]:.3f} ({metrics['cae']['auroc'] - same[best]:+.3f}) |" in deep_row
    # and the model under its own paper's score (Improved BiGAN §III, variant `paper`), last
    assert deep_row.endswith(f"| {metrics['cae']['score_variants']['paper']:.3f} (paper) |")
    for name in ("pca", "knn"):
        row = next(line for line in markdown.splitlines() if line.startswith(f"| phantom | {name} (floor) |"))
        low, high = (float(value) for value in row.split(" | ")[-4].split("–"))
        assert low <= metrics[name]["auroc"] <= high and row.endswith("| – | – | – |")  # no floor, no paper score
    assert "1000 resamples" in markdown
    # minutes: each run's own wall time, recorded in metrics.json and carried into the report
    with open(out / "phantom" / "report.csv") as handle:
        minutes = {row["model"]: float(row["minutes_mean"]) for row in csv.DictReader(handle)}
    assert minutes == {name: pytest.approx(metrics[name]["minutes"]) for name in runs}
    assert 0 < minutes["pca"] < minutes["cae"]  # fitting a PCA is quicker than training a network
    assert {"report.txt", "report.png", "report_roc.png"} <= {path.name for path in (out / "phantom").iterdir()}


def test_a_later_call_into_the_same_out_keeps_the_earlier_calls_report_rows(floors_and_deep_run, tmp_path):
    """Issue 21.6: a second call into one --out rewrote report.md/csv, dropping the first call's rows. Here the
    floors rerun on another seed (seconds) into a copy of the fixture's --out: cae's row stays, the floors' rows
    are this call's."""
    out = tmp_path / "runs"
    shutil.copytree(floors_and_deep_run[0], out)
    assert run_experiments.main(["--model", "pca,knn", "--seeds", "7", "--profile", "smoke", "--out", str(out)]) == 0
    with open(out / "phantom" / "report.csv") as handle:
        seeds = {row["model"]: row["seeds"] for row in csv.DictReader(handle)}
    assert seeds == {"cae": "0", "pca": "7", "knn": "7"}
    assert "| phantom | cae | 0 |" in (out / "phantom" / "report.md").read_text()
