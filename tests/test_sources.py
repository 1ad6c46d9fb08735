import pathlib
import zlib

import cv2
import numpy as np
import pytest

from data.collection import scan_files
from data.sources import DatasetError, load_dataset, resolve_data_dir

try:
    from PIL import Image
except ImportError:  # Pillow is optional: without it the palette PNG case is not written
    Image = None

EXPECTED_LAYOUTS = ("yes/ + no/", "Training|Testing/{glioma,meningioma,notumor,pituitary}", "kaggle.com")
BAD_FILES = {
    "empty.jpg": "empty file",
    "garbage.png": "truncated (PNG without its end marker)",
    "truncated.jpg": "truncated (JPEG without its end marker)",
    "notes.txt": "not a supported image type (.txt)",
    "scan.tif": "corrupt TIFF (OpenCV cannot decode it)",
    ".DS_Store": "hidden file or folder (OS metadata)",
}


def write_images(folder: pathlib.Path, n: int = 1) -> list[str]:
    """Write `n` copies of every image variant the Kaggle sets contain; returns their paths.

    RGB JPEG, grayscale PNG, RGBA PNG, 16-bit PNG, palette PNG, BMP, GIF, an odd size and an
    upper-case extension. Each folder gets its own pixels: identical images in two class folders
    would be dropped as exact duplicates carrying both labels.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(str(folder).encode()))
    written = []
    for k in range(n):
        gray = rng.integers(0, 256, (40, 48), dtype=np.uint8)
        arrays = {
            f"rgb_{k}.jpg": cv2.merge([gray, gray, gray]),
            f"gray_{k}.png": gray,
            f"rgba_{k}.png": cv2.merge([gray, gray, gray, np.full_like(gray, 200)]),
            f"deep_{k}.png": gray.astype(np.uint16) * 257,
            f"scan_{k}.bmp": gray,
            f"odd_{k}.JPEG": rng.integers(0, 256, (211, 173, 3), dtype=np.uint8),
        }
        for name, array in arrays.items():
            assert cv2.imwrite(str(folder / name), array)
            written.append(str(folder / name))
        if Image is not None:
            Image.fromarray(gray).convert("P").save(folder / f"palette_{k}.png")
            Image.fromarray(gray).save(folder / f"anim_{k}.gif")
            written += [str(folder / f"palette_{k}.png"), str(folder / f"anim_{k}.gif")]
    return sorted(written)


def write_bad_files(folder: pathlib.Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(folder / "whole.jpg"), np.full((64, 64), 128, np.uint8))
    whole = (folder / "whole.jpg").read_bytes()
    (folder / "whole.jpg").unlink()
    contents = {
        "empty.jpg": b"",
        "garbage.png": b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4,
        "truncated.jpg": whole[: len(whole) // 2],
        "notes.txt": b"patient notes",
        "scan.tif": b"II*\x00",
        ".DS_Store": b"\x00\x00\x00\x01Bud1",
    }
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    return [str(folder / name) for name in contents]


def skipped_reasons(collection) -> dict[str, str]:
    return {pathlib.Path(s["path"]).name: s["reason"] for s in collection.skipped}


def test_yes_no_layout_labels_counts_and_skipped_files(tmp_path):
    normals = write_images(tmp_path / "no", n=2)
    tumours = write_images(tmp_path / "yes" / "extra_subfolder")
    bad = write_bad_files(tmp_path / "no")
    collection = load_dataset("brain_mri", data_dir=str(tmp_path))
    assert collection.ids == normals + tumours
    assert collection.labels.tolist() == [0] * len(normals) + [1] * len(tumours)
    assert collection.images is None and collection.masks is None
    assert skipped_reasons(collection) == BAD_FILES
    assert not set(bad) & set(collection.ids)


def test_training_testing_layout_pools_both_splits(tmp_path):
    expected = {}
    for split in ("Training", "Testing"):
        for name, label in (("glioma", 1), ("meningioma", 1), ("notumor", 0), ("pituitary", 1)):
            for path in write_images(tmp_path / split / name):
                expected[path] = label
    collection = load_dataset("brain_mri", data_dir=str(tmp_path))
    assert dict(zip(collection.ids, collection.labels.tolist())) == expected
    assert collection.skipped == []


def test_layout_one_level_down_with_other_capitalisation(tmp_path):
    root = tmp_path / "archive"
    normals = write_images(root / "TRAINING" / "No_Tumor")
    tumours = [
        path
        for name in ("glioma_tumor", "Meningioma_Tumor", "pituitary_tumor")
        for path in write_images(root / "testing" / name)
    ]
    collection = load_dataset("brain_mri", data_dir=str(tmp_path))
    assert sorted(collection.ids) == sorted(normals + tumours)
    assert collection.labels.sum() == len(tumours)


def test_a_nested_copy_is_not_counted_twice(tmp_path):
    """The navoneel zip holds yes/ + no/ and the same folders again under brain_tumor_dataset/."""
    top = write_images(tmp_path / "no") + write_images(tmp_path / "yes")
    write_images(tmp_path / "brain_tumor_dataset" / "no")
    write_images(tmp_path / "brain_tumor_dataset" / "yes")
    assert sorted(load_dataset("brain_mri", data_dir=str(tmp_path)).ids) == sorted(top)


@pytest.mark.parametrize("case", ["missing", "empty", "unrecognised", "no usable normals"])
def test_unusable_brain_mri_folders_name_the_expected_layouts(tmp_path, case):
    if case == "unrecognised":
        write_images(tmp_path / "cats")
        write_images(tmp_path / "dogs")
    if case == "no usable normals":
        write_bad_files(tmp_path / "no")
        write_images(tmp_path / "yes")
    data_dir = tmp_path / "nowhere" if case == "missing" else tmp_path
    with pytest.raises(DatasetError) as error:
        load_dataset("brain_mri", data_dir=str(data_dir))
    message = str(error.value)
    assert str(data_dir) in message
    assert all(layout in message for layout in EXPECTED_LAYOUTS)


def test_no_brain_mri_folder_given_or_found(tmp_path, monkeypatch):
    monkeypatch.delenv("BIGAN_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError, match="was given or found") as error:
        load_dataset("brain_mri")
    assert all(layout in str(error.value) for layout in EXPECTED_LAYOUTS)


def test_resolve_data_dir_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BIGAN_DATA_DIR", str(tmp_path / "shared"))
    assert resolve_data_dir("brain_mri", None) is None
    (tmp_path / "datasets" / "brain_mri").mkdir(parents=True)
    assert resolve_data_dir("brain_mri", None) == tmp_path / "datasets" / "brain_mri"
    (tmp_path / "shared" / "brain_mri").mkdir(parents=True)
    assert resolve_data_dir("brain_mri", None) == tmp_path / "shared" / "brain_mri"
    assert resolve_data_dir("brain_mri", "elsewhere") == pathlib.Path("elsewhere")


def test_folder_source_searches_recursively(tmp_path):
    normals = write_images(tmp_path / "good" / "batch_1") + write_images(tmp_path / "good" / "batch_2")
    defects = write_images(tmp_path / "defects")
    bad = write_bad_files(tmp_path / "defects")
    collection = load_dataset(
        "folder", normal_dir=str(tmp_path / "good"), abnormal_dir=str(tmp_path / "defects")
    )
    assert collection.ids == normals + defects
    assert collection.labels.tolist() == [0] * len(normals) + [1] * len(defects)
    assert sorted(s["path"] for s in collection.skipped) == sorted(bad)


def test_folder_source_errors_name_the_folder(tmp_path):
    write_images(tmp_path / "good")
    write_bad_files(tmp_path / "defects")
    with pytest.raises(DatasetError, match="needs --normal-dir"):
        load_dataset("folder", abnormal_dir=str(tmp_path / "good"))
    assert set(load_dataset("folder", normal_dir=str(tmp_path / "good")).labels) == {0}  # normals only: no evaluation
    with pytest.raises(DatasetError, match="--abnormal-dir folder .* does not exist"):
        load_dataset("folder", normal_dir=str(tmp_path / "good"), abnormal_dir=str(tmp_path / "x"))
    with pytest.raises(DatasetError, match="--abnormal-dir folder .* has no usable images"):
        load_dataset("folder", normal_dir=str(tmp_path / "good"), abnormal_dir=str(tmp_path / "defects"))


def test_folder_source_says_which_files_are_not_images(tmp_path):
    write_images(tmp_path / "good")
    (tmp_path / "defects").mkdir()
    for name in ("crack.jpg", "dent.png"):
        (tmp_path / "defects" / name).write_text("inspection notes, not a photo")
    with pytest.raises(DatasetError, match="--abnormal-dir folder .* has no usable images") as error:
        load_dataset("folder", normal_dir=str(tmp_path / "good"), abnormal_dir=str(tmp_path / "defects"))
    message = str(error.value)
    assert "Skipped: 2" in message and "not an image (content starts with b'inspecti'): 2, e.g." in message
    assert str(tmp_path / "defects" / "crack.jpg") in message and str(tmp_path / "defects" / "dent.png") in message


@pytest.mark.parametrize("normal, abnormal, where", [
    ("scans", "scans", "they are the same folder"),
    ("scans", "scans/defect", "--abnormal-dir is inside --normal-dir"),
    ("scans/ok", "scans", "--normal-dir is inside --abnormal-dir"),
])
def test_folder_source_refuses_overlapping_folders(tmp_path, normal, abnormal, where):
    write_images(tmp_path / "scans" / "ok")
    write_images(tmp_path / "scans" / "defect")
    with pytest.raises(DatasetError, match=f"--normal-dir .* and --abnormal-dir .* overlap \\({where}\\)"):
        load_dataset("folder", normal_dir=str(tmp_path / normal), abnormal_dir=str(tmp_path / abnormal))


def test_scan_files_reports_only_bad_files(tmp_path):
    good = write_images(tmp_path)
    bad = [p for p in write_bad_files(tmp_path) if p.endswith((".jpg", ".png", ".tif"))]
    scanned = dict(zip(good + bad, scan_files(good + bad)))
    reasons = {pathlib.Path(p): r for p, r in scanned.items() if isinstance(r, str)}
    assert {path.name: reason for path, reason in reasons.items()} == {
        name: BAD_FILES[name] for name in ("empty.jpg", "garbage.png", "truncated.jpg", "scan.tif")
    }
    assert all(scanned[path][0]["width"] in (48, 173) for path in good)


@pytest.mark.parametrize(
    "name", ["brain_mri", "mvtec_ad", "plant_village", "chest_xray_1", "chest_xray_2", "chest_xray_3"]
)
def test_every_dataset_without_a_folder_says_where_to_get_it(name, tmp_path, monkeypatch):
    monkeypatch.delenv("BIGAN_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError, match=f"No {name} folder was given or found .* https://"):
        load_dataset(name, category="bottle" if name == "mvtec_ad" else None)


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(DatasetError, match="Unknown dataset 'mnist'.*brain_mri"):
        load_dataset("mnist")


def test_phantom_source():
    collection = load_dataset("phantom", phantom_normals=3, phantom_abnormals=2, phantom_size=32)
    assert collection.images.shape == (5, 32, 32)
    assert collection.labels.tolist() == [0, 0, 0, 1, 1]
