"""The describe subcommand: what was found on disk and how the protocol splits it, before any training.

Meant to be read next to the source's published numbers: the layout and folder it was found
in, counts per class folder and per part, image sizes and modes, skipped files with their
reasons, images left out on purpose, and duplicates.
"""

from __future__ import annotations

import collections

from data.collection import ImageCollection, reason_lines
from data.protocols import Split

_MOST_COMMON = 5  # sizes and modes listed before "... and N more"
_KIND = {0: "normal", 1: "abnormal"}
_SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}


def describe(collection: ImageCollection, split: Split, protocol: str) -> str:
    """A plain-text report of `collection` and its `split` under `protocol`."""
    labels = collection.labels
    lines = [
        f"Layout: {collection.layout or 'unknown'}" + (f" at {collection.root}" if collection.root else ""),
        (
            f"Images: {len(collection):,} usable ({_n(labels == 0)} normal, {_n(labels == 1)} abnormal), "
            f"{len(collection.skipped):,} skipped, {len(collection.not_used):,} not used"
        ),
        "Per class folder:",
        *_class_counts(collection),
        *_protocol_lines(collection, split, protocol),
        *reason_lines("Not used on purpose", collection.not_used),
        *reason_lines("Skipped", collection.skipped),
        *_file_info_lines(collection.file_info, collection),  # set by the file checks, where run
        duplicates_line(collection.duplicates) or (
            "Duplicates: not checked (generated or in-memory data)" if collection.duplicates is None
            else "Duplicates: none found"
        ),
    ]
    if collection.mask_paths is not None:
        with_mask = sum(path is not None for path in collection.mask_paths)
        lines.append(f"Ground-truth masks: {with_mask:,} of {_n(labels == 1)} abnormal images")
    return "\n".join(lines)


def _n(mask) -> str:
    return f"{int(mask.sum()):,}"


def _class_counts(collection: ImageCollection) -> list[str]:
    """'  train/NORMAL   normal   1,266': one line per (native split, class) in order of appearance."""
    names = collection.classes or [_KIND[int(label)] for label in collection.labels]
    splits = collection.native_split if collection.native_split is not None else [None] * len(collection)
    counts = collections.Counter(
        (split, name, int(label)) for split, name, label in zip(splits, names, collection.labels)
    )
    ordered = sorted(counts.items(), key=lambda item: _SPLIT_ORDER.get(item[0][0], 0))  # train, val, test
    rows = [(f"{split}/{name}" if split else name, _KIND[label], count) for (split, name, label), count in ordered]
    width = max((len(folder) for folder, _, _ in rows), default=0)
    return [f"  {folder:<{width}}  {kind:<8}  {count:>7,}" for folder, kind, count in rows]


def _protocol_lines(collection: ImageCollection, split: Split, protocol: str) -> list[str]:
    labels = collection.labels
    lines = [
        (
            f"Protocol {protocol}: train {len(split.train):,} normals, validation {len(split.validation):,} "
            f"normals, test {_n(labels[split.test] == 0)} normal + {_n(labels[split.test] == 1)} abnormal"
        )
    ]
    for key, indices in split.test_sets.items():
        lines.append(
            f"  test set {key}% of abnormals: {_n(labels[indices] == 0)} normal + {_n(labels[indices] == 1)} abnormal"
        )
    if split.not_used:
        lines.append(f"  left out by the protocol: {len(split.not_used):,} (listed under 'not_used' in split.json)")
        lines += [f"    {reason}: {count:,}" for reason, count in collections.Counter(split.not_used.values()).items()]
    if len(split.near_duplicates_of_test):
        lines.append(
            f"  kept in training although near duplicates of test images (the dataset's own split stays whole): "
            f"{len(split.near_duplicates_of_test):,} (listed under 'near_duplicates_of_test' in split.json)"
        )
    return lines


def _file_info_lines(file_info: list[dict] | None, collection: ImageCollection) -> list[str]:
    """Image sizes and modes, from the decoded headers; in-memory images from the array itself."""
    if file_info is None:
        if collection.images is None:
            return ["Image sizes and modes: not recorded"]
        height, width = collection.images.shape[1:3]
        return [f"Image sizes: {width}x{height} (all, in memory); modes: 8-bit grayscale"]

    def known(value):
        return "?" if value is None else value

    sizes = collections.Counter(f"{known(info.get('width'))}x{known(info.get('height'))}" for info in file_info)
    modes = collections.Counter(
        f"{known(info.get('format'))} {known(info.get('bit_depth'))}-bit {known(info.get('channels'))}-channel"
        for info in file_info
    )
    return [f"Image sizes: {_most_common(sizes)}", f"Image modes: {_most_common(modes)}"]


def _most_common(counter: collections.Counter) -> str:
    shown = ", ".join(f"{value} ({count:,})" for value, count in counter.most_common(_MOST_COMMON))
    rest = len(counter) - _MOST_COMMON
    return shown + (f" and {rest} more" if rest > 0 else "")


def duplicates_line(duplicates: dict | None) -> str | None:
    """Counts from data.duplicates (exact = same decoded pixels, near = perceptual hash) as one line;
    None when none were found or none were looked for. The run log prints the same line."""
    if not duplicates or not (duplicates.get("exact_images") or duplicates.get("near_images")):
        return None
    return (
        f"Duplicates: {duplicates['exact_groups']} exact groups ({duplicates['exact_images']} images), "
        f"{duplicates['near_groups']} near groups ({duplicates['near_images']} images), "
        f"{duplicates['mixed_label_groups']} groups mixing normal and abnormal, "
        f"{duplicates['dropped_conflicting']} exact copies labelled both ways dropped; each group stays in one split"
        + (f" ({across} near pairs fall in different groups: a group keeps only images near its first)"
           if (across := duplicates.get("near_pairs_across_groups")) else "")
    )
