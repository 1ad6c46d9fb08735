"""The Python API (api.py): train from a run spec's settings, load the export, score arrays and files."""

import json

import cv2
import numpy as np
import pytest

import api
import run_experiments
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
    # Issue 26, items 2, 5, 9: a channels-first RGB scan scored 5.53 (3.49 the right way round), flagged, with no word;
    # 5 channels were read; an empty side was TensorFlow's InvalidArgumentError; int64 was told "float images".
    rgb = np.repeat(images[0][None, ..., None], 3, axis=-1)
    with pytest.raises(ValueError, match="channels first"):
        detector.score(rgb.transpose(0, 3, 1, 2))
    with pytest.raises(ValueError, match="1-4 channels last"):
        detector.score(np.zeros((1, 32, 32, 5), np.uint8))
    with pytest.raises(ValueError, match="at least 2 x 2 pixels"):
        detector.score(np.zeros((1, 0, 64), np.uint8))
    with pytest.raises(ValueError, match="uint8 or uint16 intensities or floats in \\[0, 1\\]; got int64"):
        detector.score(images[0][None].astype(np.int64))
    assert detector.score(rgb)["score"].shape == (1,)
    # Item 7: the reason is the exception's message, not "printed above".
    with pytest.raises(api.SpecError, match="^--lr: must be a finite number above 0"):
        api.train(model="fcae", lr=-1)
    assert capsys.readouterr().err == ""


def test_a_zero_reaches_the_run_and_config_json_repeats_it(tmp_path):
    """Issue 26 item 1: a 0 reaches the run (epochs_recon=0 trained one phase-1 epoch and recorded 1): the spec, the
    run's resolved config and its schedule all keep it (no run needed: the 0 was lost before the parser). config.json
    records the spec, which `train --config` and api.train(config=) rebuild alike (tests/test_cli.py repeats a run
    from it and compares the scores)."""
    import experiment  # noqa: PLC0415 (TensorFlow)
    from models.schedule import TwoPhaseSchedule  # noqa: PLC0415

    settings = {"model": "improved_bigan", "profile": "smoke", "epochs_recon": 0, "min_updates": 0, "no_floor": True,
                "out": str(tmp_path / "a")}
    built = api.spec(**settings)
    assert built.epochs_recon == 0 and built.min_updates == 0
    config = experiment.run_config(built, "improved_bigan", 0, None, True)
    assert config["epochs_recon"] == 0 and config["min_updates"] == 0
    schedule = TwoPhaseSchedule(config["epochs_recon"], config["epochs_adv"])  # improved_bigan's make_schedule
    assert {schedule.phase(epoch) for epoch in range(schedule.total_epochs)} == {"adversarial"}
    recorded = tmp_path / "config.json"
    recorded.write_text(json.dumps({**config, **experiment.provenance(built)}))
    assert api.spec(config=recorded, out=str(tmp_path / "c")) == run_experiments.parse_args(
        ["--config", str(recorded), "--out", str(tmp_path / "c")])
    assert api.spec(config=recorded, out=str(tmp_path / "a")) == built
