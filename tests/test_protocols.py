import json

import numpy as np
import pytest

import experiment
import run_experiments
from data.collection import DatasetError, ImageCollection
from data.describe import describe
from data.protocols import (
    NATIVE_TRAIN_ABNORMAL,
    NATIVE_TRAIN_COPY,
    PROTOCOLS,
    Split,
    default_protocol,
    make_split,
    paper_split,
    split_from_json,
    split_to_json,
    write_split,
)
from tests.test_layouts import write_pngs


def labelled(labels, **fields) -> ImageCollection:
    return ImageCollection(ids=[f"img/{i:03d}.png" for i in range(len(labels))], labels=np.array(labels), **fields)


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


def test_improved_bigan_split_parts_are_disjoint_and_follow_the_protocol(collection):
    split = make_split("improved_bigan", collection, seed=0)
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


def test_improved_bigan_split_is_deterministic_per_seed(collection):
    first, again = make_split("improved_bigan", collection, seed=3), make_split("improved_bigan", collection, seed=3)
    other = make_split("improved_bigan", collection, seed=4)
    for part in ("train", "validation", "test"):
        assert np.array_equal(getattr(first, part), getattr(again, part))
    assert not np.array_equal(first.test, other.test)


def test_improved_bigan_split_smallest_dataset_fills_every_part():
    split = make_split("improved_bigan", labelled([0, 0, 0, 1]), seed=0)
    assert len(split.train) == len(split.validation) == 1
    assert 3 in split.test and len(split.test) == 2


@pytest.mark.parametrize("labels", [[0, 0, 1, 1], [0, 0]])
def test_improved_bigan_split_rejects_too_few_normals(labels):
    with pytest.raises(DatasetError, match="at least 3 normal images and 1 abnormal"):
        make_split("improved_bigan", labelled(labels), seed=0)


def test_improved_bigan_split_of_normals_only_holds_back_no_test_normals():
    """Normals only (a folder without --abnormal-dir) trains and calibrates; there is nothing to evaluate."""
    split = make_split("improved_bigan", labelled([0] * 40), seed=0)
    assert len(split.test) == 0 and len(split.train) + len(split.validation) == 40


def test_split_json_round_trip(collection, tmp_path):
    split = make_split("improved_bigan", collection, seed=0)
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
    payload = split_to_json(collection, make_split("improved_bigan", collection, seed=0))
    payload["train"].append({"path": "scans/deleted.png", "label": 0})
    with pytest.raises(DatasetError, match="scans/deleted.png"):
        split_from_json(collection, payload)


def parts(split):
    return {"train": set(split.train.tolist()), "validation": set(split.validation.tolist()),
            "test": set(split.test.tolist()), "not used": set(split.not_used)}


def test_default_protocols_and_unknown_protocol(collection):
    names = ("mvtec_ad", "chest_xray_1", "chest_xray_3", "brain_mri", "phantom")
    for profile in ("quick", "smoke"):
        assert [default_protocol(name, profile) for name in names] \
            == ["native", "cae_d_gan", "cae_d_gan", "improved_bigan", "improved_bigan"]
    assert [default_protocol(name, "paper") for name in names] \
        == ["improved_bigan", "cae_d_gan", "cae_d_gan", "improved_bigan", "improved_bigan"]
    with pytest.raises(DatasetError, match="Unknown protocol 'paper'"):
        make_split("paper", collection, seed=0)


def test_cae_d_gan_four_nested_test_sets_share_the_same_normals(collection):
    split = make_split("cae_d_gan", collection, seed=0)
    labels = collection.labels
    assert list(split.test_sets) == ["25", "50", "75", "100"] and np.array_equal(split.test, split.test_sets["100"])
    assert len(split.train) + len(split.validation) == 50 and len(split.validation) == 5  # half of 100, 10% held out
    test_normals = [set(indices[labels[indices] == 0].tolist()) for indices in split.test_sets.values()]
    assert all(normals == test_normals[0] for normals in test_normals) and len(test_normals[0]) == 50
    training = set(split.train.tolist()) | set(split.validation.tolist())
    assert not training & set(split.test.tolist()) and not labels[list(training)].any()
    abnormal = [set(indices[labels[indices] == 1].tolist()) for indices in split.test_sets.values()]
    assert [len(a) for a in abnormal] == [8, 15, 23, 30]  # ceil(25% .. 100% of 30)
    assert abnormal[0] < abnormal[1] < abnormal[2] < abnormal[3] == set(np.flatnonzero(labels == 1).tolist())
    again, other = make_split("cae_d_gan", collection, seed=0), make_split("cae_d_gan", collection, seed=1)
    assert all(np.array_equal(again.test_sets[k], split.test_sets[k]) for k in split.test_sets)
    assert not np.array_equal(other.test_sets["25"], split.test_sets["25"])


@pytest.fixture
def native_collection():
    """MVTec-like: 10 train normals + 2 train abnormals (as chest train/PNEUMONIA), 4 test normals + 3 test defects."""
    labels = [0] * 10 + [1] * 2 + [0] * 4 + [1] * 3
    native = np.array(["train"] * 12 + ["test"] * 7, dtype=object)
    return labelled(labels, native_split=native, layout="mvtec_ad")


def test_native_protocol_tests_the_native_test_set_and_leaves_train_abnormals_out(native_collection):
    split = make_split("native", native_collection, seed=0)
    assert split.test.tolist() == list(range(12, 19))
    assert sorted(split.train.tolist() + split.validation.tolist()) == list(range(10)) and len(split.validation) == 1
    assert split.not_used == {10: NATIVE_TRAIN_ABNORMAL, 11: NATIVE_TRAIN_ABNORMAL}


def test_native_protocol_keeps_near_duplicates_of_test_images_and_reports_them(native_collection, tmp_path):
    """MVTec's good bottles look alike by design: the official split stays whole; only exact copies of test images leave."""
    groups, exact = np.arange(19), np.arange(19)
    groups[[0, 1, 2]] = groups[12]  # training normals 0 and 1 near test normal 12, 2 an exact copy of it
    exact[2] = exact[12]
    native_collection.groups, native_collection.exact_groups = groups, exact
    split = make_split("native", native_collection, seed=0)
    assert split.test.tolist() == list(range(12, 19))
    assert sorted(split.train.tolist() + split.validation.tolist()) == [0, 1, *range(3, 10)]
    assert split.not_used == {2: NATIVE_TRAIN_COPY, 10: NATIVE_TRAIN_ABNORMAL, 11: NATIVE_TRAIN_ABNORMAL}
    assert split.near_duplicates_of_test.tolist() == [0, 1]
    write_split(tmp_path / "split.json", native_collection, split)
    payload = json.loads((tmp_path / "split.json").read_text())
    assert [entry["path"] for entry in payload["near_duplicates_of_test"]] == ["img/000.png", "img/001.png"]
    assert split_from_json(native_collection, payload).near_duplicates_of_test.tolist() == [0, 1]
    assert "kept in training although near duplicates of test images (the dataset's own split stays whole): 2" \
        in describe(native_collection, split, "native")


def test_native_protocol_needs_a_native_split(collection):
    with pytest.raises(DatasetError, match="no train/test split of its own.*improved_bigan or cae_d_gan"):
        make_split("native", collection, seed=0)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_duplicate_groups_never_straddle_parts(native_collection, protocol):
    """Pairs of duplicates (0,1), (2,3), ..., one pair across native train and test, one normal+abnormal pair."""
    groups = [i // 2 for i in range(len(native_collection))]
    groups[11] = groups[12] = "train-test"  # a training abnormal duplicated as a test normal: a labelling conflict
    groups[18] = None  # not part of any group
    native_collection.groups = groups
    for seed in range(5):
        split = make_split(protocol, native_collection, seed)
        where = {i: name for name, members in parts(split).items() for i in members}
        assert len(where) == len(native_collection)  # every image in exactly one part
        for group in set(groups) - {None}:
            members = [i for i, g in enumerate(groups) if g == group]
            found = {where[i] for i in members}
            # native keeps its test set as published and leaves a training abnormal out
            assert len(found) == 1 or (protocol == "native" and found == {"test", "not used"}), (seed, group, where)
            if native_collection.labels[members].any():
                assert found <= {"test", "not used"}


def test_split_json_round_trip_with_test_sets_and_not_used(native_collection, tmp_path):
    native_collection.not_used = [{"path": "img/lung_opacity.png", "reason": "not one of the paper's classes"}]
    for protocol in ("cae_d_gan", "native"):
        split = make_split(protocol, native_collection, seed=0)
        write_split(tmp_path / "split.json", native_collection, split)
        payload = json.loads((tmp_path / "split.json").read_text())
        assert payload["protocol"] == protocol
        assert payload["not_used"][0] == native_collection.not_used[0]
        assert len(payload["not_used"]) == 1 + len(split.not_used)
        restored = split_from_json(native_collection, payload)
        assert restored.protocol == protocol and restored.not_used == split.not_used
        assert restored.test_sets.keys() == split.test_sets.keys()
        assert all(np.array_equal(restored.test_sets[k], split.test_sets[k]) for k in split.test_sets)


def test_paper_split_of_bare_labels_is_the_improved_bigan_split(collection):
    old, new = paper_split(collection.labels, seed=2), make_split("improved_bigan", collection, seed=2)
    assert all(np.array_equal(getattr(old, part), getattr(new, part)) for part in ("train", "validation", "test"))


def mvtec_run(tmp_path, *flags):
    """A tiny MVTec AD category (20 train/good, 30 test/good, 6 defects) split as a run of `flags` splits it:
    (resolved config, its split.json)."""
    bottle = tmp_path / "bottle"
    write_pngs(bottle / "train" / "good", 20)
    write_pngs(bottle / "test" / "good", 30)
    write_pngs(bottle / "test" / "broken_large", 6)
    args = run_experiments.parse_args(["--model", "cae", "--dataset", "mvtec_ad", "--category", "bottle",
                                       "--data-dir", str(tmp_path), *flags])
    config = experiment.run_config(args, "cae", 0, "bottle", named=True)
    collection = experiment.load_collection(args, config)
    write_split(tmp_path / "split.json", collection, experiment.protocol_split(collection, config))
    return config, json.loads((tmp_path / "split.json").read_text())


def good_in_test(payload):
    """The fraction of the good images in the test set, and the defects left out of it."""
    goods = [entry for part in ("train", "validation", "test") for entry in payload[part] if entry["label"] == 0]
    tested = [entry for entry in payload["test"] if entry["label"] == 0]
    return len(tested) / len(goods), 6 - sum(entry["label"] for entry in payload["test"])


def test_paper_profile_splits_mvtec_ad_80_20_as_the_improved_bigan_paper_did(tmp_path):
    """§IV-B applied its 80/20 split of the good images to MVTec AD too; MVTec's own split tests 30 of 50 here."""
    config, payload = mvtec_run(tmp_path, "--profile", "paper")
    assert config["protocol"] == payload["protocol"] == "improved_bigan"
    fraction, defects_not_tested = good_in_test(payload)
    assert 0.18 <= fraction <= 0.22 and defects_not_tested == 0


@pytest.mark.parametrize("flags", [("--profile", "quick"), ("--profile", "paper", "--protocol", "native")])
def test_quick_and_an_explicit_protocol_keep_mvtec_ads_own_split(tmp_path, flags):
    config, payload = mvtec_run(tmp_path, *flags)
    assert config["protocol"] == payload["protocol"] == "native"
    assert good_in_test(payload) == (30 / 50, 0)
