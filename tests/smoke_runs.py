"""One smoke command training several models on the phantom, and what their SavedModels serve (shared by test modules)."""

import csv
import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf

import run_experiments
from data.phantom import make_phantom
from training.profiles import DATA


def smoke_runs(out, models):
    """Train `models` in one `--profile smoke --no-floor` call under `out`: {model: run dir}."""
    assert run_experiments.main(["--model", ",".join(models), "--profile", "smoke", "--no-floor", "--out", str(out)]) == 0
    runs = {json.loads(path.read_text())["model"]: path.parent for path in pathlib.Path(out).glob("*/*/*/config.json")}
    assert set(runs) == set(models)
    return runs


def smoke_runs_fixture(models):
    """A module-scoped fixture: one smoke call training `models` (no floors), {model: run dir}."""

    @pytest.fixture(scope="module")
    def runs(tmp_path_factory):
        return smoke_runs(tmp_path_factory.mktemp("runs"), models)

    return runs


def check_served_scores(run_dir):
    """The SavedModel scores a smoke run's test images as its scores.csv says (to 1e-3); returns the csv rows."""
    serving = tf.saved_model.load(str(run_dir / "saved_model")).signatures["serving_default"]
    collection = make_phantom(DATA["smoke"]["phantom_normals"], DATA["smoke"]["phantom_abnormals"], seed=0)
    index = {identifier: position for position, identifier in enumerate(collection.ids)}
    with open(run_dir / "scores.csv") as handle:
        rows = list(csv.DictReader(handle))
    images = np.stack([collection.images[index[row["path"]]] for row in rows])[..., None]
    np.testing.assert_allclose(serving(images=tf.constant(images))["score"].numpy(),
                               [float(row["score"]) for row in rows], rtol=1e-3, atol=1e-3)
    return rows
