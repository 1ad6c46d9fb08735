"""Train / validation / test splits of the papers' protocols, and their split.json.

- improved_bigan (Improved BiGAN section IV-B): normals 80/20 train/test, every abnormal in test; the
  paper applied it to brain MRI, MVTec AD and Plant Disease alike.
- cae_d_gan (CAE-D-GAN section 4.1): half the normals train; the other half joins 25%, 50%, 75%
  and 100% of the abnormals in four nested test sets.
- native: the dataset's own train/test folders (MVTec AD, chest_xray_2/3, Kermany, brain MRI
  Training/Testing); only the normals of the native train part are trained on.

The validation part is carved out of the training normals only: it fixes score normalisation
and the default threshold, so no test image, and no test label, ever touches either. Images
that share a duplicate group always land in the same part, so no image is both trained on and
tested (a group holding an abnormal image is tested as a whole). The native split is the
dataset's own and stays whole: only exact copies of test images leave its training part.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib

import numpy as np

from data.collection import DatasetError, ImageCollection

PROTOCOLS = ("improved_bigan", "cae_d_gan", "native")
ABNORMAL_PERCENTAGES = (25, 50, 75, 100)  # CAE-D-GAN section 4.1
NATIVE_TRAIN_ABNORMAL = (
    "abnormal image in the dataset's own training split: never trained on, and kept out of the test set "
    "so that it stays the dataset's own (--protocol native)"
)
NATIVE_TRAIN_COPY = (
    "exact copy (same pixels) of a test image, in the dataset's own training split: left out so that no test "
    "image is trained on (--protocol native)"
)
_PARTS = ("train", "validation", "test")
_NATIVE_DATASETS = "mvtec_ad, chest_xray_2 (and the Kermany layout), chest_xray_3 and brain MRI Training/Testing"


@dataclasses.dataclass
class Split:
    train: np.ndarray  # indices into the collection: training normals (never validation)
    validation: np.ndarray  # held-out training normals: normalisation + default threshold
    test: np.ndarray  # test normals + abnormals (cae_d_gan: the 100% test set)
    test_sets: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # cae_d_gan: "25".."100" -> indices
    not_used: dict[int, str] = dataclasses.field(default_factory=dict)  # index -> why the protocol leaves it out
    protocol: str = "improved_bigan"
    # native: training images kept although a near duplicate of a test image (reported, not dropped)
    near_duplicates_of_test: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))


def source_paper(dataset: str) -> str:
    """The paper whose experiments `dataset` belongs to: the CAE-D-GAN's chest X-rays, the Improved BiGAN's others."""
    return "cae_d_gan" if dataset.startswith("chest_xray") else "improved_bigan"


def default_protocol(dataset: str, profile: str) -> str:
    """Under `paper`, the protocol of the dataset's paper: CAE-D-GAN's for chest X-rays, else Improved BiGAN's
    80/20 split, which §IV-B applied to MVTec AD too. `quick` and `smoke` keep MVTec AD's own split, the
    benchmark's usual one (anomalib's)."""
    if dataset == "mvtec_ad" and profile != "paper":
        return "native"
    return source_paper(dataset)


def make_split(
    protocol: str, collection: ImageCollection, seed: int, test_fraction: float = 0.2, validation_fraction: float = 0.1
) -> Split:
    """Split `collection` by `protocol` (one of PROTOCOLS); deterministic for a seed, indices sorted per part.

    validation_fraction of the training normals (at least one) is held out for calibration;
    test_fraction applies to improved_bigan only.
    """
    rng = np.random.default_rng(seed)
    if protocol == "improved_bigan":
        return _improved_bigan(collection, rng, test_fraction, validation_fraction)
    if protocol == "cae_d_gan":
        return _cae_d_gan(collection, rng, validation_fraction)
    if protocol == "native":
        return _native(collection, rng, validation_fraction)
    raise DatasetError(f"Unknown protocol '{protocol}'; choose one of: {', '.join(PROTOCOLS)}.")


def paper_split(
    labels: np.ndarray, seed: int, test_fraction: float = 0.2, validation_fraction: float = 0.1
) -> Split:
    """The improved_bigan split of bare labels, for callers without a collection (no duplicate groups)."""
    labels = np.asarray(labels)
    collection = ImageCollection(ids=[str(i) for i in range(len(labels))], labels=labels)
    return make_split("improved_bigan", collection, seed, test_fraction, validation_fraction)


def _improved_bigan(collection, rng, test_fraction, validation_fraction) -> Split:
    normal_units, abnormal_units = _units(collection, range(len(collection)))
    n_normals = _count(normal_units)
    # Normals only (--dataset folder without --abnormal-dir): nothing to evaluate, so no test normals are held back.
    normals_only = not collection.labels.any()
    _require(n_normals >= 3 and (abnormal_units or normals_only), "improved_bigan", collection)
    # Every part gets at least one normal, whatever the fractions.
    n_test = 0 if normals_only else min(max(1, round(test_fraction * n_normals)), n_normals - 2)
    test_units, training_units = _take(_shuffled(rng, normal_units), n_test)
    train, validation = _hold_out(training_units, validation_fraction, collection)
    return Split(train, validation, _indices(test_units + abnormal_units), protocol="improved_bigan")


def _cae_d_gan(collection, rng, validation_fraction) -> Split:
    normal_units, abnormal_units = _units(collection, range(len(collection)))
    n_normals = _count(normal_units)
    _require(n_normals >= 3 and abnormal_units, "cae_d_gan", collection)
    n_training = min(max(2, n_normals // 2), n_normals - 1)  # half, leaving room for validation and test
    training_units, test_normal_units = _take(_shuffled(rng, normal_units), n_training)
    train, validation = _hold_out(training_units, validation_fraction, collection)
    abnormal_units = _shuffled(rng, abnormal_units)
    abnormal_counts = [int(collection.labels[unit].sum()) for unit in abnormal_units]
    n_abnormals = sum(abnormal_counts)
    # Growing prefixes of one shuffled order: the 25% abnormals are a subset of the 50%, and so on.
    test_sets = {
        str(percent): _indices(
            test_normal_units + _take(abnormal_units, math.ceil(percent / 100 * n_abnormals), abnormal_counts)[0]
        )
        for percent in ABNORMAL_PERCENTAGES
    }
    return Split(train, validation, test_sets["100"], test_sets, protocol="cae_d_gan")


def _native(collection, rng, validation_fraction) -> Split:
    """The dataset's own split: native test = test; normals of native train (and val) = training pool.

    The test set is exactly the dataset's own. Native training abnormals are left out (not
    tested either), and so are training images with an exact copy in the test set. Near
    duplicates of test images stay in training and are reported: images of one product are
    near-identical by design (MVTec AD), and dropping them would make results incomparable with
    others' use of the same split.
    """
    native = collection.native_split
    if native is None:
        raise DatasetError(
            f"The {collection.layout or 'chosen'} layout has no train/test split of its own, so --protocol native "
            f"does not apply; use improved_bigan or cae_d_gan. Native splits exist for {_NATIVE_DATASETS}."
        )
    in_test = native == "test"
    copies_of_test = ~in_test & _shares_group(collection.exact_groups, in_test)
    abnormal = ~in_test & (collection.labels != 0)
    not_used = {int(i): NATIVE_TRAIN_COPY for i in np.flatnonzero(copies_of_test)}
    not_used.update({int(i): NATIVE_TRAIN_ABNORMAL for i in np.flatnonzero(abnormal)})
    training = ~in_test & ~abnormal & ~copies_of_test
    test = np.flatnonzero(in_test)
    labels = collection.labels[test]
    if training.sum() < 2 or labels.all() or not labels.any():
        raise DatasetError(
            f"The native split of the {collection.layout} layout needs at least 2 training normals and both normal "
            f"and abnormal test images; it has {int(training.sum())} training normals, {int((labels == 0).sum())} "
            f"normal and {int(labels.sum())} abnormal test images. Check the train/ and test/ folders."
        )
    train, validation = _hold_out(
        _shuffled(rng, _groups(collection, np.flatnonzero(training))), validation_fraction, collection
    )
    near = np.flatnonzero(training & _shares_group(collection.groups, in_test))
    return Split(train, validation, test, not_used=not_used, protocol="native", near_duplicates_of_test=near)


def _shares_group(groups, mask: np.ndarray) -> np.ndarray:
    """Per image: whether its group holds an image where `mask` is set (never, when no groups are known)."""
    if groups is None:
        return np.zeros(len(mask), bool)
    marked = {groups[i] for i in np.flatnonzero(mask)} - {None}
    return np.array([group in marked for group in groups], bool)


def _groups(collection: ImageCollection, indices) -> list[np.ndarray]:
    """`indices` gathered into units that must stay together: duplicate groups, else each image alone.

    Units are ordered by their first index, so with no duplicates the shuffle below is the
    same permutation of the normals as before groups existed.
    """
    groups = collection.groups  # set by duplicate detection, where it ran
    units: dict[object, list[int]] = {}
    for i in indices:
        key = i if groups is None or groups[i] is None else ("group", groups[i])
        units.setdefault(key, []).append(int(i))
    return [np.array(members, dtype=np.int64) for members in units.values()]


def _units(collection, indices) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Units of normals only, and units holding at least one abnormal image."""
    units = _groups(collection, indices)
    return (
        [unit for unit in units if not collection.labels[unit].any()],
        [unit for unit in units if collection.labels[unit].any()],
    )


def _shuffled(rng: np.random.Generator, units: list[np.ndarray]) -> list[np.ndarray]:
    return [units[i] for i in rng.permutation(len(units))]


def _take(units: list[np.ndarray], count: int, sizes=None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The first whole units holding at least `count` images (counted by `sizes`), and the rest."""
    if count <= 0:
        return [], units
    totals = np.cumsum([len(unit) for unit in units] if sizes is None else sizes)
    k = int(np.searchsorted(totals, count)) + 1
    return units[:k], units[k:]


def _hold_out(units, validation_fraction, collection) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation): validation_fraction of the training normals, at least one, never all."""
    n_training = _count(units)
    n_validation = min(max(1, round(validation_fraction * n_training)), n_training - 1)
    validation_units, train_units = _take(units, n_validation)
    if not train_units:
        raise DatasetError(
            f"The {n_training} training normals of {collection.layout or 'this dataset'} form too few groups of "
            "duplicates to hold out a validation part; add normal images or remove the duplicates."
        )
    return _indices(train_units), _indices(validation_units)


def _count(units) -> int:
    return sum(len(unit) for unit in units)


def _indices(units) -> np.ndarray:
    return np.sort(np.concatenate(units)) if units else np.zeros(0, dtype=np.int64)


def _require(enough, protocol, collection) -> None:
    if not enough:
        labels = collection.labels
        raise DatasetError(
            f"The {protocol} protocol needs at least 3 normal images and 1 abnormal image; this dataset has "
            f"{int((labels == 0).sum())} normal and {int((labels != 0).sum())} abnormal. Add images or check "
            "the folder layout."
        )


def split_to_json(collection: ImageCollection, split: Split) -> dict:
    """The protocol, the exact file lists with labels, the test sets, and every file left out with the reason."""

    def entries(indices):
        return [{"path": collection.ids[i], "label": int(collection.labels[i])} for i in indices]

    payload = {"protocol": split.protocol}
    payload.update({part: entries(getattr(split, part)) for part in _PARTS})
    payload["test_sets"] = {key: entries(indices) for key, indices in split.test_sets.items()}
    payload["skipped"] = list(collection.skipped)
    payload["not_used"] = list(collection.not_used) + [
        {"path": collection.ids[i], "label": int(collection.labels[i]), "reason": reason}
        for i, reason in sorted(split.not_used.items())
    ]
    payload["near_duplicates_of_test"] = entries(split.near_duplicates_of_test)
    payload["duplicates"] = collection.duplicates
    return payload


def write_split(path, collection: ImageCollection, split: Split) -> None:
    pathlib.Path(path).write_text(json.dumps(split_to_json(collection, split), indent=1))


def split_from_json(collection: ImageCollection, payload: dict) -> Split:
    """Rebuild the index arrays of a saved split.json (for --resume) against a fresh collection."""
    index = {path: i for i, path in enumerate(collection.ids)}

    def lookup(entry: dict) -> int:
        i = index.get(entry["path"])
        if i is None or int(collection.labels[i]) != entry["label"]:
            raise DatasetError(
                f"split.json lists '{entry['path']}' with label {entry['label']}, which is no longer "
                "in the dataset with that label; restore the file or start a new run without --resume."
            )
        return i

    def indices(entries: list[dict]) -> np.ndarray:
        return np.array([lookup(entry) for entry in entries], dtype=np.int64)

    return Split(
        *(indices(payload[part]) for part in _PARTS),
        test_sets={key: indices(entries) for key, entries in payload.get("test_sets", {}).items()},
        # Entries with a label are collection images the protocol left out; the others never entered the collection.
        not_used={lookup(entry): entry["reason"] for entry in payload.get("not_used", []) if "label" in entry},
        protocol=payload.get("protocol", "improved_bigan"),  # split.json files written before protocols existed
        near_duplicates_of_test=indices(payload.get("near_duplicates_of_test", [])),
    )
