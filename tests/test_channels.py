"""--channels 3: colour reaches the exported model and `predict` (every model training and scoring RGB is in
tests/test_conformance.py)."""

import csv
import json

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

import evaluation.export  # noqa: F401 (registers the layers model.keras holds)
import experiment
import run_experiments
from data.phantom import make_phantom
from data.pipeline import to_model_input
from models.config import ConfigError
from tests.test_cli import read_scores

# Tints of equal luma under tf.image.rgb_to_grayscale's weights (0.2989 R + 0.587 G + 0.114 B = 1): a slice tinted
# either way has the same grayscale, so only a model that reads colour can tell them apart.
WARM, COOL = (1.3, 0.92509, 0.6), (0.6, 1.08733, 1.6)


def tinted(grey, tint):
    """uint8 grey [H, W] (kept under 150 so no channel clips) -> uint8 RGB [H, W, 3] of the same luma."""
    return np.clip(np.round(grey[..., None] * (150 / 255) * np.asarray(tint)), 0, 255).astype(np.uint8)


def write_colour_folders(root):
    """Phantom normals as warm-tinted colour files (PNG, JPEG, RGBA PNG) and grey PNGs in normal/; in abnormal/ the
    same slices' luma cool-tinted (one RGBA, one grey: every kind is scored): a colour-only anomaly."""
    slices = make_phantom(48, 0, size=48, seed=1).images  # 40 normals: 3 validation normals, the minimum
    for position, grey in enumerate(slices):
        folder = root / ("abnormal" if position >= 40 else "normal")
        folder.mkdir(parents=True, exist_ok=True)
        rgb = tinted(grey, COOL if position >= 40 else WARM)
        if position % 10 == 0:
            stored, name = grey, f"{position}.png"
        elif position % 10 == 1:
            stored, name = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA), f"{position}.png"  # opaque alpha
        else:
            stored, name = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), f"{position}.{'jpg' if position % 3 else 'png'}"
        assert cv2.imwrite(str(folder / name), stored)
    return root / "normal", root / "abnormal"


@pytest.fixture(scope="module")
def colour_runs(tmp_path_factory):
    """One call: the pca floor (it learns in one pass, so it surely learns the normals' tint) and the fcae."""
    normal, abnormal = write_colour_folders(tmp_path_factory.mktemp("colour"))
    out = tmp_path_factory.mktemp("runs")
    assert run_experiments.main(["--dataset", "folder", "--normal-dir", str(normal), "--abnormal-dir", str(abnormal),
                                 "--profile", "smoke", "--channels", "3", "--model", "pca,fcae", "--no-floor",
                                 "--out", str(out)]) == 0
    runs = {path.parent.parent.name: path.parent for path in out.glob("folder/*/*/config.json")}
    assert set(runs) == {"pca", "fcae"}
    return runs, (normal, abnormal)


def test_a_colour_run_records_channels_3_and_its_exports_and_predict_reproduce_scores_csv(colour_runs, tmp_path):
    runs, folders = colour_runs
    run_dir = runs["fcae"]
    assert json.loads((run_dir / "config.json").read_text())["architecture"]["channels"] == 3
    expected = {row["path"]: float(row["score"]) for row in read_scores(run_dir)}
    paths = list(expected)
    images = [tf.io.decode_image(tf.io.read_file(path), channels=0, expand_animations=False)[None] for path in paths]
    assert {image.shape[-1] for image in images} == {1, 3, 4}  # grey repeated to 3, alpha dropped, as in training
    serving = tf.saved_model.load(str(run_dir / "saved_model")).signatures["serving_default"]
    detector = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    for name, scores in (("saved_model", [float(serving(images=image)["score"][0]) for image in images]),
                         ("model.keras", [float(detector(image)["score"][0]) for image in images])):
        np.testing.assert_allclose(scores, list(expected.values()), rtol=1e-3, atol=1e-3, err_msg=name)
    assert serving(images=images[0])["reconstruction"].shape == (1, 32, 32, 3)
    assert run_experiments.main(["predict", str(run_dir), *map(str, folders), "--out", str(tmp_path)]) == 0
    with open(tmp_path / "predictions.csv") as handle:
        predicted = {row["path"]: row for row in csv.DictReader(handle)}
    np.testing.assert_allclose([float(predicted[path]["score"]) for path in paths], list(expected.values()),
                               rtol=1e-3, atol=1e-3)
    assert cv2.imread(predicted[paths[0]]["overlay"]).shape == (48, 48, 3)


def test_colour_reaches_the_model(colour_runs):
    """The pca floor finds the hue-only abnormals (same grayscale as the normals), and a pure hue change moves both
    exported models' scores, which a model reading grayscale could not do: the pair has one grayscale input."""
    runs, _ = colour_runs
    assert json.loads((runs["pca"] / "metrics.json").read_text())["auroc"] >= 0.9
    grey = make_phantom(1, 0, size=48, seed=2).images[0][None, ..., None] * np.float32(150 / 255**2)
    warm, cool = (tf.constant(grey * np.asarray(tint, np.float32)) for tint in (WARM, COOL))
    np.testing.assert_allclose(to_model_input(warm, 32), to_model_input(cool, 32), atol=1e-5)
    for model, least in (("pca", 1.0), ("fcae", 0.01)):
        serving = tf.saved_model.load(str(runs[model] / "saved_model")).signatures["serving_float"]
        hue_shift = float(serving(images=cool)["score"][0]) - float(serving(images=warm)["score"][0])
        assert abs(hue_shift) > least, (model, hue_shift)  # standardised scores; grayscale input: |shift| < 1e-4


def test_floors_beside_a_colour_model_read_colour_too_and_grayscale_tfds_is_refused():
    args = run_experiments.parse_args(["--model", "fcae", "--profile", "smoke", "--channels", "3", "--out", "/tmp"])
    assert [experiment.run_config(args, model, 0, None, named=False)["architecture"]["channels"]
            for model in ("pca", "knn", "fcae")] == [3, 3, 3]
    args = run_experiments.parse_args(["--dataset", "plant_village", "--source", "tfds", "--channels", "3"])
    with pytest.raises(ConfigError, match="--source tfds"):
        experiment.run_config(args, "fcae", 0, None, named=True)
