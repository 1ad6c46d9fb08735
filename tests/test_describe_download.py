"""The describe and download subcommands: the data part of the command line, without training and without the network."""

import hashlib
import importlib.machinery
import io
import json
import sys
import tarfile
import types
import urllib.error

import cv2
import numpy as np
import pytest

import experiment
import run_experiments
from data import download as downloads
from data.describe import describe
from data.protocols import make_split
from data.sources import DatasetError, load_dataset
from tests.test_layouts import write_pngs


@pytest.fixture(scope="module")
def chest_1(tmp_path_factory):
    """COVID-19 Radiography Database with one unreadable and one non-image file among the normals."""
    top = tmp_path_factory.mktemp("chest_1") / "COVID-19_Radiography_Dataset"
    for name, n in (("Normal", 8), ("COVID", 4), ("Viral Pneumonia", 2), ("Lung_Opacity", 3)):
        write_pngs(top / name / "images", n)
        write_pngs(top / name / "masks", n)
    (top / "Normal" / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    (top / "Normal" / "images" / "notes.txt").write_text("radiologist notes")
    return top.parent


def test_describe_counts_classes_splits_not_used_and_skips(chest_1):
    collection = load_dataset("chest_xray_1", data_dir=str(chest_1))
    text = describe(collection, make_split("cae_d_gan", collection, seed=0), "cae_d_gan")
    assert f"Layout: covid19_radiography_database at {chest_1 / 'COVID-19_Radiography_Dataset'}" in text
    assert "Images: 14 usable (8 normal, 6 abnormal), 2 skipped, 3 not used" in text
    lines = [line.split() for line in text.splitlines()]
    assert ["Normal", "normal", "8"] in lines and ["Viral", "Pneumonia", "abnormal", "2"] in lines
    assert "Protocol cae_d_gan: train 3 normals, validation 1 normals, test 4 normal + 6 abnormal" in text
    assert "test set 25% of abnormals: 4 normal + 2 abnormal" in text
    assert "Not used on purpose: 3" in text and "Lung_Opacity is not one of the paper's classes" in text
    assert "Skipped: 2" in text and "truncated (PNG without its end marker): 1, e.g." in text and "broken.png" in text
    assert "not a supported image type (.txt): 1" in text
    assert "Duplicates: none found" in text


def test_describe_summarises_file_info_and_duplicates():
    """file_info and duplicates come from the file checks; unknown values print as '?'."""
    collection = load_dataset("phantom", phantom_normals=4, phantom_abnormals=2, phantom_size=16)
    collection.file_info = [{"width": 16, "height": 16, "channels": 1, "bit_depth": 8, "format": "PNG"}] * 5 + [
        {"width": None, "height": None, "channels": None, "bit_depth": None, "format": None}]
    collection.duplicates = {"exact_groups": 1, "exact_images": 2, "near_groups": 0, "near_images": 0,
                             "mixed_label_groups": 0, "dropped_conflicting": 0}
    text = describe(collection, make_split("improved_bigan", collection, seed=0), "improved_bigan")
    assert "Image sizes: 16x16 (5), ?x? (1)" in text
    assert "Image modes: PNG 8-bit 1-channel (5), ? ?-bit ?-channel (1)" in text
    assert "Duplicates: 1 exact groups (2 images), 0 near groups (0 images)" in text


def test_cli_describe_prints_and_exits_without_training(chest_1, tmp_path, capsys):
    before = set(tmp_path.iterdir())
    assert run_experiments.main(["describe", "--dataset", "chest_xray_1", "--data-dir", str(chest_1)]) == 0
    printed = capsys.readouterr().out
    assert "chest_xray_1 (seed 0):" in printed and "Protocol cae_d_gan" in printed
    assert set(tmp_path.iterdir()) == before  # nothing written
    assert run_experiments.main(["describe", "--dataset", "chest_xray_1", "--data-dir", str(chest_1),
                                 "--protocol", "native"]) == 2
    assert "no train/test split of its own" in capsys.readouterr().err


def test_cli_describe_every_mvtec_category(tmp_path, capsys):
    for category in ("bottle", "zipper"):
        write_pngs(tmp_path / category / "train" / "good", 3)
        write_pngs(tmp_path / category / "test" / "good", 1)
        write_pngs(tmp_path / category / "test" / "broken", 1)
    argv = ["describe", "--dataset", "mvtec_ad", "--data-dir", str(tmp_path), "--category", "all"]
    assert run_experiments.main(argv) == 0
    printed = capsys.readouterr().out
    assert "mvtec_ad bottle (seed 0):" in printed and "mvtec_ad zipper (seed 0):" in printed
    assert printed.count("Protocol native: train 2 normals, validation 1 normals, test 1 normal + 1 abnormal") == 2


def fake_kaggle(calls):
    """Stand-in for the kaggle package: records the download instead of doing it."""

    class KaggleApi:
        def authenticate(self):
            calls.append("authenticate")

        def dataset_download_files(self, slug, path, unzip, quiet):
            calls.append((slug, path, unzip))

    modules = {}
    for name in ("kaggle", "kaggle.api", "kaggle.api.kaggle_api_extended"):
        modules[name] = types.ModuleType(name)
        modules[name].__spec__ = importlib.machinery.ModuleSpec(name, None)
    modules["kaggle.api.kaggle_api_extended"].KaggleApi = KaggleApi
    return modules


def test_kaggle_download_without_credentials_names_the_page_and_layout(tmp_path, monkeypatch, capsys):
    for name, module in fake_kaggle([]).items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path))  # no kaggle.json there
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    assert run_experiments.main(["download", "--dataset", "chest_xray_2", "--data-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "needs Kaggle credentials" in error
    assert "https://www.kaggle.com/datasets/prashant268/chest-xray-covid19-pneumonia" in error
    assert "Data/{train,test}/{NORMAL,COVID19,PNEUMONIA}" in error


def test_kaggle_download_with_credentials_calls_the_client(tmp_path, monkeypatch):
    calls = []
    for name, module in fake_kaggle(calls).items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "secret")
    message = downloads.download("chest_xray_1", str(tmp_path / "chest"))
    assert calls == ["authenticate", ("tawsifurrahman/covid19-radiography-database", str(tmp_path / "chest"), True)]
    assert message == f"chest_xray_1 ready in {tmp_path / 'chest'}."


def tar_xz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class Response(io.BytesIO):
    """What urlopen returns, enough for fetch(): read(), headers, a context manager."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


def test_mvtec_download_checks_extracts_and_prints_the_sha256(tmp_path, monkeypatch, capsys):
    parts = ("train/good", "test/good", "test/broken_large")
    pngs = {part: cv2.imencode(".png", np.full((8, 8), 60 * i, np.uint8))[1].tobytes() for i, part in enumerate(parts)}
    archive = tar_xz({f"bottle/{part}/000.png": png for part, png in pngs.items()})
    requested = []

    def urlopen(url, timeout):
        requested.append(url)
        return Response(archive)

    monkeypatch.setattr(downloads.urllib.request, "urlopen", urlopen)
    message = downloads.download("mvtec_ad", str(tmp_path), "Bottle")
    assert requested == [downloads.MVTEC_URLS["bottle"]] and requested[0].endswith("/bottle.tar.xz")
    assert (tmp_path / "bottle" / "test" / "broken_large" / "000.png").read_bytes() == pngs["test/broken_large"]
    assert not list(tmp_path.glob("*.tar.xz*")) and message == f"MVTec AD bottle ready in {tmp_path}."
    assert f"bottle: sha256 {hashlib.sha256(archive).hexdigest()}" in capsys.readouterr().err
    assert len(load_dataset("mvtec_ad", data_dir=str(tmp_path), category="bottle")) == 3

    monkeypatch.setattr(downloads.urllib.request, "urlopen", lambda url, timeout: Response(archive[: len(archive) // 2]))
    with pytest.raises(DatasetError, match="incomplete or damaged"):
        downloads.download("mvtec_ad", str(tmp_path / "again"), "bottle")


def test_download_failures_are_one_clear_message(tmp_path, monkeypatch):
    def unreachable(url, timeout):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(downloads.urllib.request, "urlopen", unreachable)
    with pytest.raises(DatasetError, match="Could not download https://www.mydrive.ch/.*/zipper.tar.xz"):
        downloads.download("mvtec_ad", str(tmp_path), "zipper")
    assert not list(tmp_path.glob("*.part"))
    with pytest.raises(DatasetError, match="needs --category NAME or --category all"):
        downloads.download("mvtec_ad", str(tmp_path))
    with pytest.raises(DatasetError, match="no category 'bolt'"):
        downloads.download("mvtec_ad", str(tmp_path), "bolt")
    assert downloads.download("phantom", None) == "phantom is generated on the fly: nothing to download."


def test_a_chest_run_splits_by_cae_d_gan_before_training(tmp_path, monkeypatch):
    """The run's split.json for a file layout with its default protocol; training is cut short (it has its own tests)."""
    for split, sizes in (("train", (36, 3, 5)), ("test", (24, 2, 2))):  # 60 normals: 30 train, 3 of them validation
        for name, n in zip(("NORMAL", "COVID19", "PNEUMONIA"), sizes):
            write_pngs(tmp_path / "Data" / split / name, n)

    out = tmp_path / "runs"
    written = {}

    def stop_before_training(config):  # an interrupted start removes its run folder: read split.json first
        written["split"] = json.loads(next(out.glob("chest_xray_2/improved_bigan/*/split.json")).read_text())
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "compiled_model", stop_before_training)
    argv = ["--dataset", "chest_xray_2", "--data-dir", str(tmp_path), "--profile", "smoke", "--no-floor", "--out", str(out)]
    assert run_experiments.main(argv) == experiment.EXIT_INTERRUPTED
    split = written["split"]
    assert split["protocol"] == "cae_d_gan" and list(split["test_sets"]) == ["25", "50", "75", "100"]
    assert len(split["train"]) + len(split["validation"]) == 30 and split["test"] == split["test_sets"]["100"]
    normals = [{e["path"] for e in entries if e["label"] == 0} for entries in split["test_sets"].values()]
    assert all(n == normals[0] for n in normals) and len(normals[0]) == 30
    assert [sum(e["label"] for e in entries) for entries in split["test_sets"].values()] == [3, 6, 9, 12]
    training = {e["path"] for part in ("train", "validation") for e in split[part]}
    assert not training & {e["path"] for e in split["test"]}
