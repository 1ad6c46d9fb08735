"""Every published layout, generated as a tiny folder tree: recognition, counts, labels, classes, splits, masks."""

import collections
import importlib.machinery
import pathlib
import shutil
import sys
import types

import cv2
import numpy as np
import pytest
import tensorflow as tf

from data import plant_village
from data.sources import DatasetError, available_categories, load_dataset

_rng = np.random.default_rng(0)


def write_pngs(folder: pathlib.Path, n: int, names=None) -> list[str]:
    """`n` distinct 16x16 grayscale PNGs (distinct, so duplicate detection never groups them)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names or [f"{k:03d}.png" for k in range(n)]:
        path = folder / name
        assert cv2.imwrite(str(path), _rng.integers(0, 256, (16, 16), dtype=np.uint8))
        paths.append(str(path))
    return paths


def counts(collection) -> dict:
    """{(native split, class, label): count}."""
    splits = collection.native_split if collection.native_split is not None else [None] * len(collection)
    return dict(collections.Counter(zip(splits, collection.classes, collection.labels.tolist())))


# --- MVTec AD -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mvtec_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mvtec")
    bottle = root / "bottle"
    write_pngs(bottle / "train" / "good", 4)
    write_pngs(bottle / "test" / "good", 2)
    write_pngs(bottle / "test" / "broken_large", 2)
    write_pngs(bottle / "test" / "contamination", 1)
    for defect, stems in (("broken_large", ["000"]), ("contamination", ["000"])):
        for stem in stems:
            mask = np.zeros((16, 16), np.uint8)
            mask[4:8, 2:6] = 255
            (bottle / "ground_truth" / defect).mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(bottle / "ground_truth" / defect / f"{stem}_mask.png"), mask)
    write_pngs(root / "grid" / "train" / "good", 3)
    write_pngs(root / "grid" / "test" / "bent", 1)
    (root / "license.txt").write_text("CC BY-NC-SA 4.0")
    return root


def test_mvtec_category_classes_native_split_and_masks(mvtec_root):
    collection = load_dataset("mvtec_ad", data_dir=str(mvtec_root), category="bottle")
    assert collection.layout == "mvtec_ad" and collection.root == str(mvtec_root / "bottle")
    assert counts(collection) == {
        ("train", "good", 0): 4, ("test", "broken_large", 1): 2, ("test", "contamination", 1): 1,
        ("test", "good", 0): 2,
    }
    has_mask = {pathlib.Path(p).parent.name + "/" + pathlib.Path(p).name: m is not None
                for p, m in zip(collection.ids, collection.mask_paths)}
    assert has_mask["broken_large/000.png"] and has_mask["contamination/000.png"]
    assert not has_mask["broken_large/001.png"] and not has_mask["good/000.png"]

    indices = [collection.ids.index(str(mvtec_root / "bottle/test/broken_large/000.png")),
               collection.ids.index(str(mvtec_root / "bottle/test/good/000.png"))]
    masks = collection.masks_for(indices, 8)
    assert masks.shape == (2, 8, 8) and masks.dtype == np.uint8
    expected = np.zeros((8, 8), np.uint8)
    expected[2:4, 1:3] = 1  # the 16x16 mask's [4:8, 2:6] square, halved
    np.testing.assert_array_equal(masks[0], expected)
    assert not masks[1].any()


def test_mvtec_categories_and_category_errors(mvtec_root):
    assert available_categories("mvtec_ad", str(mvtec_root)) == ["bottle", "grid"]
    # --data-dir may point at one category, or one level above the archive's folder.
    assert len(load_dataset("mvtec_ad", data_dir=str(mvtec_root / "grid"), category="grid")) == 4
    with pytest.raises(DatasetError, match="needs --category NAME or --category all; found .*bottle, grid"):
        load_dataset("mvtec_ad", data_dir=str(mvtec_root))
    with pytest.raises(DatasetError, match="No MVTec AD category 'screw'.*found: bottle, grid"):
        load_dataset("mvtec_ad", data_dir=str(mvtec_root), category="screw")


def test_mvtec_data_dir_at_one_renamed_category_folder(mvtec_root, tmp_path):
    renamed = tmp_path / "my bottles"
    shutil.copytree(mvtec_root / "bottle", renamed)
    bottle = load_dataset("mvtec_ad", data_dir=str(renamed), category="bottle")
    assert bottle.root == str(renamed) and len(bottle) == 9 and sum(path is not None for path in bottle.mask_paths) == 2
    with pytest.raises(DatasetError, match="No MVTec AD category 'bottle'.*found: grid"):  # named after another one
        load_dataset("mvtec_ad", data_dir=str(mvtec_root / "grid"), category="bottle")


def test_mvtec_half_layout_names_what_is_missing(tmp_path):
    write_pngs(tmp_path / "bottle" / "train" / "images", 2)
    with pytest.raises(DatasetError, match="found '.*bottle/train' but no good/ inside.*<category>/train/good/"):
        load_dataset("mvtec_ad", data_dir=str(tmp_path), category="bottle")


def test_masks_for_without_masks_and_from_memory():
    brain = load_dataset("phantom", phantom_normals=3, phantom_abnormals=2, phantom_size=32)
    masks = brain.masks_for([3, 0], 16)
    assert masks.shape == (2, 16, 16) and masks[0].any() and not masks[1].any()
    expected = tf.image.resize(brain.masks[[3]][..., None], (16, 16), method="nearest").numpy()[0, ..., 0]
    np.testing.assert_array_equal(masks[0], expected)
    brain.masks = None
    assert brain.masks_for([0], 16) is None


# --- Plant Village --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plant_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("plants")
    for copy in ("color", "grayscale", "segmented"):  # the same leaves three times, as on Kaggle
        base = root / "plantvillage dataset" / copy
        write_pngs(base / "Tomato___healthy", 3)
        write_pngs(base / "Tomato___Early_blight", 2)
        write_pngs(base / "Tomato___Leaf_Mold", 1)
        write_pngs(base / "Pepper,_bell___healthy", 2)
        write_pngs(base / "Pepper,_bell___Bacterial_spot", 2)
        write_pngs(base / "Blueberry___healthy", 1)
    return root


def test_plant_village_species_from_the_color_copy_only(plant_root):
    tomato = load_dataset("plant_village", data_dir=str(plant_root), category="tomato")
    assert tomato.root == str(plant_root / "plantvillage dataset" / "color")
    assert all("/color/" in path for path in tomato.ids)
    assert counts(tomato) == {
        (None, "Tomato___Early_blight", 1): 2, (None, "Tomato___Leaf_Mold", 1): 1, (None, "Tomato___healthy", 0): 3,
    }
    pooled = load_dataset("plant_village", data_dir=str(plant_root))
    assert len(pooled) == 11 and pooled.labels.sum() == 5
    assert available_categories("plant_village", str(plant_root)) == ["Pepper,_bell", "Tomato"]
    with pytest.raises(DatasetError, match="no species 'Blueberry'.*Pepper,_bell, Tomato"):
        load_dataset("plant_village", data_dir=str(plant_root), category="Blueberry")


def test_plant_village_short_kaggle_names(tmp_path):
    """The Kaggle 'Plant Disease' copy: PlantVillage/Tomato_healthy, Tomato__Target_Spot, Pepper__bell___healthy."""
    write_pngs(tmp_path / "PlantVillage" / "Tomato_healthy", 2)
    write_pngs(tmp_path / "PlantVillage" / "Tomato__Target_Spot", 1)
    write_pngs(tmp_path / "PlantVillage" / "Pepper__bell___healthy", 1)
    write_pngs(tmp_path / "PlantVillage" / "Pepper__bell___Bacterial_spot", 1)
    assert available_categories("plant_village", str(tmp_path)) == ["Pepper__bell", "Tomato"]
    peppers = load_dataset("plant_village", data_dir=str(tmp_path), category="Pepper, bell")
    assert peppers.labels.tolist() == [1, 0]


def fake_tfds(examples=None, download_error=None):
    """A stand-in tensorflow_datasets: a prepared builder serving `examples`, or one whose download fails."""
    names = ["Pepper,_bell___healthy", "Tomato___Early_blight", "Tomato___healthy"]

    class Builder:
        data_dir = "/nowhere/plant_village/1.0.2"
        info = types.SimpleNamespace(features={"label": types.SimpleNamespace(names=names)})

        def is_prepared(self):
            return examples is not None

        def download_and_prepare(self):
            raise download_error

        def as_dataset(self, split, decoders):
            assert split == "train" and "image" in decoders
            return tf.data.Dataset.from_tensor_slices(examples)

    module = types.ModuleType("tensorflow_datasets")
    module.__spec__ = importlib.machinery.ModuleSpec("tensorflow_datasets", None)
    module.builder = lambda name, data_dir=None: Builder()
    module.decode = types.SimpleNamespace(SkipDecoding=lambda: "skip")
    return module


def test_tfds_source_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds(download_error=ConnectionError("no route")))
    with pytest.raises(DatasetError, match="could not be downloaded.*ConnectionError: no route.*--source local"):
        load_dataset("plant_village", source="tfds", category="Tomato")


def test_tfds_source_keeps_the_species_in_memory_as_256px_grayscale(monkeypatch):
    colour = np.full((20, 30, 3), (200, 100, 50), np.uint8)  # grayscale 0.299*200 + 0.587*100 + 0.114*50 = 124
    distinct = [colour.copy() for _ in range(4)]
    for k, image in enumerate(distinct):
        image[:5, 5 * k:5 * k + 5] = 0  # a black patch in the top quarter, elsewhere in each: not duplicates
    examples = {
        "image": [tf.io.encode_png(image).numpy() for image in distinct],
        "label": np.array([2, 0, 1, 2], np.int64),
        "image/filename": [b"a.jpg", b"b.jpg", b"c.jpg", b"d.jpg"],
    }
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds(examples))
    tomato = load_dataset("plant_village", source="tfds", category="Tomato")
    assert tomato.ids == ["tfds/plant_village/Tomato___healthy/a.jpg", "tfds/plant_village/Tomato___Early_blight/c.jpg",
                          "tfds/plant_village/Tomato___healthy/d.jpg"]
    assert tomato.labels.tolist() == [0, 1, 0]
    assert tomato.images.shape == (3, 256, 256) and tomato.images.dtype == np.uint8
    assert np.all(np.abs(tomato.images[:, 128:].astype(int) - 124) <= 1)
    assert available_categories("plant_village", source="tfds") == ["Tomato"]  # no diseased peppers here


def smooth(seed):
    """A smooth random RGB image: distinct seeds give unrelated images."""
    grey = cv2.GaussianBlur(np.random.default_rng(seed).normal(size=(64, 64)), (0, 0), 3)
    return cv2.cvtColor(cv2.normalize(grey, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8), cv2.COLOR_GRAY2RGB)


def test_tfds_images_are_grouped_as_duplicates_like_files(monkeypatch):
    images = {  # file: (label, image); labels 2 = Tomato___healthy, 1 = Tomato___Early_blight
        "a.jpg": (2, smooth(1)), "a_brighter.jpg": (2, cv2.add(smooth(1), 12)),  # near copies
        "c.jpg": (1, smooth(2)), "c_again.jpg": (1, smooth(2)),  # exact copies
        "e.jpg": (2, smooth(3)), "e_diseased.jpg": (1, smooth(3)),  # an exact copy labelled both ways
    }
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds({
        "image": [tf.io.encode_png(image).numpy() for _, image in images.values()],
        "label": np.array([label for label, _ in images.values()], np.int64),
        "image/filename": [name.encode() for name in images],
    }))
    tomato = load_dataset("plant_village", source="tfds", category="Tomato")
    names = [pathlib.Path(path).name for path in tomato.ids]
    assert names == ["a.jpg", "a_brighter.jpg", "c.jpg", "c_again.jpg"] and len(tomato.images) == 4
    assert tomato.groups.tolist() == [0, 0, 1, 1]
    assert sorted(pathlib.Path(entry["path"]).name for entry in tomato.skipped) == ["e.jpg", "e_diseased.jpg"]
    assert tomato.duplicates["exact_groups"] == 1 and tomato.duplicates["near_groups"] == 1


def test_tfds_is_for_plant_village_only():
    with pytest.raises(DatasetError, match="--source tfds is available for plant_village only"):
        load_dataset("chest_xray_2", source="tfds")
    with pytest.raises(DatasetError, match="--category applies to mvtec_ad and plant_village only"):
        load_dataset("brain_mri", category="Tomato")


# --- Chest X-ray ----------------------------------------------------------------------------------------


def test_chest_xray_1_reads_images_not_masks_and_leaves_lung_opacity_out(tmp_path):
    top = tmp_path / "COVID-19_Radiography_Dataset"  # the unzip folder
    for name, n in (("Normal", 4), ("COVID", 2), ("Viral Pneumonia", 1), ("Lung_Opacity", 3)):
        write_pngs(top / name / "images", n, [f"{name}-{k + 1}.png" for k in range(n)])
        write_pngs(top / name / "masks", n, [f"{name}-{k + 1}.png" for k in range(n)])
    (top / "Normal.metadata.xlsx").write_bytes(b"PK")
    collection = load_dataset("chest_xray_1", data_dir=str(tmp_path))
    assert collection.layout == "covid19_radiography_database" and collection.root == str(top)
    assert counts(collection) == {(None, "COVID", 1): 2, (None, "Normal", 0): 4, (None, "Viral Pneumonia", 1): 1}
    assert all("/images/" in path for path in collection.ids) and collection.skipped == []
    assert len(collection.not_used) == 3 and all("/Lung_Opacity/images/" in e["path"] for e in collection.not_used)
    assert "not one of the paper's classes" in collection.not_used[0]["reason"]


def test_chest_xray_2_native_split(tmp_path):
    for split, sizes in (("train", (3, 2, 4)), ("test", (2, 1, 2))):
        for name, n in zip(("NORMAL", "COVID19", "PNEUMONIA"), sizes):
            write_pngs(tmp_path / "Data" / split / name, n)
    collection = load_dataset("chest_xray_2", data_dir=str(tmp_path))
    assert collection.layout == "chest_xray_covid19_pneumonia" and collection.root == str(tmp_path / "Data")
    assert counts(collection) == {
        ("train", "COVID19", 1): 2, ("train", "NORMAL", 0): 3, ("train", "PNEUMONIA", 1): 4,
        ("test", "COVID19", 1): 1, ("test", "NORMAL", 0): 2, ("test", "PNEUMONIA", 1): 2,
    }


def test_chest_xray_3(tmp_path):
    for split in ("train", "test"):
        for name, n in (("Normal", 2), ("Covid", 3), ("Viral Pneumonia", 2)):
            write_pngs(tmp_path / "Covid19-dataset" / split / name, n)
    collection = load_dataset("chest_xray_3", data_dir=str(tmp_path))
    assert collection.layout == "covid19_image_dataset"
    assert len(collection) == 14 and collection.labels.sum() == 10
    assert set(collection.native_split) == {"train", "test"}


@pytest.fixture(scope="module")
def kermany_root(tmp_path_factory):
    """The Kaggle archive: chest_xray/{train,val,test}, a full copy in chest_xray/chest_xray/, and __MACOSX/."""
    root = tmp_path_factory.mktemp("kermany")
    for copy in (root / "chest_xray", root / "chest_xray" / "chest_xray", root / "__MACOSX" / "chest_xray"):
        for split, sizes in (("train", (3, 4)), ("val", (1, 1)), ("test", (2, 3))):
            for name, n in zip(("NORMAL", "PNEUMONIA"), sizes):
                write_pngs(copy / split / name, n)
    (root / "__MACOSX" / "chest_xray" / "train" / "NORMAL" / "._000.png").write_bytes(b"\x00\x05\x16\x07")
    return root


def test_kermany_layout_is_read_once_by_chest_xray_2(kermany_root):
    collection = load_dataset("chest_xray_2", data_dir=str(kermany_root))
    assert collection.layout == "kermany_chest_xray_pneumonia" and collection.root == str(kermany_root / "chest_xray")
    assert len(collection) == 14 and len(set(collection.ids)) == 14
    assert not any("/chest_xray/chest_xray/" in path or "__MACOSX" in path for path in collection.ids)
    assert collections.Counter(collection.native_split) == {"train": 7, "val": 2, "test": 5}
    # Two levels down, when only the doubled folder is there.
    assert len(load_dataset("chest_xray_2", data_dir=str(kermany_root / "chest_xray" / "chest_xray"))) == 14


@pytest.mark.parametrize("dataset", ["chest_xray_1", "chest_xray_3"])
def test_kermany_under_another_chest_dataset_points_to_chest_xray_2(kermany_root, dataset):
    with pytest.raises(DatasetError, match="holds the kermany_chest_xray_pneumonia layout.*--dataset chest_xray_2"):
        load_dataset(dataset, data_dir=str(kermany_root))


def test_wrong_chest_layout_names_the_nearest_expected_one(tmp_path):
    write_pngs(tmp_path / "Data" / "train" / "cats", 1)
    write_pngs(tmp_path / "Data" / "test" / "dogs", 1)
    with pytest.raises(DatasetError) as error:
        load_dataset("chest_xray_2", data_dir=str(tmp_path))
    assert "found test/ and train/ in" in str(error.value)
    assert "but no NORMAL/ and no COVID19/ or PNEUMONIA/ inside" in str(error.value)
    assert "chest_xray_2 expects Data/{train,test}/{NORMAL,COVID19,PNEUMONIA}" in str(error.value)
    assert "chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}" in str(error.value)


def test_chest_xray_1_missing_class_and_empty_folder(tmp_path):
    write_pngs(tmp_path / "Normal", 2)
    write_pngs(tmp_path / "COVID", 2)
    with pytest.raises(DatasetError, match="found COVID/ and Normal/ in .* but no Viral Pneumonia/. chest_xray_1 expects"):
        load_dataset("chest_xray_1", data_dir=str(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="it is empty.*kaggle.com/datasets/pranavraikokte"):
        load_dataset("chest_xray_3", data_dir=str(tmp_path / "empty"))


def test_brain_training_testing_has_a_native_split(tmp_path):
    write_pngs(tmp_path / "Training" / "notumor", 2)
    write_pngs(tmp_path / "Training" / "glioma", 2)
    write_pngs(tmp_path / "Testing" / "notumor", 1)
    write_pngs(tmp_path / "Testing" / "pituitary", 1)
    collection = load_dataset("brain_mri", data_dir=str(tmp_path))
    assert collection.layout == "brain_tumor_mri_dataset"
    assert counts(collection) == {
        ("train", "glioma", 1): 2, ("train", "notumor", 0): 2, ("test", "notumor", 0): 1, ("test", "pituitary", 1): 1,
    }


def test_plant_village_parse_class():
    assert plant_village.parse_class("Corn_(maize)___Northern_Leaf_Blight") == ("Corn_(maize)", "Northern_Leaf_Blight")
    assert plant_village.parse_class("Tomato__Tomato_YellowLeaf__Curl_Virus") == ("Tomato", "Tomato_YellowLeaf__Curl_Virus")
    assert plant_village.parse_class("color") is None
