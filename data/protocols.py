"""Train / validation / test splits of the papers' protocols, and their split.json (SPEC section 4).

The validation part is carved out of the training normals only: it fixes score normalisation
and the default threshold, so no test image, and no test label, ever touches either.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np

from data.sources import DatasetError, ImageCollection

_PARTS = ("train", "validation", "test")


@dataclasses.dataclass
class Split:
    train: np.ndarray  # indices into the collection: training normals (never validation)
    validation: np.ndarray  # held-out training normals: normalisation + default threshold
    test: np.ndarray  # test normals + all abnormals


def paper_split(
    labels: np.ndarray, seed: int, test_fraction: float = 0.2, validation_fraction: float = 0.1
) -> Split:
    """Improved BiGAN protocol (paper section IV-B): normals 80/20 train/test, every abnormal in test.

    validation_fraction of the training normals (at least one when there are two or more) is held
    out for calibration. Deterministic for a seed; indices are sorted within each part.
    """
    labels = np.asarray(labels)
    normals, abnormals = np.flatnonzero(labels == 0), np.flatnonzero(labels != 0)
    if len(normals) < 3 or len(abnormals) == 0:
        raise DatasetError(
            f"The paper split needs at least 3 normal images and 1 abnormal image; this dataset "
            f"has {len(normals)} normal and {len(abnormals)} abnormal. Add images or check the "
            "folder layout."
        )
    normals = np.random.default_rng(seed).permutation(normals)
    # Every part gets at least one normal, whatever the fractions.
    n_test = min(max(1, round(test_fraction * len(normals))), len(normals) - 2)
    n_training = len(normals) - n_test
    n_validation = min(max(1, round(validation_fraction * n_training)), n_training - 1)
    return Split(
        train=np.sort(normals[n_test + n_validation:]),
        validation=np.sort(normals[n_test:n_test + n_validation]),
        test=np.sort(np.concatenate([normals[:n_test], abnormals])),
    )


def split_to_json(collection: ImageCollection, split: Split) -> dict:
    """The exact file lists with labels, plus the files that were skipped (SPEC section 3)."""
    payload = {
        part: [
            {"path": collection.ids[i], "label": int(collection.labels[i])}
            for i in getattr(split, part)
        ]
        for part in _PARTS
    }
    payload["skipped"] = list(collection.skipped)
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

    return Split(
        **{part: np.array([lookup(e) for e in payload[part]], dtype=np.int64) for part in _PARTS}
    )
