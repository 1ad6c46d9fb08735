import json

import numpy as np
import pytest

from data.protocols import Split, paper_split, split_from_json, split_to_json, write_split
from data.sources import DatasetError, ImageCollection


@pytest.fixture
def collection():
    """100 normals and 30 abnormals, interleaved as a folder listing would not be."""
    labels = np.zeros(130, dtype=np.int64)
    labels[np.random.default_rng(1).choice(130, 30, replace=False)] = 1
    return ImageCollection(
        ids=[f"scans/{i:03d}.png" for i in range(130)],
        labels=labels,
        skipped=[{"path": "scans/bad.png", "reason": "cannot be decoded as an image"}],
    )


def test_paper_split_parts_are_disjoint_and_follow_the_protocol(collection):
    split = paper_split(collection.labels, seed=0)
    parts = [split.train, split.validation, split.test]
    everything = np.concatenate(parts)
    assert len(everything) == len(set(everything.tolist())) == len(collection)
    for part in parts:
        assert np.array_equal(part, np.sort(part))
    labels = collection.labels
    assert not labels[split.train].any() and not labels[split.validation].any()
    assert set(np.flatnonzero(labels == 1)) <= set(split.test.tolist())
    assert (labels[split.test] == 0).sum() == 20  # 20% of the 100 normals
    assert len(split.validation) == 8  # 10% of the 80 training normals


def test_paper_split_is_deterministic_per_seed(collection):
    first, again = paper_split(collection.labels, seed=3), paper_split(collection.labels, seed=3)
    other = paper_split(collection.labels, seed=4)
    for part in ("train", "validation", "test"):
        assert np.array_equal(getattr(first, part), getattr(again, part))
    assert not np.array_equal(first.test, other.test)


def test_paper_split_smallest_dataset_fills_every_part():
    split = paper_split(np.array([0, 0, 0, 1]), seed=0)
    assert len(split.train) == len(split.validation) == 1
    assert 3 in split.test and len(split.test) == 2


@pytest.mark.parametrize("labels", [[0, 0, 1, 1], [0, 0, 0, 0, 0]])
def test_paper_split_rejects_too_few_normals_or_no_abnormals(labels):
    with pytest.raises(DatasetError, match="at least 3 normal images and 1 abnormal"):
        paper_split(np.array(labels), seed=0)


def test_split_json_round_trip(collection, tmp_path):
    split = paper_split(collection.labels, seed=0)
    write_split(tmp_path / "split.json", collection, split)
    payload = json.loads((tmp_path / "split.json").read_text())
    assert payload == split_to_json(collection, split)
    assert payload["skipped"] == collection.skipped
    assert payload["test"][0] == {
        "path": collection.ids[split.test[0]],
        "label": int(collection.labels[split.test[0]]),
    }
    restored = split_from_json(collection, payload)
    assert isinstance(restored, Split)
    for part in ("train", "validation", "test"):
        assert np.array_equal(getattr(restored, part), getattr(split, part))


def test_split_from_json_rejects_a_file_that_is_gone(collection):
    payload = split_to_json(collection, paper_split(collection.labels, seed=0))
    payload["train"].append({"path": "scans/deleted.png", "label": 0})
    with pytest.raises(DatasetError, match="scans/deleted.png"):
        split_from_json(collection, payload)
