"""The download subcommand: fetch a dataset from its public, licence-respecting source into the data folder.

- plant_village: TensorFlow Datasets (its progress bars, its registered checksums).
- mvtec_ad: the official per-category archives from MVTec's server. MVTec publishes no
  checksums, so the archive's SHA-256 is printed for the record and the archive must extract
  completely (every member read) before it counts as downloaded.
- brain_mri, chest_xray_1/2/3: Kaggle, through the `kaggle` package when it is installed and
  the user has credentials; otherwise a message with the page and the expected layout.
"""

from __future__ import annotations

import hashlib
import importlib.util
import lzma
import os
import pathlib
import sys
import tarfile
import urllib.error
import urllib.request

from data import layouts, mvtec, plant_village
from data.collection import DatasetError

_MVTEC_SHARE = "https://www.mydrive.ch/shares/38536/3830184030e49fe74747669442f0f282/download"
# The official archive links (linked from the MVTec AD download page), one per category.
MVTEC_URLS = {
    category: f"{_MVTEC_SHARE}/{file_id}/{category}.tar.xz"
    for category, file_id in {
        "bottle": "420937370-1629951468", "cable": "420937413-1629951498", "capsule": "420937454-1629951595",
        "carpet": "420937484-1629951672", "grid": "420937487-1629951814", "hazelnut": "420937545-1629951845",
        "leather": "420937607-1629951964", "metal_nut": "420937637-1629952063", "screw": "420938130-1629953152",
        "tile": "420938133-1629953189", "toothbrush": "420938134-1629953256", "transistor": "420938166-1629953277",
        "wood": "420938383-1629953354", "zipper": "420938385-1629953449",
    }.items()
}
MVTEC_URLS["pill"] = (
    "https://www.mydrive.ch/shares/43421/11a215a5749fcfb75e331ddd5f8e43ee/download/420938129-1629953099/pill.tar.xz"
)
_CHUNK = 1 << 20
_TIMEOUT_S = 60


def download(dataset: str, data_dir: str | None, category: str | None = None) -> str:
    """Fetch `dataset` (and `category` for MVTec AD: a name or 'all'); returns where it is now."""
    if dataset == "phantom":
        return "phantom is generated on the fly: nothing to download."
    if dataset == "folder":
        raise DatasetError("--dataset folder reads your own --normal-dir and --abnormal-dir: nothing to download.")
    if dataset == "plant_village":
        builder = plant_village.tfds_builder(data_dir)
        plant_village.prepare_tfds(builder)
        return f"TFDS plant_village is ready in {builder.data_dir}; train on it with --source tfds."
    target = target_dir(dataset, data_dir)
    if dataset == "mvtec_ad":
        return _download_mvtec(category, target)
    if dataset in layouts.KAGGLE_DATASETS:
        return _download_kaggle(dataset, target)
    raise DatasetError(f"Unknown dataset '{dataset}'; nothing to download.")


def target_dir(dataset: str, data_dir: str | None) -> pathlib.Path:
    """Where a download goes: --data-dir, else $BIGAN_DATA_DIR/<dataset>, else ./datasets/<dataset>."""
    if data_dir:
        return pathlib.Path(data_dir)
    if os.environ.get("BIGAN_DATA_DIR"):
        return pathlib.Path(os.environ["BIGAN_DATA_DIR"]) / dataset
    return pathlib.Path.cwd() / "datasets" / dataset


def _download_mvtec(category: str | None, target: pathlib.Path) -> str:
    if category is None:
        raise DatasetError("download for mvtec_ad needs --category NAME or --category all (all is 4.9 GB).")
    categories = list(mvtec.CATEGORIES) if category == "all" else [category.lower()]
    unknown = [name for name in categories if name not in MVTEC_URLS]
    if unknown:
        raise DatasetError(f"MVTec AD has no category '{category}'; choose one of: {', '.join(mvtec.CATEGORIES)} or all.")
    print(f"MVTec AD is licensed CC BY-NC-SA 4.0 (non-commercial use): {mvtec.PAGE}", file=sys.stderr)
    target.mkdir(parents=True, exist_ok=True)
    for name in categories:
        if (target / name / "train" / "good").is_dir():
            print(f"{name}: already in {target / name}", file=sys.stderr)
            continue
        archive = target / f"{name}.tar.xz"
        digest = fetch(MVTEC_URLS[name], archive)
        print(f"{name}: sha256 {digest}", file=sys.stderr)
        extract(archive, target)
        archive.unlink()
        if not (target / name / "train" / "good").is_dir():
            raise DatasetError(f"The {name} archive extracted into '{target}' without {name}/train/good/; it is not "
                               f"the MVTec AD layout. Download it by hand from {mvtec.PAGE}.")
    return f"MVTec AD {', '.join(categories)} ready in {target}."


def fetch(url: str, path: pathlib.Path) -> str:
    """Stream `url` to `path` with progress on stderr; returns the file's SHA-256 (hex)."""
    partial = path.with_name(path.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                progress = f"{done / total:.0%} of {total / 1e6:.0f} MB" if total else f"{done / 1e6:.0f} MB"
                print(f"\r{path.name}: {progress}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
    except (urllib.error.URLError, OSError) as error:
        partial.unlink(missing_ok=True)
        raise DatasetError(
            f"Could not download {url} ({error}); check the internet connection, or download it by hand and "
            f"extract it into '{path.parent}'."
        ) from error
    partial.replace(path)
    return digest.hexdigest()


def extract(archive: pathlib.Path, target: pathlib.Path) -> None:
    """Extract every member (this reads the whole archive, so a truncated download fails here)."""
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")  # "data": no absolute paths, links out or device files
    except (tarfile.TarError, EOFError, lzma.LZMAError, OSError) as error:
        raise DatasetError(
            f"The archive '{archive}' is incomplete or damaged ({error}); delete it and run download again."
        ) from error


def _download_kaggle(dataset: str, target: pathlib.Path) -> str:
    slug = layouts.KAGGLE_DATASETS[dataset]
    by_hand = (
        f"Download {layouts.kaggle_url(slug)} by hand, unzip it into '{target}' (or pass --data-dir). "
        + layouts.expected_layouts(dataset)
    )
    if importlib.util.find_spec("kaggle") is None:
        raise DatasetError(f"download for {dataset} uses the kaggle package (pip install kaggle). {by_hand}")
    if not _has_kaggle_credentials():
        raise DatasetError(
            "download needs Kaggle credentials: ~/.kaggle/kaggle.json or KAGGLE_USERNAME and KAGGLE_KEY "
            f"(kaggle.com > Settings > API > Create New Token). {by_hand}"
        )
    try:  # importing kaggle already checks the credentials, hence inside the try
        from kaggle.api.kaggle_api_extended import KaggleApi

        api = KaggleApi()
        api.authenticate()
        target.mkdir(parents=True, exist_ok=True)
        api.dataset_download_files(slug, path=str(target), unzip=True, quiet=False)
    except Exception as error:  # the kaggle client raises its own, HTTP and OS errors: all mean the download failed
        raise DatasetError(f"Kaggle download of {slug} failed ({type(error).__name__}: {error}). {by_hand}") from error
    return f"{dataset} ready in {target}."


def _has_kaggle_credentials() -> bool:
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return True
    config_dir = pathlib.Path(os.environ.get("KAGGLE_CONFIG_DIR") or pathlib.Path.home() / ".kaggle")
    return (config_dir / "kaggle.json").is_file()
