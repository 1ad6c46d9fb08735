"""Deployment: 8/12/16-bit files score as in training through the SavedModel, model.keras and `predict`."""

import csv
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow as tf

import run_experiments
from data.decode import inspect_image
from data.phantom import make_phantom
from evaluation import predict as predict_module
from tests.test_cli import only_run, read_scores
from tests.test_hostile_input import BAD, write_hostile_folder

REPO = pathlib.Path(__file__).resolve().parents[1]
KINDS = ("8bit.jpg", "8bit.png", "12bit.png", "16bit.png")


def tinted(image):
    """A grey slice as a colour (BGR) image whose three channels differ."""
    return np.dstack([image, image * 0.85, image * 0.7]).astype(np.uint8)


SIZES = ((48, 48), (56, 40), (52, 64))  # (width, height) in turn, so that one batch of predict mixes sizes


def write_bit_depth_folders(root):
    """Phantom slices as 8-bit JPEG (in colour, tinted) and PNG, a 12-bit scan stored as 16-bit PNG (values
    200..3770, as a scanner writes them) and a full-range 16-bit PNG, in turn, at three sizes in turn (48 px and
    two others); each kind and size lands among the abnormal (test) images."""
    collection = make_phantom(40, 8, size=48, seed=1)  # 40 normals: 3 validation normals, the minimum
    for position, (image, label) in enumerate(zip(collection.images, collection.labels)):
        folder = root / ("abnormal" if label else "normal")
        folder.mkdir(parents=True, exist_ok=True)
        kind = KINDS[position % len(KINDS)]
        image = cv2.resize(image, SIZES[position % len(SIZES)], interpolation=cv2.INTER_AREA)
        stored = {"12bit.png": image.astype(np.uint16) * 14 + 200, "16bit.png": image.astype(np.uint16) * 257,
                  "8bit.jpg": tinted(image)}  # a colour JPEG, as most downloaded photos and many scans are
        assert cv2.imwrite(str(folder / f"{position}_{kind}"), stored.get(kind, image))
    return root / "normal", root / "abnormal"


@pytest.fixture(scope="module")
def bit_depth_run(tmp_path_factory):
    normal, abnormal = write_bit_depth_folders(tmp_path_factory.mktemp("scans"))
    out = tmp_path_factory.mktemp("runs")
    assert run_experiments.main(["--dataset", "folder", "--normal-dir", str(normal), "--abnormal-dir", str(abnormal),
                                 "--model", "fcae", "--profile", "smoke", "--no-floor", "--out", str(out)]) == 0
    run_dir = only_run(out)  # decoding and serving do not depend on the model (conformance: every model's export)
    rows = {row["path"]: float(row["score"]) for row in read_scores(run_dir)}
    assert {kind for kind in KINDS if any(path.endswith(kind) for path in rows)} == set(KINDS)
    return run_dir, (normal, abnormal), rows


@pytest.fixture(scope="module")
def predictions(bit_depth_run, tmp_path_factory):
    run_dir, folders, _ = bit_depth_run
    out = tmp_path_factory.mktemp("predictions")
    assert run_experiments.main(["predict", str(run_dir), *map(str, folders), "--out", str(out)]) == 0
    return out, read_csv(out / "predictions.csv")


def read_csv(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_saved_model_scores_8_12_and_16_bit_files_as_training_did(bit_depth_run):
    """Issue 11.1: decoded as the README says, a 12-bit scan in a 16-bit PNG scored 7.56 where scores.csv had -0.33;
    serving_default refused uint16 and had no min..max stretch. serving_uint16 applies training's."""
    run_dir, _, expected = bit_depth_run
    signatures = tf.saved_model.load(str(run_dir / "saved_model")).signatures
    for path, score in expected.items():
        data = tf.io.read_file(path)
        if path.endswith(("12bit.png", "16bit.png")):
            served = signatures["serving_uint16"](images=tf.io.decode_png(data, dtype=tf.uint16)[None])
        else:
            served = signatures["serving_default"](images=tf.io.decode_image(data, expand_animations=False)[None])
        assert float(served["score"][0]) == pytest.approx(score, rel=1e-3, abs=1e-3), path


def documented_python_block(page, after):
    """The first ```python block of `page` (a path in the repository) after the text `after`."""
    text = (REPO / page).read_text()
    return re.search(r"```python\n(.*?)```", text[text.index(after):], re.S).group(1)


def test_the_documented_model_keras_snippet_scores_a_colour_jpeg_as_scores_csv_from_any_directory(bit_depth_run, tmp_path):
    """Issue 21.12: the README's snippet (cv2.imread(...)[None, ..., None]) failed on every colour JPEG, needed the
    repository as the working directory, and through cv2 scored up to 0.106 off scores.csv. The block is taken from
    docs/deployment.md, so the two cannot drift; it runs in a fresh process outside the repository. Appended, in the same
    process: issue 11.2's check that model.keras takes raw uint8 / uint16 arrays and scores what scores.csv says."""
    run_dir, _, expected = bit_depth_run
    jpeg = next(path for path in expected if path.endswith("8bit.jpg"))
    assert cv2.imread(jpeg).std(axis=-1).max() > 10  # a colour JPEG, not grey stored as three equal channels
    pngs = [path for path in expected if path.endswith(".png")]
    snippet = documented_python_block("docs/deployment.md", "`model.keras` is the same model")
    for placeholder, value in {"/path/to/bigan-ad": REPO, "runs/brain_mri/improved_bigan/<run>/model.keras":
                               run_dir / "model.keras", "scan.jpg": jpeg}.items():
        assert snippet.count(f'"{placeholder}"') == 1, placeholder
        snippet = snippet.replace(f'"{placeholder}"', repr(str(value)))
    raw = ("import json, cv2\n"
           f"print(json.dumps([float(model(cv2.imread(p, cv2.IMREAD_UNCHANGED)[None, ..., None])['score'][0]) "
           f"for p in {pngs!r}]))\n")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", snippet + raw], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    *_, printed, raw_scores = result.stdout.strip().splitlines()
    score, threshold = map(float, printed.split())
    assert score == pytest.approx(expected[jpeg], rel=1e-3, abs=1e-3)
    assert threshold == pytest.approx(json.loads((run_dir / "metrics.json").read_text())["threshold"], rel=1e-6)
    np.testing.assert_allclose(json.loads(raw_scores), [expected[path] for path in pngs], rtol=1e-3, atol=1e-3)


def test_predict_reproduces_scores_csv_and_writes_overlays_at_original_size(bit_depth_run, predictions):
    run_dir, _, expected = bit_depth_run
    out, rows = predictions
    by_path = {row["path"]: row for row in rows}
    assert len(rows) == 48  # every file, trained on or not
    np.testing.assert_allclose([float(by_path[path]["score"]) for path in expected], list(expected.values()),
                               rtol=1e-3, atol=1e-3)
    threshold = json.loads((run_dir / "metrics.json").read_text())["threshold"]
    for row in rows:
        assert float(row["threshold"]) == pytest.approx(threshold)
        assert int(row["is_anomalous"]) == (float(row["score"]) >= float(row["threshold"]))
        # The file's own size, not the model's 32.
        assert cv2.imread(row["overlay"]).shape == cv2.imread(row["path"], cv2.IMREAD_UNCHANGED).shape[:2] + (3,)
    assert read_csv(out / "skipped.csv") == []


def test_a_12_bit_png_scores_the_same_in_evaluation_saved_model_and_predict(bit_depth_run, predictions):
    run_dir, _, expected = bit_depth_run
    serving = tf.saved_model.load(str(run_dir / "saved_model")).signatures["serving_uint16"]
    predicted = {row["path"]: float(row["score"]) for row in predictions[1]}
    twelve_bit = [path for path in expected if path.endswith("12bit.png")]
    for path in twelve_bit:
        served = float(serving(images=tf.io.decode_png(tf.io.read_file(path), dtype=tf.uint16)[None])["score"][0])
        assert expected[path] == pytest.approx(served, rel=1e-3, abs=1e-3) == predicted[path]


def test_predict_no_overlays_and_save_maps_score_mixed_sizes_in_batches_as_scores_csv(bit_depth_run, tmp_path):
    """Issue 21.13: predict scored one image at a time and always wrote overlays. Files of three sizes, grey and
    colour, go through in batches; the scores are scores.csv's, no overlay is written, and each raw anomaly map
    is the SavedModel's own for that file."""
    run_dir, folders, expected = bit_depth_run
    out = tmp_path / "out"
    assert run_experiments.main(["predict", str(run_dir), *map(str, folders), "--no-overlays", "--save-maps",
                                 "--out", str(out)]) == 0
    written = read_csv(out / "predictions.csv")
    assert len(written) == 48 and not (out / "overlays").exists()
    assert all(row["overlay"] == "" for row in written)
    by_path = {row["path"]: row for row in written}
    np.testing.assert_allclose([float(by_path[path]["score"]) for path in expected], list(expected.values()),
                               rtol=1e-3, atol=1e-3)
    serving = tf.saved_model.load(str(run_dir / "saved_model")).signatures["serving_float"]
    for path in [path for path in expected if path.endswith(".jpg")][:2] + [next(iter(expected))]:
        _, image = inspect_image(path)
        direct = serving(images=tf.constant(image[None]))["anomaly_map"].numpy()[0]
        np.testing.assert_allclose(np.load(by_path[path]["map"]), direct, rtol=1e-4, atol=1e-4)
    assert len(list((out / "maps").glob("*.npy"))) == 48


def test_predict_batches_by_size_when_resizing_first_would_change_the_scores(bit_depth_run, tmp_path, monkeypatch):
    """A SavedModel whose preprocessing is not grayscale-and-resize (simulated: the probe finds a difference) is
    given the decoded images themselves, in batches of one size: the same scores."""
    run_dir, folders, expected = bit_depth_run
    monkeypatch.setattr(predict_module, "_same_outputs", lambda outputs, reference: False)
    predict_module.predict(run_dir, list(map(str, folders)), tmp_path, overlays=False, batch_size=8)
    by_path = {row["path"]: float(row["score"]) for row in read_csv(tmp_path / "predictions.csv")}
    np.testing.assert_allclose([by_path[path] for path in expected], list(expected.values()), rtol=1e-3, atol=1e-3)


def test_predict_threshold_overrides_the_stored_one_and_a_second_call_leaves_no_stale_overlay(bit_depth_run, tmp_path):
    run_dir, (_, abnormal), _ = bit_depth_run
    (tmp_path / "overlays").mkdir()
    (tmp_path / "overlays" / "my notes.txt").write_text("not predict's")
    assert run_experiments.main(["predict", str(run_dir / "saved_model"), str(abnormal), "--threshold=-1e9",
                                 "--out", str(tmp_path)]) == 0
    rows = read_csv(tmp_path / "predictions.csv")
    assert len(rows) == 8 and all(row["is_anomalous"] == "1" and float(row["threshold"]) == -1e9 for row in rows)
    # Issue 21.6: a second call into the same --out left the first call's overlays beside its own.
    one = sorted(abnormal.iterdir())[0]
    assert run_experiments.main(["predict", str(run_dir), str(one), "--out", str(tmp_path)]) == 0
    (row,) = read_csv(tmp_path / "predictions.csv")
    assert sorted(path.name for path in (tmp_path / "overlays").iterdir()) == [pathlib.Path(row["overlay"]).name,
                                                                              "my notes.txt"]


def test_predict_skips_hostile_files_with_reasons_and_keeps_each_decoded_size(bit_depth_run, tmp_path):
    run_dir = bit_depth_run[0]
    folders = write_hostile_folder(tmp_path / "hostile")
    assert run_experiments.main(["predict", str(run_dir), str(folders["normal"]), "--out", str(tmp_path / "out")]) == 0
    reasons = {pathlib.Path(row["path"]).name: row["reason"] for row in read_csv(tmp_path / "out" / "skipped.csv")}
    assert set(reasons) == set(BAD)
    for name, expected in BAD.items():
        assert reasons[name].startswith(expected), (name, reasons[name])
    sizes = {pathlib.Path(row["path"]).name: cv2.imread(row["overlay"]).shape[:2]
             for row in read_csv(tmp_path / "out" / "predictions.csv")}
    assert len(sizes) == 14 and all(np.isfinite(float(row["score"])) for row in read_csv(tmp_path / "out" / "predictions.csv"))
    assert sizes.pop("huge.jpg") == (1000, 1000)  # 8000 px decoded reduced by 8, as in training
    assert set(sizes.values()) == {(64, 64)}


def test_predict_usage_and_data_errors_exit_2(bit_depth_run, tmp_path, capsys):
    run_dir = bit_depth_run[0]
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.png").write_bytes(b"not a picture")
    with pytest.raises(SystemExit) as refused:  # before TensorFlow, by the parser (issue 26, item 8)
        run_experiments.main(["predict", str(tmp_path), str(tmp_path / "notes")])
    assert refused.value.code == 2 and "No SavedModel" in capsys.readouterr().err
    assert run_experiments.main(["predict", str(run_dir), str(tmp_path / "missing.png")]) == 2
    assert "neither a file nor a folder" in capsys.readouterr().err
    assert run_experiments.main(["predict", str(run_dir), str(tmp_path / "notes"), "--out", str(tmp_path / "o")]) == 2
    assert "No usable image" in capsys.readouterr().err


def test_training_on_normals_only_exports_and_says_evaluation_needs_abnormal_images(tmp_path, capsys):
    """--dataset folder without --abnormal-dir used to stop with exit 2 before training."""
    normal, _ = write_bit_depth_folders(tmp_path / "scans")
    out = tmp_path / "runs"
    assert run_experiments.main(["--dataset", "folder", "--normal-dir", str(normal), "--profile", "smoke",
                                 "--model", "fcae", "--out", str(out)]) == 0  # floors included
    assert "evaluation needs abnormal images" in capsys.readouterr().out
    run_dir = next(out.glob("folder/fcae/*"))
    assert (run_dir / "saved_model" / "saved_model.pb").is_file() and (run_dir / "model.keras").is_file()
    assert not (run_dir / "scores.csv").exists()
    assert np.isfinite(json.loads((run_dir / "metrics.json").read_text())["threshold"])
    assert run_experiments.main(["predict", str(run_dir), str(normal), "--out", str(tmp_path / "p")]) == 0


def test_predict_out_inside_its_input_and_a_path_named_twice_score_each_image_once(bit_depth_run, tmp_path):
    """Issue 26, item 10: --out inside the input folder collected the earlier overlays as inputs, deleted them and
    reported them unreadable; a path given twice was scored twice."""
    run_dir, (_, abnormal), _ = bit_depth_run
    images = tmp_path / "images"
    shutil.copytree(abnormal, images)
    first = sorted(images.iterdir())[0]
    for _ in range(2):
        assert run_experiments.main(["predict", str(run_dir), str(images), str(first), "--save-maps",
                                     "--out", str(images / "predictions")]) == 0
        rows = read_csv(images / "predictions" / "predictions.csv")
        assert len(rows) == 8 and len({row["path"] for row in rows}) == 8
        assert read_csv(images / "predictions" / "skipped.csv") == []
