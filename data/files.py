"""Safe recursive listing of a dataset folder's candidate image files.

Archives downloaded from Kaggle or unzipped on a Mac carry OS metadata (``.DS_Store``,
``._x.jpg`` AppleDouble files, ``__MACOSX/``) and sometimes symlinks; the listing must be
deterministic, must never follow a symlink loop, and must account for every entry it does
not return, so nothing is lost silently.
"""

from __future__ import annotations

import collections
import os
import pathlib

# Suffixes (lower case) of the formats data.decode reads: tf.io for most, OpenCV for TIFF.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_MACOS_METADATA_FOLDER = "__MACOSX"


def list_image_files(folder: pathlib.Path) -> tuple[list[pathlib.Path], list[dict]]:
    """Image files under `folder` (recursively, sorted) and the entries left out, with a reason.

    Hidden files and folders (names starting with '.': .DS_Store, ._x.jpg AppleDouble files)
    and __MACOSX folders are left out, as are files whose suffix is not an image type. Symlinks
    to files and folders are followed; a folder reached twice (a symlink loop, or two links to
    one folder) is entered once, at its shallowest path. skipped = [{"path", "reason"}], one
    entry per left-out folder, not one per file inside it.
    """
    files, skipped = [], []
    visited = set()
    pending = collections.deque([pathlib.Path(folder)])
    while pending:
        current = pending.popleft()  # breadth first
        real = os.path.realpath(current)
        if real in visited:
            skipped.append({"path": str(current), "reason": f"folder already listed (it resolves to {real})"})
            continue
        visited.add(real)
        try:
            entries = sorted(current.iterdir())
        except OSError as error:
            skipped.append({"path": str(current), "reason": f"folder cannot be read ({error.strerror})"})
            continue
        for entry in entries:
            reason = _reason_to_leave_out(entry)
            if reason:
                skipped.append({"path": str(entry), "reason": reason})
            else:
                (pending if entry.is_dir() else files).append(entry)
    return sorted(files), sorted(skipped, key=lambda entry: entry["path"])


def _reason_to_leave_out(entry: pathlib.Path) -> str | None:
    if entry.name.startswith("."):
        return "hidden file or folder (OS metadata)"
    if entry.name == _MACOS_METADATA_FOLDER:
        return "macOS archive metadata folder"
    if not entry.exists():
        return "broken symlink"
    if entry.is_dir():
        return None
    if not entry.is_file():
        return "not a regular file"
    if entry.suffix.lower() not in IMAGE_EXTENSIONS:
        return f"not a supported image type ({entry.suffix.lower() or entry.name})"
    return None
