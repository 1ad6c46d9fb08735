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

import dataclasses
import hashlib

import cv2
import numpy as np
from scipy.sparse import csr_matrix

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


@dataclasses.dataclass
class Duplicates:
    groups: np.ndarray  # int64 [N kept]: duplicate-group id per kept image, 0..G-1
    exact: np.ndarray  # int64 [N kept]: exact-copy group id per kept image (same decoded pixels)
    dropped: dict[int, int]  # index dropped -> index of a copy with the other label
    counts: dict  # for split.json and --describe


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
    near_pairs = _near_pairs(hashes[first[order]])
    leaders = _leader_groups(len(order), near_pairs)  # per exact group
    groups = leaders[exact]

    exact_sizes = np.bincount(exact)[exact]
    group_sizes = np.bincount(groups)[groups]
    near = group_sizes > exact_sizes  # in a group that exact copies alone do not explain
    counts = {
        "exact_groups": len(np.unique(exact[exact_sizes > 1])),
        "exact_images": int(np.sum(exact_sizes > 1)),
        "near_groups": len(np.unique(groups[near])),
        "near_images": int(np.sum(near)),
        "near_pairs_across_groups": int(np.sum(leaders[near_pairs[:, 0]] != leaders[near_pairs[:, 1]])),
        "mixed_label_groups": _count_mixed_label_groups(groups, labels),
        "dropped_conflicting": len(dropped),
        "near_threshold_bits": NEAR_DUPLICATE_BITS,
    }
    return Duplicates(groups=groups, exact=exact, dropped=dropped, counts=counts)


def _conflicting_copies(exact: np.ndarray, labels: np.ndarray) -> dict[int, int]:
    """Every member of an exact group holding both labels -> the first member with the other label."""
    abnormal = labels != 0
    has_normal = np.bincount(exact, weights=~abnormal) > 0
    has_abnormal = np.bincount(exact, weights=abnormal) > 0
    dropped = {}
    for index in np.flatnonzero((has_normal & has_abnormal)[exact]):
        others = np.flatnonzero((exact == exact[index]) & (abnormal != abnormal[index]))
        dropped[int(index)] = int(others[0])
    return dropped


def _leader_groups(count: int, pairs: np.ndarray) -> np.ndarray:
    """Group id per item: in order, each item not yet grouped starts a group with its ungrouped near items.

    `pairs` are (i, j) with i < j. Every member is near its group's first item, so a group spans
    at most twice the threshold, where connected components chain without bound.
    """
    near = csr_matrix((np.ones(len(pairs), bool), (pairs[:, 0], pairs[:, 1])), shape=(count, count))
    groups = np.full(count, -1, np.int64)
    leaders = 0
    for i in range(count):
        if groups[i] < 0:  # items before i are all grouped: only later ones can join
            later = near.indices[near.indptr[i]:near.indptr[i + 1]]
            groups[later[groups[later] < 0]] = groups[i] = leaders
            leaders += 1
    return groups


def _near_pairs(hashes: np.ndarray) -> np.ndarray:
    """[P, 2] index pairs i < j whose hashes (uint64 [N, words]) differ by at most NEAR_DUPLICATE_BITS bits.

    Every pair, in row blocks against the rows from the block on: quadratic, but a vectorised
    popcount takes about 2 s for 20k images on one CPU core (the scan itself takes far longer).
    """
    words = [np.ascontiguousarray(column) for column in hashes.T]
    pairs = [np.empty((0, 2), np.int64)]
    for start in range(0, len(hashes), _BLOCK):
        distances = sum(  # uint16: four uint8 popcounts can reach 256
            (np.bitwise_count(word[start:start + _BLOCK, None] ^ word[None, start:]) for word in words), np.uint16(0)
        )
        i, j = np.nonzero(distances <= NEAR_DUPLICATE_BITS)
        pairs.append(np.stack([i, j], axis=1)[j > i] + start)
    return np.concatenate(pairs)


def _count_mixed_label_groups(groups: np.ndarray, labels: np.ndarray) -> int:
    group_label_pairs = np.unique(np.stack([groups, labels], axis=1), axis=0)
    return int(np.sum(np.bincount(group_label_pairs[:, 0]) > 1))
