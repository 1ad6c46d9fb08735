"""Dataset sources: find a dataset's images and labels on disk, or generate the phantom (SPEC section 4).

A source only lists files and checks that they decode; decoding for training is the tf.data
pipeline's job. Files that cannot be used are listed in ``ImageCollection.skipped`` with a
reason, never dropped silently, so they can be counted in the run's log and split.json.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import pathlib

import numpy as np

from data.files import IMAGE_EXTENSIONS, list_image_files

DATASET_NAMES = (
    "phantom", "brain_mri", "mvtec_ad", "plant_village",
    "chest_xray_1", "chest_xray_2", "chest_xray_3", "folder",
)
_SCAN_THREADS = min(8, 2 * (os.cpu_count() or 1))  # twice the cores: decoding releases the GIL, Python glue does not

# Brain MRI class folders (lower case) of the three Kaggle layouts; normal = 0, tumour = 1.
_BRAIN_MRI_CLASSES = {
    "no": 0, "notumor": 0, "no_tumor": 0,
    "yes": 1, "glioma": 1, "meningioma": 1, "pituitary": 1,
    "glioma_tumor": 1, "meningioma_tumor": 1, "pituitary_tumor": 1,
}
_BRAIN_MRI_SPLITS = ("training", "testing")
_FOLDER_FLAGS = {0: "--normal-dir", 1: "--abnormal-dir"}
_BRAIN_MRI_LAYOUTS = (
    "Expected one of: yes/ + no/ (Kaggle 'Brain MRI Images for Brain Tumor Detection' or Br35H), "
    "Training|Testing/{glioma,meningioma,notumor,pituitary} ('Brain Tumor MRI Dataset'), or "
    "Training|Testing/{glioma_tumor,meningioma_tumor,no_tumor,pituitary_tumor}; download one "
    "from kaggle.com and pass --data-dir, set $BIGAN_DATA_DIR, or place it in ./datasets/brain_mri."
)


@dataclasses.dataclass
class ImageCollection:
    """Images of one dataset: files on disk, or in-memory arrays for generated data."""

    ids: list[str]  # file paths as found, or stable ids such as "phantom/normal/00012"
    labels: np.ndarray  # int64 [N]: 0 normal, 1 abnormal
    images: np.ndarray | None = None  # uint8 [N, H, W] for in-memory sources; None for files
    masks: np.ndarray | None = None  # uint8 [N, H, W] in {0, 1} where known; None otherwise
    skipped: list[dict] = dataclasses.field(default_factory=list)  # [{"path", "reason"}]
    # Per image, from the scan: {"width", "height", "channels", "mode", "bit_depth", "format",
    # "decoder", "reduction"} (data.decode.inspect_image); None for in-memory sources.
    file_info: list[dict] | None = None
    groups: np.ndarray | None = None  # int64 [N] duplicate group; a group stays in one split. None: all distinct
    duplicates: dict | None = None  # duplicate counts (data.duplicates.find_duplicates), for split.json

    def __len__(self) -> int:
        return len(self.ids)


class DatasetError(Exception):
    """A dataset that is missing, empty or laid out in a way we do not recognise.

    str(e) is the whole user-facing message (what was looked for, the expected layouts, where
    to get the data); the command line prints it and exits 2 without a traceback.
    """


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
) -> ImageCollection:
    """Load dataset `name` (one of DATASET_NAMES); raise DatasetError with a user-facing message."""
    if name == "phantom":
        from data.phantom import make_phantom  # deferred: data.phantom imports ImageCollection

        return make_phantom(phantom_normals, phantom_abnormals, phantom_size, seed)
    if name == "brain_mri":
        return _load_brain_mri(resolve_data_dir(name, data_dir))
    if name == "folder":
        return _load_folders(normal_dir, abnormal_dir)
    if name in DATASET_NAMES:
        raise DatasetError(
            f"Dataset '{name}' is not available in this version yet; use phantom, brain_mri, or "
            "folder with --normal-dir and --abnormal-dir."
        )
    raise DatasetError(f"Unknown dataset '{name}'; choose one of: {', '.join(DATASET_NAMES)}.")


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

    with concurrent.futures.ThreadPoolExecutor(_SCAN_THREADS) as pool:
        return list(pool.map(scan, paths))


def _load_brain_mri(root: pathlib.Path | None) -> ImageCollection:
    if root is None:
        raise DatasetError(
            "No brain MRI folder was given or found (--data-dir, $BIGAN_DATA_DIR/brain_mri, "
            f"./datasets/brain_mri). {_BRAIN_MRI_LAYOUTS}"
        )
    class_dirs = _find_brain_mri_classes(root) if root.is_dir() else None
    if not class_dirs:
        raise DatasetError(f"No brain MRI images found under '{root}'. {_BRAIN_MRI_LAYOUTS}")
    collection = _collect(class_dirs)
    for label, kind in ((0, "normal (no tumour)"), (1, "tumour")):
        if not np.any(collection.labels == label):
            raise DatasetError(
                f"No usable {kind} brain MRI images found under '{root}' "
                f"({len(collection.skipped)} files skipped). {_BRAIN_MRI_LAYOUTS}"
            )
    return collection


def _find_brain_mri_classes(root: pathlib.Path) -> list[tuple[pathlib.Path, int]] | None:
    """Class folders with their labels, in `root` itself or one level down (an extra unzip folder).

    The first folder with a recognised layout wins, so a copy nested inside (the navoneel zip
    holds yes/ + no/ twice) is not counted again; hidden and __MACOSX folders are not searched.
    """
    nested = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))
    for base in [root, *nested]:
        children = _subdirs(base)
        parents = [children[s] for s in _BRAIN_MRI_SPLITS if s in children] or [base]
        found = [
            (folder, _BRAIN_MRI_CLASSES[name])
            for parent in parents
            for name, folder in sorted(_subdirs(parent).items())
            if name in _BRAIN_MRI_CLASSES
        ]
        if {label for _, label in found} == {0, 1}:
            return found
    return None


def _subdirs(folder: pathlib.Path) -> dict[str, pathlib.Path]:
    """Sub-folders by lower-cased name: Kaggle archives differ in capitalisation."""
    return {p.name.lower(): p for p in folder.iterdir() if p.is_dir()}


def _load_folders(normal_dir: str | None, abnormal_dir: str | None) -> ImageCollection:
    if not normal_dir or not abnormal_dir:
        raise DatasetError(
            "--dataset folder needs both --normal-dir and --abnormal-dir: folders of normal and "
            "of abnormal images (searched recursively)."
        )
    class_dirs = [(pathlib.Path(normal_dir), 0), (pathlib.Path(abnormal_dir), 1)]
    for folder, label in class_dirs:
        if not folder.is_dir():
            raise DatasetError(f"The {_FOLDER_FLAGS[label]} folder '{folder}' does not exist.")
    collection = _collect(class_dirs)
    for folder, label in class_dirs:
        if not np.any(collection.labels == label):
            raise DatasetError(
                f"The {_FOLDER_FLAGS[label]} folder '{folder}' has no usable images "
                f"({', '.join(IMAGE_EXTENSIONS)}, searched recursively)."
            )
    return collection


def _collect(class_dirs: list[tuple[pathlib.Path, int]]) -> ImageCollection:
    """The usable images under each class folder (recursively, sorted), with duplicate groups.

    Every file left out is listed in `skipped` with its reason: not an image, unusable, or an
    exact copy that carries both labels (data.duplicates).
    """
    from data.duplicates import find_duplicates  # deferred with scan_files

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
    duplicates = find_duplicates(fingerprints, labels)
    skipped += [
        {"path": ids[i], "reason": f"exact duplicate present as both normal and abnormal ({ids[other]})"}
        for i, other in duplicates.dropped.items()
    ]
    kept = [i for i in range(len(ids)) if i not in duplicates.dropped]
    return ImageCollection(
        ids=[ids[i] for i in kept],
        labels=np.array([labels[i] for i in kept], dtype=np.int64),
        skipped=sorted(skipped, key=lambda entry: entry["path"]),
        file_info=[infos[i] for i in kept],
        groups=duplicates.groups,
        duplicates=duplicates.counts,
    )
