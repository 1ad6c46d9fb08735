"""Exact and near-duplicate detection: groups that keep copies in one split, conflicting copies dropped."""

import pathlib

import cv2
import numpy as np
import pytest

from data.describe import duplicates_line
from data.duplicates import NEAR_DUPLICATE_BITS, _near_groups, _near_pair_blocks, find_duplicates
from data.progress import PROGRESS_MINIMUM, Progress
from data.protocols import paper_split, split_to_json
from data.sources import load_dataset


def texture(seed, size=96):
    """A smooth random grey image: distinct seeds give unrelated images."""
    smooth = cv2.GaussianBlur(np.random.default_rng(seed).normal(size=(size, size)), (0, 0), 4)
    return cv2.normalize(smooth, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("copies")
    normal, abnormal = root / "normal", root / "abnormal"
    normal.mkdir()
    abnormal.mkdir()
    files = {
        normal / "a.png": texture(1),
        normal / "a_copy.bmp": texture(1),  # same pixels, another format: an exact duplicate
        normal / "b.png": texture(2),
        normal / "b_brighter.png": cv2.add(texture(2), 12),  # near duplicates of b
        normal / "c.png": texture(3),
        normal / "d.png": texture(4),
        normal / "e.png": texture(5),
        normal / "g.png": texture(7),
        abnormal / "g_again.png": texture(7),  # the same image labelled both ways: dropped
        normal / "h.png": texture(8),
        abnormal / "f.png": texture(6),
    }
    for path, image in files.items():
        assert cv2.imwrite(str(path), image)
    assert cv2.imwrite(str(normal / "b_q60.jpg"), texture(2), [cv2.IMWRITE_JPEG_QUALITY, 60])
    half = cv2.resize(texture(8), None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    assert cv2.imwrite(str(abnormal / "h_half_size.jpg"), half, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return load_dataset("folder", normal_dir=str(normal), abnormal_dir=str(abnormal))


def group_of(collection, name):
    names = [pathlib.Path(path).name for path in collection.ids]
    return collection.groups[names.index(name)]


def test_exact_and_near_copies_share_a_group(collection):
    assert group_of(collection, "a.png") == group_of(collection, "a_copy.bmp")
    assert group_of(collection, "b.png") == group_of(collection, "b_q60.jpg") == group_of(collection, "b_brighter.png")
    assert group_of(collection, "h.png") == group_of(collection, "h_half_size.jpg")  # across labels: kept


def test_distinct_images_are_not_grouped(collection):
    distinct = ["a.png", "b.png", "c.png", "d.png", "e.png", "f.png", "h.png"]
    assert len({group_of(collection, name) for name in distinct}) == len(distinct)
    assert len(collection.groups) == len(collection.ids) == len(collection.labels)


def test_copies_labelled_both_ways_are_dropped_and_reported(collection):
    names = [pathlib.Path(path).name for path in collection.ids]
    assert "g.png" not in names and "g_again.png" not in names
    reasons = {pathlib.Path(entry["path"]).name: entry["reason"] for entry in collection.skipped}
    prefix = "exact duplicate present as both normal and abnormal"
    assert reasons["g.png"].startswith(prefix) and reasons["g.png"].endswith("abnormal/g_again.png)")
    assert reasons["g_again.png"].startswith(prefix) and reasons["g_again.png"].endswith("normal/g.png)")


def test_counts_reach_split_json(collection):
    expected = {
        "exact_groups": 1, "exact_images": 2, "near_groups": 2, "near_images": 5,
        "near_pairs_across_groups": 0, "mixed_label_groups": 1, "dropped_conflicting": 2,
        "near_threshold_bits": NEAR_DUPLICATE_BITS,
    }
    assert collection.duplicates == expected
    split = paper_split(collection.labels, seed=0)
    assert split_to_json(collection, split)["duplicates"] == expected


def flipped(hash_words, bits):
    """A copy of a uint64 [4] hash with the given bit positions (0..255) flipped."""
    flat = np.unpackbits(hash_words.view(np.uint8))
    flat[list(bits)] ^= 1
    return np.packbits(flat).view(np.uint64)


def fingerprints(hashes):
    """Fingerprints of distinct images (distinct digests) with the given hashes."""
    return [(bytes([i]), phash) for i, phash in enumerate(hashes)]


def test_threshold_is_inclusive():
    zero = np.zeros(4, np.uint64)
    at_threshold = flipped(zero, range(NEAR_DUPLICATE_BITS))
    beyond = flipped(zero, range(200, 200 + NEAR_DUPLICATE_BITS + 2))
    groups = find_duplicates(fingerprints([zero, at_threshold, beyond]), np.zeros(3)).groups.tolist()
    assert groups[0] == groups[1] != groups[2]


def test_a_chain_of_near_images_is_cut_where_it_leaves_its_first_image():
    """Each image 16 bits from the next, 32 (beyond the threshold) from the one after: groups of two, not one chain."""
    chain = [flipped(np.zeros(4, np.uint64), range(16 * k)) for k in range(6)]
    result = find_duplicates(fingerprints(chain), np.zeros(6))
    assert result.groups.tolist() == [0, 0, 1, 1, 2, 2]
    assert result.counts["near_pairs_across_groups"] == 2  # (1, 2) and (3, 4): near, reported, not grouped
    assert "(2 near pairs fall in different groups" in duplicates_line(result.counts)


def test_blocked_search_finds_exactly_the_brute_force_pairs():
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, (300, 4), dtype=np.int64).astype(np.uint64)
    for i, j in [(3, 250), (70, 71), (64, 128), (5, 299)]:  # pairs within and across row blocks
        hashes[j] = flipped(hashes[i], rng.choice(256, rng.integers(0, NEAR_DUPLICATE_BITS + 1), replace=False))
    distances = np.unpackbits(hashes[:, None, :].view(np.uint8) ^ hashes[None, :, :].view(np.uint8), axis=-1).sum(-1)
    expected = {(i, j) for i, j in zip(*np.nonzero(distances <= NEAR_DUPLICATE_BITS)) if i < j}
    found = [(int(i), int(j)) for *_, rows, later in _near_pair_blocks(hashes) for i, j in zip(rows, later)]
    assert len(found) == len(set(found)) and set(found) == expected
    assert {(3, 250), (70, 71), (64, 128), (5, 299)} <= expected


def test_grouping_as_the_pairs_come_matches_grouping_all_pairs_at_once():
    """The leader groups and the count of near pairs across groups, streamed block by block (memory linear in
    N), equal those computed from the whole list of pairs, on clusters that overlap across row blocks."""
    rng = np.random.default_rng(1)
    centres = rng.integers(0, 2**63, (12, 4), dtype=np.int64).astype(np.uint64)
    hashes = np.stack([flipped(centres[rng.integers(12)], rng.choice(256, rng.integers(0, 20), replace=False))
                       for _ in range(400)])
    distances = np.unpackbits(hashes[:, None, :].view(np.uint8) ^ hashes[None, :, :].view(np.uint8), axis=-1).sum(-1)
    near = np.triu(distances <= NEAR_DUPLICATE_BITS, 1)
    expected = np.full(len(hashes), -1)
    leaders = 0
    for i in range(len(hashes)):
        if expected[i] < 0:
            later = np.flatnonzero(near[i])
            expected[later[expected[later] < 0]] = expected[i] = leaders
            leaders += 1
    i, j = np.nonzero(near)
    groups, across = _near_groups(hashes)
    assert groups.tolist() == expected.tolist()
    assert across == int(np.sum(expected[i] != expected[j])) > 0


def test_no_images_and_in_memory_collections():
    empty = find_duplicates([], [])
    assert empty.groups.shape == (0,) and empty.dropped == {} and empty.counts["exact_groups"] == 0
    phantom = load_dataset("phantom", phantom_normals=3, phantom_abnormals=2, phantom_size=32)
    assert phantom.groups is None and phantom.duplicates is None


def test_progress_prints_only_for_large_sets_and_one_closing_line_in_a_log(capsys):
    """Issue 21.16: no progress while reading files or searching duplicates (minutes on large sets). In a log
    (not a terminal) a long step prints a count every LOG_EVERY seconds and one closing line; small sets nothing."""
    small = Progress(PROGRESS_MINIMUM - 1, "Reading and checking", "files", minimum=PROGRESS_MINIMUM)
    small.add(PROGRESS_MINIMUM - 1)
    small.close()
    assert capsys.readouterr().out == ""
    large = Progress(PROGRESS_MINIMUM, "Reading and checking", "files", minimum=PROGRESS_MINIMUM)
    for _ in range(PROGRESS_MINIMUM):
        large.add()
    large.close()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Reading and checking: {PROGRESS_MINIMUM:,} files in ")
