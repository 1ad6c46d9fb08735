"""What every dataset source builds and shares: the ImageCollection of found images, class folders, the dataset
error, and the scan that lists, checks and de-duplicates files (data.sources dispatches to the layouts that
use them: data.layouts, data.mvtec, data.plant_village, and the `folder` dataset here).

A source only lists files and checks that they decode; decoding for training is the tf.data
pipeline's job. Files that cannot be used are listed in ``ImageCollection.skipped`` with a
reason, and images a protocol deliberately leaves out in ``ImageCollection.not_used``: nothing
is dropped silently, so both can be counted in the run's log, describe and split.json.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import pathlib

import numpy as np

from data.files import IMAGE_EXTENSIONS, list_image_files

_SCAN_THREADS = min(8, 2 * (os.cpu_count() or 1))  # twice the cores: decoding releases the GIL, Python glue does not
_FOLDER_FLAGS = {0: "--normal-dir", 1: "--abnormal-dir"}
_EXAMPLES = 3  # paths shown per reason for skipped files
# ImageCollection fields with one entry per image, which dropping an image must shorten.
_PER_IMAGE = ("ids", "labels", "images", "masks", "classes", "native_split", "mask_paths", "file_info")


@dataclasses.dataclass
class ImageCollection:
    """Images of one dataset: files on disk, or in-memory arrays for generated data."""

    ids: list[str]  # file paths as found, or stable ids such as "phantom/normal/00012"
    labels: np.ndarray  # int64 [N]: 0 normal, 1 abnormal
    images: np.ndarray | None = None  # uint8 [N, H, W] for in-memory sources; None for files
    masks: np.ndarray | None = None  # uint8 [N, H, W] in {0, 1} where known; None otherwise
    skipped: list[dict] = dataclasses.field(default_factory=list)  # [{"path", "reason"}]
    classes: list[str] | None = None  # per image, the class or defect folder as published ("good", "crack", "NORMAL")
    native_split: np.ndarray | None = None  # per image "train" / "test" / "val" where the layout has its own split
    mask_paths: list[str | None] | None = None  # per image ground-truth mask file; None = no defect pixels
    layout: str | None = None  # the recognised layout, named for describe and error messages
    root: str | None = None  # the folder the layout was found in
    not_used: list[dict] = dataclasses.field(default_factory=list)  # [{"path", "reason"}]: left out on purpose
    # Per image, from the scan: {"width", "height", "channels", "mode", "bit_depth", "format",
    # "decoder", "reduction"} (data.decode.inspect_image); None for in-memory sources.
    file_info: list[dict] | None = None
    groups: np.ndarray | None = None  # int64 [N] duplicate group; a group stays in one split. None: all distinct
    exact_groups: np.ndarray | None = None  # int64 [N] exact-copy group (same decoded pixels); None: not checked
    duplicates: dict | None = None  # duplicate counts (data.duplicates.find_duplicates), for split.json

    def __len__(self) -> int:
        return len(self.ids)

    def masks_for(self, indices, size: int) -> np.ndarray | None:
        """Ground-truth masks of `indices` as uint8 {0, 1} [len(indices), size, size]; None without masks.

        Nearest-neighbour resizing (as tf.image.resize does it) keeps masks binary; an image
        without a mask file has no defect pixels (MVTec's good images).
        """
        import tensorflow as tf  # deferred: listing a dataset must not pay for importing TensorFlow

        if self.masks is None and self.mask_paths is None:
            return None
        masks = np.zeros((len(indices), size, size), np.uint8)
        for row, index in enumerate(indices):
            mask = self.masks[index] if self.masks is not None else _read_mask(self.mask_paths[index])
            if mask is not None:
                resized = tf.image.resize((mask > 0)[..., None].astype(np.uint8), (size, size), method="nearest")
                masks[row] = resized.numpy()[..., 0]
        return masks


def _read_mask(path: str | None) -> np.ndarray | None:
    import cv2  # deferred with TensorFlow: only evaluation reads masks

    if path is None:
        return None
    mask = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise DatasetError(f"The ground-truth mask '{path}' cannot be read as an image; restore it from the archive.")
    return mask


@dataclasses.dataclass(frozen=True)
class ClassFolder:
    """One folder of images of one class, as a layout names it."""

    path: pathlib.Path
    label: int  # 0 normal, 1 abnormal
    name: str  # the class or defect as published: "NORMAL", "crack", "Tomato___healthy"
    split: str | None = None  # the layout's own split: "train", "test", "val"


class DatasetError(Exception):
    """A dataset that is missing, empty or laid out in a way we do not recognise.

    str(e) is the whole user-facing message (what was looked for, the expected layouts, where
    to get the data); the command line prints it and exits 2 without a traceback.
    """


def collect_class_folders(
    folders: list[ClassFolder], layout: str, root: pathlib.Path | None, not_used: list[dict] | None = None
) -> ImageCollection:
    """Collect the images of every class folder once (one _collect call) and note each image's class and split.

    Each image is attributed to the deepest class folder that holds it, so nested folders
    (never passed by the layouts, but harmless) cannot swap classes.
    """
    collection = _collect([(folder.path, folder.label) for folder in folders])
    by_depth = sorted(folders, key=lambda folder: len(folder.path.parts), reverse=True)
    owners = [_owner(pathlib.Path(path), by_depth) for path in collection.ids]
    has_split = any(folder.split for folder in folders)
    return dataclasses.replace(
        collection,
        classes=[owner.name for owner in owners],
        native_split=np.array([owner.split for owner in owners], dtype=object) if has_split else None,
        layout=layout,
        root=None if root is None else str(root),
        not_used=list(not_used or []),
    )


def _owner(path: pathlib.Path, folders: list[ClassFolder]) -> ClassFolder:
    """The first of `folders` holding `path`; compared resolved too, in case a link led there."""
    for folder in folders:
        if path.is_relative_to(folder.path):
            return folder
    resolved = path.resolve()
    return next(folder for folder in folders if resolved.is_relative_to(folder.path.resolve()))


def list_images(folder: pathlib.Path, reason: str) -> list[dict]:
    """The image files under `folder`, each with `reason`: how deliberately unused images are recorded."""
    files, _ = list_image_files(folder)  # what is not an image is not an unused image either
    return [{"path": str(path), "reason": reason} for path in files]


def with_both_labels(collection: ImageCollection, why_missing, labels=(0, 1)) -> ImageCollection:
    """The collection, or DatasetError(why_missing(label)) for the first of `labels` (0 normal, 1 abnormal) without a usable image.

    The message goes on with the skipped files and why, as describe lists them: "no usable
    images" alone hides that the files are, say, text renamed .jpg.
    """
    missing = next((label for label in labels if not (collection.labels == label).any()), None)
    if missing is not None:
        raise DatasetError("\n".join([why_missing(missing), *reason_lines("Skipped", collection.skipped)]))
    return collection


def reason_lines(title: str, entries: list[dict]) -> list[str]:
    """'Skipped: 4' and, per reason, its count with the first few paths: how left-out files are shown."""
    if not entries:
        return [f"{title}: none"]
    by_reason: dict[str, list[str]] = {}
    for entry in entries:
        by_reason.setdefault(entry["reason"], []).append(entry["path"])
    lines = [f"{title}: {len(entries):,}"]
    for reason, paths in by_reason.items():
        lines.append(f"  {reason}: {len(paths):,}, e.g. {', '.join(paths[:_EXAMPLES])}")
    return lines


def scan_files(paths: list[str]) -> list[tuple[dict, tuple[bytes, np.ndarray]] | str]:
    """Check, decode and fingerprint every file once, in parallel: (file_info, fingerprint) or why to skip it.

    A thread pool suffices: tf.io and OpenCV decode with the GIL released. The imports are
    deferred: listing the phantom must not pay for importing TensorFlow.
    """
    from data.decode import UnusableImage, inspect_image
    from data.duplicates import fingerprint

    def scan(path):
        try:
            info, image = inspect_image(path)
        except UnusableImage as error:
            return str(error)
        except OSError as error:
            return f"cannot be read ({error.strerror})"
        return info, fingerprint(image)

    from data.progress import PROGRESS_MINIMUM, Progress

    progress = Progress(len(paths), "Reading and checking", "files", minimum=PROGRESS_MINIMUM)
    results = []
    with concurrent.futures.ThreadPoolExecutor(_SCAN_THREADS) as pool:
        for result in pool.map(scan, paths):
            results.append(result)
            progress.add()
    progress.close()
    return results


def load_folders(normal_dir: str | None, abnormal_dir: str | None) -> ImageCollection:
    """--normal-dir and, optionally, --abnormal-dir: without abnormal images a run trains, calibrates and exports
    a detector but cannot evaluate it (run_experiments says so)."""
    if not normal_dir:
        raise DatasetError(
            "--dataset folder needs --normal-dir: a folder of normal images (searched recursively); add "
            "--abnormal-dir, a folder of abnormal images, to evaluate the model."
        )
    folders = [
        ClassFolder(pathlib.Path(path), label, pathlib.Path(path).name)
        for path, label in ((normal_dir, 0), (abnormal_dir, 1)) if path
    ]
    for folder in folders:
        if not folder.path.is_dir():
            raise DatasetError(f"The {_FOLDER_FLAGS[folder.label]} folder '{folder.path}' does not exist.")
    if len(folders) == 2:  # normals only (no --abnormal-dir): nothing to overlap
        _refuse_overlap(*folders)
    collection = collect_class_folders(folders, "folder (--normal-dir, --abnormal-dir)", None)
    return with_both_labels(collection, lambda missing: (
        f"The {_FOLDER_FLAGS[missing]} folder '{folders[missing].path}' has no usable images "
        f"({', '.join(IMAGE_EXTENSIONS)}, searched recursively)."
    ), labels=[folder.label for folder in folders])


def _refuse_overlap(normal: ClassFolder, abnormal: ClassFolder) -> None:
    """Refuse one folder inside the other, or both the same: its images would be both normal and abnormal."""
    normal_path, abnormal_path = normal.path.resolve(), abnormal.path.resolve()
    if normal_path == abnormal_path:
        where = "they are the same folder"
    elif abnormal_path.is_relative_to(normal_path):
        where = "--abnormal-dir is inside --normal-dir"
    elif normal_path.is_relative_to(abnormal_path):
        where = "--normal-dir is inside --abnormal-dir"
    else:
        return
    raise DatasetError(
        f"--normal-dir '{normal.path}' and --abnormal-dir '{abnormal.path}' overlap ({where}), so the images in "
        "both would be normal and abnormal at once. Point them at two separate folders."
    )


def _collect(class_dirs: list[tuple[pathlib.Path, int]]) -> ImageCollection:
    """The usable images under each class folder (recursively, sorted), with duplicate groups.

    Every file left out is listed in `skipped` with its reason: not an image, unusable, or an
    exact copy that carries both labels (data.duplicates).
    """
    files, skipped = [], []
    for folder, label in class_dirs:
        found, left_out = list_image_files(folder)
        files += [(str(path), label) for path in found]
        skipped += left_out
    usable = []
    for (path, label), scanned in zip(files, scan_files([path for path, _ in files])):
        if isinstance(scanned, str):
            skipped.append({"path": path, "reason": scanned})
        else:
            usable.append((path, label, *scanned))
    ids, labels, infos, fingerprints = (list(column) for column in zip(*usable)) if usable else ([],) * 4
    collection = ImageCollection(ids=ids, labels=np.array(labels, dtype=np.int64), skipped=skipped, file_info=infos)
    return with_duplicates(collection, fingerprints)


def with_duplicates(collection: ImageCollection, fingerprints: list) -> ImageCollection:
    """The collection with its duplicate groups (data.duplicates), less the exact copies labelled both ways.

    The dropped copies join `skipped` with the copy that carries the other label.
    """
    from data.duplicates import find_duplicates  # deferred with scan_files

    duplicates = find_duplicates(fingerprints, collection.labels)
    ids = collection.ids
    conflicts = [
        {"path": ids[i], "reason": f"exact duplicate present as both normal and abnormal ({ids[other]})"}
        for i, other in duplicates.dropped.items()
    ]
    kept = [i for i in range(len(collection)) if i not in duplicates.dropped]
    per_image = {
        field: [value[i] for i in kept] if isinstance(value, list) else value[kept]
        for field in _PER_IMAGE if (value := getattr(collection, field)) is not None
    }
    return dataclasses.replace(
        collection,
        **per_image,
        skipped=sorted(collection.skipped + conflicts, key=lambda entry: entry["path"]),
        groups=duplicates.groups,
        exact_groups=duplicates.exact,
        duplicates=duplicates.counts,
    )
