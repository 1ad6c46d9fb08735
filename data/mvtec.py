"""MVTec AD: one category at a time, with its own train/test split and ground-truth masks.

Layout as published: <category>/train/good/, <category>/test/{good,<defect>}/ and
<category>/ground_truth/<defect>/<image>_mask.png. Any folder laid out like that counts as a
category, so MVTec-style data of one's own loads the same way; --data-dir pointing at one such
folder is read as the category asked for, whatever the folder is called.
"""

from __future__ import annotations

import pathlib

from data.collection import (
    ClassFolder,
    DatasetError,
    ImageCollection,
    collect_class_folders,
    reason_lines,
)
from data.layouts import contents, search_roots, subdirs

CATEGORIES = (
    "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
    "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper",
)
PAGE = "https://www.mvtec.com/company/research/datasets/mvtec-ad"
_EXPECTED = (
    "mvtec_ad expects <category>/train/good/, <category>/test/{good,<defect>}/ and "
    "<category>/ground_truth/<defect>/<image>_mask.png, e.g. bottle/train/good/000.png "
    f"(MVTec AD, {PAGE}, CC BY-NC-SA 4.0). Get it with `run_experiments.py download --category NAME|all`, pass "
    "--data-dir, set $BIGAN_DATA_DIR, or place it in ./datasets/mvtec_ad."
)


def mvtec_categories(root: pathlib.Path | None) -> list[str]:
    """The categories found under `root` (the 15 of MVTec AD, or fewer when only some were downloaded)."""
    return sorted(_categories(root))


def load_mvtec(root: pathlib.Path | None, category: str | None) -> ImageCollection:
    """One category: train/good normals (native train), test/good normals and test/<defect> abnormals (test)."""
    found = _categories(root)
    if category is None:
        raise DatasetError(
            f"mvtec_ad needs --category NAME or --category all; found under '{root}': {', '.join(sorted(found))}."
        )
    folder = found.get(category.lower())
    if folder is None and _is_category(root) and root.name.lower() not in CATEGORIES:
        folder = root  # one category folder the user renamed; a folder named after another category is refused
    if folder is None:
        raise DatasetError(
            f"No MVTec AD category '{category}' under '{root}'; found: {', '.join(sorted(found))}. "
            f"MVTec AD's categories are {', '.join(CATEGORIES)}."
        )
    test = [ClassFolder(sub, 0 if sub.name == "good" else 1, sub.name, "test") for sub in subdirs(folder / "test")]
    folders = [ClassFolder(folder / "train" / "good", 0, "good", "train"), *test]
    collection = collect_class_folders(folders, "mvtec_ad", folder)
    if not collection.labels.any() or not (collection.native_split == "train").any():
        raise DatasetError("\n".join([
            f"The MVTec AD category '{folder}' has no usable training or no usable defect images. {_EXPECTED}",
            *reason_lines("Skipped", collection.skipped),
        ]))
    collection.mask_paths = [
        _mask_path(folder, pathlib.Path(path), name) if label else None
        for path, label, name in zip(collection.ids, collection.labels, collection.classes)
    ]
    return collection


def _mask_path(category: pathlib.Path, image: pathlib.Path, defect: str) -> str | None:
    mask = category / "ground_truth" / defect / f"{image.stem}_mask.png"
    return str(mask) if mask.is_file() else None


def _categories(root: pathlib.Path | None) -> dict[str, pathlib.Path]:
    """Category folders by lower-cased name, in the first folder (root or up to two down) that has any."""
    if root is None:
        raise DatasetError(
            "No mvtec_ad folder was given or found (--data-dir, $BIGAN_DATA_DIR/mvtec_ad, ./datasets/mvtec_ad). "
            + _EXPECTED
        )
    if not root.is_dir():
        raise DatasetError(f"The mvtec_ad folder '{root}' does not exist. {_EXPECTED}")
    for base in search_roots(root):
        if _is_category(base):  # --data-dir points at one category
            return {base.name.lower(): base}
        found = {child.name.lower(): child for child in subdirs(base) if _is_category(child)}
        if found:
            return found
    raise DatasetError(f"No MVTec AD category found under '{root}': {_nearest(root)}. {_EXPECTED}")


def _is_category(folder: pathlib.Path) -> bool:
    return (folder / "train" / "good").is_dir() and (folder / "test").is_dir()


def _nearest(root: pathlib.Path) -> str:
    """'found bottle/train/ but no good/ inside' where a category is half there, else what root holds."""
    for base in search_roots(root):
        if (base / "train").is_dir():
            missing = "good/ inside" if not (base / "train" / "good").is_dir() else "test/ beside it"
            return f"found '{base / 'train'}' but no {missing}"
    return contents(root)
