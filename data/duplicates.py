"""Exact and near-duplicate images, so that copies never straddle a train/test split.

Public datasets hold copies: the same scan saved twice, re-encoded, resized or brightened. A
copy in train and another in test inflates every metric. Exact duplicates have the same decoded
pixels; near-duplicates have perceptual hashes (pHash, 256 bits) within NEAR_DUPLICATE_BITS
bits. Both join one group that the splits keep in one part. A near group is a leader's: every
member is within NEAR_DUPLICATE_BITS of the group's first image, so a chain of similar images
(A near B, B near C, ...) cannot grow one group across images as different as random pairs;
exact copies always share a group. An exact copy labelled both normal and abnormal cannot be
right either way: all its copies are dropped and reported.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import os

import cv2
import numpy as np

from data.progress import PROGRESS_MINIMUM, Progress

# pHash of HASH_SIDE x HASH_SIDE DCT frequencies: 256 bits. 64 bits (8x8, the common choice)
# cannot tell apart slices that all look alike: 1 in 6000 pairs of distinct phantom slices came
# within the 6 bits that re-encoded copies need. Measured with 256 bits: copies
# re-encoded as JPEG q50, halved in size, brightened, contrast-scaled, gamma-corrected or blurred
# differ by at most 20 bits (99% by at most 14); of 4.5 million pairs of distinct phantom slices
# none comes within 28 bits. Crops, shifts and flips are not near-duplicates by this measure.
HASH_SIDE = 16
NEAR_DUPLICATE_BITS = 24
_HASH_WORDS = HASH_SIDE**2 // 64  # uint64 words per hash
_BLOCK = 64  # rows of the distance matrix computed at once: 10 MB temporaries at 20k images, cache-friendly
_THREADS = min(2, os.cpu_count() or 1)


@dataclasses.dataclass
class Duplicates:
    groups: np.ndarray  # int64 [N kept]: duplicate-group id per kept image, 0..G-1
    exact: np.ndarray  # int64 [N kept]: exact-copy group id per kept image (same decoded pixels)
    dropped: dict[int, int]  # index dropped -> index of a copy with the other label
    counts: dict  # for split.json and describe


def fingerprint(image: np.ndarray) -> tuple[bytes, np.ndarray]:
    """(digest of the decoded pixels, 256-bit pHash as uint64 [4]) of a float [H, W, C] image in [0, 1]."""
    image = np.ascontiguousarray(image, np.float32)
    digest = hashlib.sha256(str(image.shape).encode() + image.tobytes()).digest()  # SHA-NI: fastest here
    return digest, perceptual_hash(image)


def perceptual_hash(image: np.ndarray) -> np.ndarray:
    """pHash: the lowest 16x16 DCT frequencies of a 64x64 grey thumbnail above their median, as uint64 [4].

    Insensitive to size, brightness and contrast; robust to re-encoding and mild blur.
    """
    image = np.asarray(image, np.float32)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.shape[-1] == 3 else image[..., 0]
    thumbnail = cv2.resize(grey, (4 * HASH_SIDE,) * 2, interpolation=cv2.INTER_AREA)
    low_frequencies = cv2.dct(thumbnail)[:HASH_SIDE, :HASH_SIDE]
    return np.packbits(low_frequencies > np.median(low_frequencies)).view(np.uint64)


def find_duplicates(fingerprints: list[tuple[bytes, np.ndarray]], labels) -> Duplicates:
    """Group exact and near-duplicates by their `fingerprint`s; drop exact copies that carry both labels."""
    labels = np.asarray(labels, np.int64)
    hashes = np.array([phash for _, phash in fingerprints], np.uint64).reshape(-1, _HASH_WORDS)
    _, exact = np.unique(np.array([digest for digest, _ in fingerprints], dtype=object), return_inverse=True)
    dropped = _conflicting_copies(exact, labels)
    kept = np.setdiff1d(np.arange(len(labels)), list(dropped))
    exact, hashes, labels = exact[kept], hashes[kept], labels[kept]

    # Exact groups renumbered in file order; copies share pixels, hence hashes, so near pairs are
    # looked for between each exact group's first image only.
    _, first, exact = np.unique(exact, return_index=True, return_inverse=True)
    order = np.argsort(first)
    exact = np.argsort(order)[exact]
    leaders, across = _near_groups(hashes[first[order]])  # per exact group
    groups = leaders[exact]

    exact_sizes = np.bincount(exact)[exact]
    group_sizes = np.bincount(groups)[groups]
    near = group_sizes > exact_sizes  # in a group that exact copies alone do not explain
    counts = {
        "exact_groups": len(np.unique(exact[exact_sizes > 1])),
        "exact_images": int(np.sum(exact_sizes > 1)),
        "near_groups": len(np.unique(groups[near])),
        "near_images": int(np.sum(near)),
        "near_pairs_across_groups": across,
        "mixed_label_groups": _count_mixed_label_groups(groups, labels),
        "dropped_conflicting": len(dropped),
        "near_threshold_bits": NEAR_DUPLICATE_BITS,
    }
    return Duplicates(groups=groups, exact=exact, dropped=dropped, counts=counts)


def _conflicting_copies(exact: np.ndarray, labels: np.ndarray) -> dict[int, int]:
    """Every member of an exact group holding both labels -> the first member with the other label.

    Linear: the first member of each group with each label is found once (it was looked for per
    member, which grew with the square of the copies: a folder linked into its sibling copies all).
    """
    abnormal = (labels != 0).astype(np.int64)
    first = np.full((2, exact.max() + 1 if len(exact) else 0), len(exact), np.int64)
    np.minimum.at(first, (abnormal, exact), np.arange(len(exact)))
    both = (first < len(exact)).all(axis=0)
    return {int(i): int(first[1 - abnormal[i], exact[i]]) for i in np.flatnonzero(both[exact])}


def _near_groups(hashes: np.ndarray) -> tuple[np.ndarray, int]:
    """(group id per item, near pairs that fall in different groups) for hashes uint64 [N, words].

    Leader groups: in order, each item not yet grouped starts a group with its ungrouped near items
    (within NEAR_DUPLICATE_BITS), so every member is near its group's first item and a group spans at
    most twice the threshold, where connected components chain without bound. The pairs come block
    by block (_near_pair_blocks) and are grouped as they come, so memory stays linear in N however
    many pairs there are (a set of near-identical video frames has N²/2 of them). A pair (i, j), i < j,
    is counted across groups once row i is done if j is in another group or in none yet: only j's
    leader can group j later, and i's leader, at most i, has already taken every member it will.
    """
    count = len(hashes)
    groups = np.full(count, -1, np.int64)
    leaders = across = 0
    progress = Progress(count, "Duplicate search", "images", minimum=PROGRESS_MINIMUM)
    for start, stop, rows, later in _near_pair_blocks(hashes):
        bounds = np.searchsorted(rows, np.arange(start, stop + 1))
        for row in range(start, stop):
            near = later[bounds[row - start]:bounds[row - start + 1]]
            if groups[row] < 0:  # items before `row` are all grouped: only later ones can join
                groups[near[groups[near] < 0]] = groups[row] = leaders
                leaders += 1
            if len(near):
                across += int(np.count_nonzero(groups[near] != groups[row]))
        progress.add(stop - start)
    progress.close()
    return groups, across


def _near_pair_blocks(hashes: np.ndarray):
    """(start, stop, i, j) per block of _BLOCK rows: the pairs i < j, i in start..stop-1, whose hashes differ by
    at most NEAR_DUPLICATE_BITS bits, sorted by i.

    Every pair is compared: quadratic time (a radius of 24 of 256 bits leaves no exact index much
    faster than that; about 2 s for 20k images on one core, against about 25 s for the scan), linear
    memory. Blocks are computed in two threads ahead of their use (numpy releases the GIL).
    """
    words = [np.ascontiguousarray(column) for column in hashes.T]

    def block(start):
        distances = sum(  # uint16: four uint8 popcounts can reach 256
            (np.bitwise_count(word[start:start + _BLOCK, None] ^ word[None, start:]) for word in words), np.uint16(0)
        )
        i, j = np.nonzero(distances <= NEAR_DUPLICATE_BITS)
        keep = j > i
        return start, min(start + _BLOCK, len(hashes)), i[keep] + start, j[keep] + start

    with concurrent.futures.ThreadPoolExecutor(_THREADS) as pool:
        pending = collections.deque()
        for start in range(0, len(hashes), _BLOCK):
            pending.append(pool.submit(block, start))
            if len(pending) > 2 * _THREADS:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _count_mixed_label_groups(groups: np.ndarray, labels: np.ndarray) -> int:
    group_label_pairs = np.unique(np.stack([groups, labels], axis=1), axis=0)
    return int(np.sum(np.bincount(group_label_pairs[:, 0]) > 1))
