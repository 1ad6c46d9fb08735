"""Dataset sources: find a dataset's images and labels on disk, or generate the phantom (SPEC section 4).

A source only lists files and checks that they decode; decoding for training is the tf.data
pipeline's job. Files that cannot be used are listed in ``ImageCollection.skipped`` with a
reason, never dropped silently, so they can be counted in the run's log and split.json.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np

DATASET_NAMES = (
    "phantom", "brain_mri", "mvtec_ad", "plant_village",
    "chest_xray_1", "chest_xray_2", "chest_xray_3", "folder",
)
# What tf.io.decode_image reads.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")

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
    classes: list[str] | None = None  # per image: the original class / defect name

    def __len__(self) -> int:
        return len(self.ids)

    def masks_for(self, indices, size):
        """uint8 {0, 1} [len(indices), size, size] ground-truth masks, or None without masks."""
        if self.masks is None:
            return None
        import tensorflow as tf

        return tf.image.resize(self.masks[indices][..., None], (size, size), method="nearest").numpy()[..., 0]


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


def find_undecodable(paths: list[str]) -> dict[str, str]:
    """Map each path that is empty or does not decode as an image to the reason.

    Decodes every file once, in parallel with tf.data; a file that raises is dropped by
    ignore_errors(), so the paths that do not come out are the undecodable ones.
    """
    import tensorflow as tf  # deferred: listing the phantom must not pay for importing TensorFlow

    bad = {path: "empty file" for path in paths if os.path.getsize(path) == 0}
    candidates = [path for path in paths if path not in bad]
    if not candidates:
        return bad

    def decode(path):
        image = tf.io.decode_image(
            tf.io.read_file(path), channels=0, dtype=tf.float32, expand_animations=False
        )
        return path, tf.size(image) > 0  # using the image keeps the decode from being pruned

    decoded = (
        tf.data.Dataset.from_tensor_slices(candidates)
        .map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
        .ignore_errors()
    )
    ok = {path.decode() for path, nonempty in decoded.as_numpy_iterator() if nonempty}
    bad.update({path: "cannot be decoded as an image" for path in candidates if path not in ok})
    return bad


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
    """List the image files under each class folder (recursively, sorted) and set aside unusable ones."""
    files, skipped = [], []
    for folder, label in class_dirs:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                files.append((str(path), label))
            else:
                reason = f"not a supported image type ({path.suffix.lower() or path.name})"
                skipped.append({"path": str(path), "reason": reason})
    bad = find_undecodable([path for path, _ in files])
    skipped += [{"path": path, "reason": bad[path]} for path, _ in files if path in bad]
    usable = [(path, label) for path, label in files if path not in bad]
    return ImageCollection(
        ids=[path for path, _ in usable],
        labels=np.array([label for _, label in usable], dtype=np.int64),
        skipped=skipped,
    )
