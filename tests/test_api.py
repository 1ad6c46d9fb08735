"""The Python API (api.py): train from the command line's settings, load the export, score arrays and files."""

import cv2
import numpy as np
import pytest

import api
from tests.test_cli import read_scores
from tests.test_predict import write_bit_depth_folders


def test_train_load_and_score_arrays_and_files_as_scores_csv(tmp_path, capsys):
    normal, abnormal = write_bit_depth_folders(tmp_path / "scans")
    runs = api.train(model="fcae", dataset="folder", normal_dir=normal, abnormal_dir=abnormal, profile="smoke",
                     no_floor=True, out=tmp_path / "runs")
    assert [run.config["model"] for run in runs] == ["fcae"] and 0 <= runs[0].metrics["auroc"] <= 1
    expected = {row["path"]: float(row["score"]) for row in read_scores(runs[0].run_dir)}

    detector = api.load(runs[0].run_dir)
    rows = detector.score_files([abnormal], out=tmp_path / "predictions")
    scored = {str(row["path"]): float(row["score"]) for row in rows}
    assert len(scored) == 8 and all(abs(scored[path] - expected[path]) < 1e-3 for path in scored)

    eight_bit = sorted(path for path in expected if path.endswith("8bit.png"))
    images = [cv2.imread(path, cv2.IMREAD_UNCHANGED) for path in eight_bit]
    for path, image in zip(eight_bit, images):  # one uint8 array each (the sizes differ), then as floats in [0, 1]
        assert abs(float(detector.score(image[None])["score"][0]) - expected[path]) < 1e-3
        assert abs(float(detector.score(image[None] / 255.0)["score"][0]) - expected[path]) < 1e-3
    assert detector.score(images[0][None])["anomaly_map"].shape[0] == 1

    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        detector.score(np.full((1, 32, 32), 255.0))
    with pytest.raises(ValueError, match="Refused settings"):
        api.train(model="fcae", lr=-1)
    assert "--lr: must be a finite number above 0" in capsys.readouterr().err
