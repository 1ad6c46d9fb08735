"""What the model-family tests share: one smoke CLI call training several models, and the check that each run's
SavedModel reproduces its scores.csv."""

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
    """Train `models` in one `--profile smoke` call on the phantom (no floors) under `out`: {model: run dir}."""
    assert run_experiments.main(["--model", ",".join(models), "--profile", "smoke", "--no-floor", "--out", str(out)]) == 0
    runs = {json.loads(path.read_text())["model"]: path.parent for path in pathlib.Path(out).glob("*/*/*/config.json")}
    assert set(runs) == set(models)
    return runs


def smoke_runs_fixture(models):
    """A module-scoped fixture: one smoke call training every model of `models` (see smoke_runs)."""

    @pytest.fixture(scope="module")
    def runs(tmp_path_factory):
        return smoke_runs(tmp_path_factory.mktemp("runs"), models)

    return runs


def check_saved_model_reproduces_scores_csv(run_dir):
    """The SavedModel's serving_default scores every test image of the smoke phantom as scores.csv says (to 1e-3);
    returns (scores.csv rows, metrics.json)."""
    serving = tf.saved_model.load(str(run_dir / "saved_model")).signatures["serving_default"]
    collection = make_phantom(DATA["smoke"]["phantom_normals"], DATA["smoke"]["phantom_abnormals"], seed=0)
    index = {identifier: position for position, identifier in enumerate(collection.ids)}
    with open(run_dir / "scores.csv") as handle:
        rows = list(csv.DictReader(handle))
    images = np.stack([collection.images[index[row["path"]]] for row in rows])[..., None]
    np.testing.assert_allclose(serving(images=tf.constant(images))["score"].numpy(),
                               [float(row["score"]) for row in rows], rtol=1e-3, atol=1e-3)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["auroc"] <= 1.0
    return rows, metrics
