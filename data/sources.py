"""Dataset sources: find a dataset's images and labels on disk, or generate the phantom.

The published layouts live in one module per family (data.layouts for the class-folder sets,
data.mvtec, data.plant_village); data.collection holds what they share. This module names the
datasets and dispatches to them.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

from data.collection import DatasetError, ImageCollection, load_folders  # noqa: F401 (DatasetError: re-exported)

DATASET_NAMES = (
    "phantom", "brain_mri", "mvtec_ad", "plant_village",
    "chest_xray_1", "chest_xray_2", "chest_xray_3", "folder",
)
CATEGORY_DATASETS = ("mvtec_ad", "plant_village")
SOURCES = ("local", "tfds")
def resolve_data_dir(dataset: str, data_dir: str | None) -> pathlib.Path | None:
    """--data-dir if given, else $BIGAN_DATA_DIR/<dataset>, else ./datasets/<dataset>, whichever exists."""
    if data_dir:
        return pathlib.Path(data_dir)
    candidates = [pathlib.Path.cwd() / "datasets" / dataset]
    if os.environ.get("BIGAN_DATA_DIR"):
        candidates.insert(0, pathlib.Path(os.environ["BIGAN_DATA_DIR"]) / dataset)
    return next((path for path in candidates if path.is_dir()), None)


def load_dataset(
    name: str,
    data_dir: str | None = None,
    normal_dir: str | None = None,
    abnormal_dir: str | None = None,
    seed: int = 0,
    phantom_normals: int = 500,
    phantom_abnormals: int = 150,
    phantom_size: int = 128,
    phantom_draw: str = "test",
    category: str | None = None,
    source: str = "local",
) -> ImageCollection:
    """Load dataset `name` (one of DATASET_NAMES); raise DatasetError with a user-facing message.

    `category` picks an MVTec AD category or a Plant Village species; `source="tfds"` reads
    Plant Village from TensorFlow Datasets instead of a local folder.
    """
    # Deferred imports: the family modules import this one.
    from data import layouts, mvtec, plant_village
    from data.phantom import make_phantom

    check_options(name, category, source)
    if name == "phantom":
        collection = make_phantom(phantom_normals, phantom_abnormals, phantom_size, seed, phantom_draw)
        return dataclasses.replace(collection, layout="phantom (generated)")
    if name == "folder":
        return load_folders(normal_dir, abnormal_dir)
    if name == "mvtec_ad":
        return mvtec.load_mvtec(resolve_data_dir(name, data_dir), category)
    if name == "plant_village" and source == "tfds":
        return plant_village.load_plant_village_tfds(data_dir, category)
    if name == "plant_village":
        return plant_village.load_plant_village(resolve_data_dir(name, data_dir), category)
    return layouts.load_class_folders(name, resolve_data_dir(name, data_dir))


def available_categories(dataset: str, data_dir: str | None = None, source: str = "local") -> list[str]:
    """The categories `--category all` runs over: MVTec AD categories or Plant Village species found."""
    from data import mvtec, plant_village  # deferred: they import this module

    check_options(dataset, "all", source)
    if dataset == "mvtec_ad":
        return mvtec.mvtec_categories(resolve_data_dir(dataset, data_dir))
    if source == "tfds":
        return plant_village.tfds_species(data_dir)
    return plant_village.plant_species(resolve_data_dir(dataset, data_dir))


def check_options(name: str, category: str | None, source: str) -> None:
    if name not in DATASET_NAMES:
        raise DatasetError(f"Unknown dataset '{name}'; choose one of: {', '.join(DATASET_NAMES)}.")
    if category is not None and name not in CATEGORY_DATASETS:
        raise DatasetError(f"--category applies to {' and '.join(CATEGORY_DATASETS)} only, not to {name}.")
    if source not in SOURCES:
        raise DatasetError(f"Unknown --source '{source}'; choose one of: {', '.join(SOURCES)}.")
    if source == "tfds" and name != "plant_village":
        raise DatasetError(f"--source tfds is available for plant_village only; {name} is read from a local folder.")
