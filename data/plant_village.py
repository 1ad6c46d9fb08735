"""Plant Village: healthy leaves are normal, diseased leaves abnormal, per species or pooled.

Local copies name class folders <Species>___<Condition> ("Tomato___Early_blight",
"Pepper,_bell___healthy"); the Kaggle 'Plant Disease' copy shortens some to "Tomato_healthy" or
"Pepper__bell___healthy". They sit at the top, under PlantVillage/, or under color/, grayscale/
and segmented/ (the same leaves three times): color/ is read and the other two never, so no
leaf is counted twice. TFDS's `plant_village` is the other source (--source tfds).
"""

from __future__ import annotations

import pathlib
import re

import numpy as np

from data.collection import (
    ClassFolder,
    DatasetError,
    ImageCollection,
    collect_class_folders,
    with_both_labels,
    with_duplicates,
)
from data.layouts import contents, normalise, search_roots, subdirs

TFDS_NAME = "plant_village"
TFDS_SIZE = 256  # PlantVillage's own size: in-memory images are stored at most this large
_EXPECTED = (
    "plant_village expects class folders <Species>___healthy and <Species>___<Disease> (e.g. Tomato___healthy, "
    "Tomato___Early_blight), possibly under PlantVillage/ or color/ (Kaggle 'PlantVillage Dataset', "
    "https://www.kaggle.com/datasets/abdallahalidev/plantvillage-dataset, or 'Plant Disease', "
    "https://www.kaggle.com/datasets/emmarex/plantdisease); pass --data-dir, set $BIGAN_DATA_DIR, or place it in "
    "./datasets/plant_village, or read TensorFlow Datasets' copy with --source tfds."
)


def parse_class(name: str) -> tuple[str, str] | None:
    """'Tomato___Early_blight' -> ('Tomato', 'Early_blight'); 'Tomato_healthy' -> ('Tomato', 'healthy')."""
    if "___" in name:
        species, condition = name.split("___", 1)
        return (species, condition) if species and condition else None
    match = re.fullmatch(r"([A-Za-z]+)_+(\w+)", name)
    return (match[1], match[2]) if match else None


def is_healthy(condition: str) -> bool:
    return normalise(condition) == "healthy"


def plant_species(root: pathlib.Path | None) -> list[str]:
    """Species with both healthy and diseased leaves: the categories `--category all` runs over."""
    _, folders = _find(root)
    return _species_with_both_classes([folder.name for folder in folders])


def load_plant_village(root: pathlib.Path | None, category: str | None) -> ImageCollection:
    """One species (`category`, e.g. 'Tomato'), or every species pooled when category is None."""
    base, folders = _find(root)
    chosen = _select(folders, category, lambda folder: folder.name)
    collection = collect_class_folders(chosen, "plant_village", base)
    return with_both_labels(collection, lambda missing: (
        f"No usable {('healthy', 'diseased')[missing]} leaves of {category or 'any species'} under '{base}'. "
        f"{_EXPECTED}"
    ))


def tfds_species(data_dir: str | None = None) -> list[str]:
    """Species of TFDS plant_village with both classes (from the builder's metadata: no download)."""
    return _species_with_both_classes(tfds_builder(data_dir).info.features["label"].names)


def load_plant_village_tfds(data_dir: str | None, category: str | None) -> ImageCollection:
    """TFDS plant_village in memory: grayscale uint8 at 256x256, downloaded and prepared on first use.

    Only the chosen species is decoded. PlantVillage images are 256x256 already; any other size
    is resized to it so the images stack into one array. Duplicates are found and grouped on
    these arrays as on files, so copies never straddle a split whichever source is read.
    """
    import tensorflow as tf  # deferred: listing local folders must not pay for importing TensorFlow

    from data.duplicates import fingerprint

    tfds = _import_tfds()
    builder = tfds_builder(data_dir)
    if not builder.is_prepared():
        prepare_tfds(builder)
    names = builder.info.features["label"].names
    wanted = tf.constant(_select(range(len(names)), category, lambda i: names[i]), tf.int64)

    def small_gray(example):
        image = tf.io.decode_image(example["image"], channels=3, expand_animations=False)
        gray = tf.image.resize(tf.image.rgb_to_grayscale(image), (TFDS_SIZE, TFDS_SIZE), antialias=True)
        pixels = tf.cast(tf.round(tf.clip_by_value(gray, 0, 255)), tf.uint8)[..., 0]
        return pixels, example["label"], example["image/filename"]

    examples = (
        builder.as_dataset(split="train", decoders={"image": tfds.decode.SkipDecoding()})
        .filter(lambda example: tf.reduce_any(example["label"] == wanted))
        .map(small_gray, num_parallel_calls=tf.data.AUTOTUNE)
    )
    images, labels, files = [], [], []
    for image, label, file in examples.as_numpy_iterator():
        images.append(image)
        labels.append(int(label))
        files.append(file.decode())
    classes = [names[label] for label in labels]
    collection = ImageCollection(
        ids=[f"tfds/{TFDS_NAME}/{name}/{file}" for name, file in zip(classes, files)],
        labels=np.array([0 if is_healthy(parse_class(name)[1]) else 1 for name in classes], dtype=np.int64),
        images=np.stack(images) if images else np.zeros((0, TFDS_SIZE, TFDS_SIZE), np.uint8),
        classes=classes,
        layout="plant_village (TFDS)",
        root=str(builder.data_dir),
    )
    return with_duplicates(collection, [fingerprint(image[..., None] / np.float32(255)) for image in images])


def prepare_tfds(builder) -> None:
    """Download and prepare TFDS plant_village (shows TFDS's progress, checks TFDS's registered checksums)."""
    try:
        builder.download_and_prepare()
    except Exception as error:  # offline, DNS, HTTP, disk: TFDS raises many kinds; all mean the same to the user
        raise DatasetError(
            f"TFDS {TFDS_NAME} is not in '{builder.data_dir}' and could not be downloaded "
            f"({type(error).__name__}: {error}). It needs the internet the first time: run the download subcommand when "
            "online, or use a local copy with --source local. " + _EXPECTED
        ) from error


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise DatasetError(
            "--source tfds needs the tensorflow-datasets package (pip install tensorflow-datasets)."
        ) from error
    return tfds


def tfds_builder(data_dir: str | None):
    return _import_tfds().builder(TFDS_NAME, data_dir=data_dir)


def _find(root: pathlib.Path | None) -> tuple[pathlib.Path, list[ClassFolder]]:
    """The first folder (root or up to two down, color/ before grayscale/ and segmented/) with class folders."""
    if root is None:
        raise DatasetError(
            "No plant_village folder was given or found (--data-dir, $BIGAN_DATA_DIR/plant_village, "
            "./datasets/plant_village). " + _EXPECTED
        )
    if not root.is_dir():
        raise DatasetError(f"The plant_village folder '{root}' does not exist. {_EXPECTED}")
    for base in search_roots(root, prefer=("color",)):
        folders = _class_folders(base)
        if any(folder.label == 0 for folder in folders) and any(folder.label == 1 for folder in folders):
            return base, folders
    raise DatasetError(f"No Plant Village class folders under '{root}': {contents(root)}. {_EXPECTED}")


def _class_folders(base: pathlib.Path) -> list[ClassFolder]:
    folders = []
    for folder in subdirs(base):
        parsed = parse_class(folder.name)
        if parsed:
            folders.append(ClassFolder(folder, 0 if is_healthy(parsed[1]) else 1, folder.name))
    return folders


def _select(items, category: str | None, class_name) -> list:
    """The items whose class belongs to species `category` (all when None); a clear error when there are none."""
    items = list(items)
    if category is None:
        return items
    chosen = [item for item in items if normalise(parse_class(class_name(item))[0]) == normalise(category)]
    if not _species_with_both_classes([class_name(item) for item in chosen]):
        both = _species_with_both_classes([class_name(item) for item in items])
        raise DatasetError(
            f"Plant Village has no species '{category}' with both healthy and diseased leaves here; "
            f"choose one of: {', '.join(both)} (or leave --category out to pool every species)."
        )
    return chosen


def _species_with_both_classes(class_names) -> list[str]:
    """Species names as first spelled, for those that have both healthy and diseased class folders."""
    spelling: dict[str, str] = {}
    kinds: dict[str, set[bool]] = {}
    for species, condition in filter(None, map(parse_class, class_names)):
        key = normalise(species)
        spelling.setdefault(key, species)
        kinds.setdefault(key, set()).add(is_healthy(condition))
    return sorted(spelling[key] for key, found in kinds.items() if found == {True, False})
