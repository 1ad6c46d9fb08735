"""Class-folder layouts as the publishers ship them: brain MRI and the three chest X-ray sets.

A layout is found in the data folder or one or two levels down (real downloads add unzip
folders such as COVID-19_Radiography_Dataset/ or chest_xray/chest_xray/); the shallowest
match wins and copies deeper down, or in __MACOSX/ and hidden folders, are never read, so
every image is counted once. When nothing matches, the message names the nearest layout:
another dataset's layout that is there, or the folders that were found and what is missing.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from collections.abc import Iterator

from data.collection import (
    ClassFolder,
    DatasetError,
    ImageCollection,
    collect_class_folders,
    list_images,
    with_both_labels,
)

KAGGLE_DATASETS = {
    "brain_mri": "navoneel/brain-mri-images-for-brain-tumor-detection",
    "chest_xray_1": "tawsifurrahman/covid19-radiography-database",
    "chest_xray_2": "prashant268/chest-xray-covid19-pneumonia",
    "chest_xray_3": "pranavraikokte/covid19-image-dataset",
}
_SEARCH_DEPTH = 2  # the data folder, an unzip folder, and a folder inside that
_SHOWN_ENTRIES = 8


def kaggle_url(slug: str) -> str:
    return f"https://www.kaggle.com/datasets/{slug}"


@dataclasses.dataclass(frozen=True)
class FolderLayout:
    """A published layout of class folders, at the top or inside split folders (train/, test/...).

    Folder names match ignoring case and punctuation ("No_Tumor" = "notumor"), as the Kaggle
    archives differ in both.
    """

    dataset: str
    name: str  # shown by describe and in messages
    pattern: str  # the layout as published
    source: str  # where to get it
    classes: dict[str, int]  # class folder as published -> label (0 normal, 1 abnormal)
    splits: dict[str, str] = dataclasses.field(default_factory=dict)  # split folder -> "train" | "val" | "test"
    required: tuple[str, ...] = ()  # class folders that tell this layout apart from a similar one
    excluded: dict[str, str] = dataclasses.field(default_factory=dict)  # class folder -> why it is not used
    images_subfolder: str | None = None  # a class keeps its images in <class>/<this>/ when that exists


_LUNG_OPACITY = (
    "Lung_Opacity is not one of the paper's classes (CAE-D-GAN section 4.1: dataset 1 has 10,192 "
    "normal and 4,961 abnormal images = 3,616 COVID + 1,345 viral pneumonia)"
)
_BRAIN_SPLITS = {"Training": "train", "Testing": "test"}
FOLDER_LAYOUTS = (
    FolderLayout(
        "brain_mri", "brain_mri_yes_no", "yes/ + no/",
        f"Kaggle 'Brain MRI Images for Brain Tumor Detection', {kaggle_url(KAGGLE_DATASETS['brain_mri'])}, or Br35H",
        classes={"no": 0, "yes": 1},
    ),
    FolderLayout(
        "brain_mri", "brain_tumor_mri_dataset", "Training|Testing/{glioma,meningioma,notumor,pituitary}",
        f"Kaggle 'Brain Tumor MRI Dataset', {kaggle_url('masoudnickparvar/brain-tumor-mri-dataset')}",
        classes={"notumor": 0, "glioma": 1, "meningioma": 1, "pituitary": 1}, splits=_BRAIN_SPLITS,
    ),
    FolderLayout(
        "brain_mri", "brain_tumor_classification",
        "Training|Testing/{glioma_tumor,meningioma_tumor,no_tumor,pituitary_tumor}",
        f"Kaggle 'Brain Tumor Classification (MRI)', {kaggle_url('sartajbhuvaji/brain-tumor-classification-mri')}",
        classes={"no_tumor": 0, "glioma_tumor": 1, "meningioma_tumor": 1, "pituitary_tumor": 1},
        splits=_BRAIN_SPLITS,
    ),
    FolderLayout(
        "chest_xray_1", "covid19_radiography_database",
        "COVID-19_Radiography_Dataset/{Normal,COVID,Viral Pneumonia,Lung_Opacity}/images/",
        f"Kaggle 'COVID-19 Radiography Database', {kaggle_url(KAGGLE_DATASETS['chest_xray_1'])}",
        classes={"Normal": 0, "COVID": 1, "COVID-19": 1, "Viral Pneumonia": 1}, required=("Viral Pneumonia",),
        excluded={"Lung_Opacity": _LUNG_OPACITY}, images_subfolder="images",
    ),
    FolderLayout(
        "chest_xray_2", "chest_xray_covid19_pneumonia", "Data/{train,test}/{NORMAL,COVID19,PNEUMONIA}",
        f"Kaggle 'Chest X-ray (Covid-19 & Pneumonia)', {kaggle_url(KAGGLE_DATASETS['chest_xray_2'])}",
        classes={"NORMAL": 0, "COVID19": 1, "PNEUMONIA": 1}, splits={"train": "train", "test": "test"},
        required=("COVID19",),
    ),
    FolderLayout(
        "chest_xray_2", "kermany_chest_xray_pneumonia", "chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}",
        f"the Kermany layout, Kaggle 'Chest X-Ray Images (Pneumonia)', "
        f"{kaggle_url('paultimothymooney/chest-xray-pneumonia')}: the same normal images, no COVID-19",
        classes={"NORMAL": 0, "PNEUMONIA": 1}, splits={"train": "train", "val": "val", "test": "test"},
    ),
    FolderLayout(
        "chest_xray_3", "covid19_image_dataset", "Covid19-dataset/{train,test}/{Normal,Covid,Viral Pneumonia}",
        f"Kaggle 'Covid-19 Image Dataset', {kaggle_url(KAGGLE_DATASETS['chest_xray_3'])}",
        classes={"Normal": 0, "Covid": 1, "Viral Pneumonia": 1}, splits={"train": "train", "test": "test"},
        required=("Viral Pneumonia",),
    ),
)


@dataclasses.dataclass(frozen=True)
class Match:
    layout: FolderLayout
    base: pathlib.Path  # the folder holding the class (or split) folders
    folders: list[ClassFolder]
    excluded: list[tuple[pathlib.Path, str]]  # class folders left out on purpose, with the reason


def normalise(name: str) -> str:
    """Folder names compared without case or punctuation: 'Viral Pneumonia' = 'viral_pneumonia'."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def subdirs(folder: pathlib.Path) -> list[pathlib.Path]:
    """Sub-folders in name order, without hidden ones and macOS __MACOSX copies."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))


def search_roots(root: pathlib.Path, prefer: tuple[str, ...] = ()) -> Iterator[pathlib.Path]:
    """`root`, then its sub-folders, then theirs: shallowest first, `prefer`red names first at each depth.

    Lazy, so a match at the top never lists the (possibly huge) class folders below it.
    """
    level = [root]
    for depth in range(_SEARCH_DEPTH + 1):
        yield from level
        if depth < _SEARCH_DEPTH:
            children = [child for parent in level for child in subdirs(parent)]
            level = sorted(children, key=lambda path: normalise(path.name) not in prefer)


def layouts_for(dataset: str) -> list[FolderLayout]:
    return [layout for layout in FOLDER_LAYOUTS if layout.dataset == dataset]


def expected_layouts(dataset: str) -> str:
    """What `dataset` looks like and where to get it: the tail of every 'not found' message."""
    options = "; or ".join(f"{layout.pattern} ({layout.source})" for layout in layouts_for(dataset))
    return (
        f"{dataset} expects {options}. Download it (run_experiments.py download, or from the page named) and pass "
        f"--data-dir, set $BIGAN_DATA_DIR, or place it in ./datasets/{dataset}."
    )


def find_layout(root: pathlib.Path, layouts: list[FolderLayout]) -> Match | None:
    """The first of `layouts` found in `root` or up to two levels down (shallowest folder first)."""
    for base in search_roots(root):
        for layout in layouts:
            match = _match(layout, base)
            if match is not None:
                return match
    return None


def load_class_folders(dataset: str, root: pathlib.Path | None) -> ImageCollection:
    """Images of a class-folder dataset (brain_mri, chest_xray_N) with classes, native split and unused images."""
    match = find_layout(root, layouts_for(dataset)) if root is not None and root.is_dir() else None
    if match is None:
        raise not_found(dataset, root)
    not_used = [entry for folder, reason in match.excluded for entry in list_images(folder, reason)]
    collection = collect_class_folders(match.folders, match.layout.name, match.base, not_used)
    return with_both_labels(collection, lambda missing: (
        f"No usable {('normal', 'abnormal')[missing]} images in the {match.layout.name} layout found in "
        f"'{match.base}'. {expected_layouts(dataset)}"
    ))


def not_found(dataset: str, root: pathlib.Path | None) -> DatasetError:
    """The error for a missing or unrecognised folder, naming the nearest layout there is."""
    expected = expected_layouts(dataset)
    if root is None:
        return DatasetError(
            f"No {dataset} folder was given or found (--data-dir, $BIGAN_DATA_DIR/{dataset}, "
            f"./datasets/{dataset}). {expected}"
        )
    if not root.is_dir():
        return DatasetError(f"The {dataset} folder '{root}' does not exist. {expected}")
    other = find_layout(root, [layout for layout in FOLDER_LAYOUTS if layout.dataset != dataset])
    if other is not None:
        return DatasetError(
            f"'{other.base}' holds the {other.layout.name} layout ({other.layout.pattern}), which is "
            f"--dataset {other.layout.dataset}, not {dataset}. {expected}"
        )
    hint = next(
        (hint for base in search_roots(root) for layout in layouts_for(dataset) if (hint := _hint(layout, base))),
        None,
    )
    return DatasetError(f"No {dataset} layout recognised under '{root}': {hint or contents(root)}. {expected}")


def contents(folder: pathlib.Path) -> str:
    """A short listing for messages: 'it holds a/, b/, notes.txt' or 'it is empty'."""
    entries = sorted(folder.iterdir())
    if not entries:
        return "it is empty"
    shown = [entry.name + ("/" if entry.is_dir() else "") for entry in entries[:_SHOWN_ENTRIES]]
    more = f" and {len(entries) - _SHOWN_ENTRIES} more" if len(entries) > _SHOWN_ENTRIES else ""
    return f"it holds {', '.join(shown)}{more}"


def _match(layout: FolderLayout, base: pathlib.Path) -> Match | None:
    folders, excluded = _class_folders(layout, base)
    names = {normalise(folder.name) for folder in folders}
    complete = {folder.label for folder in folders} == {0, 1} and {normalise(n) for n in layout.required} <= names
    return Match(layout, base, folders, excluded) if complete else None


def _class_folders(layout: FolderLayout, base: pathlib.Path):
    """The layout's class folders in `base` (inside its split folders when it has them), and the excluded ones."""
    classes = {normalise(name): label for name, label in layout.classes.items()}
    excluded = {normalise(name): reason for name, reason in layout.excluded.items()}
    parents = _split_folders(layout, base) if layout.splits else [(base, None)]
    folders, left_out = [], []
    for parent, split in parents:
        for folder in subdirs(parent):
            key = normalise(folder.name)
            if key in classes:
                images = _images_folder(layout, folder)
                folders.append(ClassFolder(images, classes[key], folder.name, split))
            elif key in excluded:
                left_out.append((_images_folder(layout, folder), excluded[key]))
    return folders, left_out


def _split_folders(layout: FolderLayout, base: pathlib.Path) -> list[tuple[pathlib.Path, str]]:
    splits = {normalise(name): split for name, split in layout.splits.items()}
    return [(folder, splits[normalise(folder.name)]) for folder in subdirs(base) if normalise(folder.name) in splits]


def _images_folder(layout: FolderLayout, folder: pathlib.Path) -> pathlib.Path:
    """<class>/images/ where the layout keeps images there (and masks beside them, which are not read)."""
    if layout.images_subfolder and (folder / layout.images_subfolder).is_dir():
        return folder / layout.images_subfolder
    return folder


def _hint(layout: FolderLayout, base: pathlib.Path) -> str | None:
    """What part of `layout` is in `base` and what is missing, e.g. 'found train/ and test/ ... but no NORMAL/ inside'."""
    if layout.splits:
        present = [folder.name + "/" for folder, _ in _split_folders(layout, base)]
        where = " inside"
    else:
        classes = {normalise(name) for name in layout.classes}
        present = [folder.name + "/" for folder in subdirs(base) if normalise(folder.name) in classes]
        where = ""
    if not present:
        return None
    folders, _ = _class_folders(layout, base)
    labels = {folder.label for folder in folders}
    missing = [
        " or ".join(f"{name}/" for name, value in layout.classes.items() if value == label)
        for label in (0, 1) if label not in labels
    ]
    found = {normalise(folder.name) for folder in folders}
    missing = missing or [f"{name}/" for name in layout.required if normalise(name) not in found]
    listed = ", ".join(present[:-1]) + " and " + present[-1] if len(present) > 1 else present[0]
    return f"found {listed} in '{base}' but no {' and no '.join(missing)}{where}"
