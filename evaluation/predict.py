"""`python run_experiments.py predict RUN_DIR|SAVED_MODEL IMAGES... [--out DIR] [--threshold T]`.

Scores image files and folders with a run's SavedModel alone (no training data, no project
layers). Files go through training's own scan and decoder (`data.decode.inspect_image`: JPEG,
PNG, 16-bit, TIFF, huge images decoded reduced; unusable files skipped with the reason), and the
decoded [0, 1] image goes to the `serving_float` signature, whose preprocessing and calibration
are evaluation's: a test image scores here what it scored in scores.csv. Writes predictions.csv
(path, score, is_anomalous, threshold, overlay), skipped.csv (path, reason) and one anomaly-map
overlay per image at the size the image was decoded at (its own size, unless decoded reduced).
TensorFlow is imported after the arguments are parsed, so `predict --help` is instant.
"""

import contextlib
import csv
import pathlib
import re
import sys

import checks

EXIT_USAGE = 2  # run_experiments' code for bad usage or data
# Overlay colours span anomaly-map values 0..OVERLAY_SCALE, one fixed scale so overlays of different images and calls
# compare: the map is the error divided by the normals' typical error there, so 1 is a normal pixel and 3 saturates.
OVERLAY_SCALE = 3.0
OVERLAY_NAME = re.compile(r"\d{5}_.*\.png")  # the overlays predict writes, and clears from --out on the next call


class PredictError(Exception):
    """Bad usage or data; str() is the message."""


def parse_args(argv):
    parser = checks.ArgumentParser(
        prog="run_experiments.py predict",
        description="Score images with a trained run: CSV of scores and decisions, anomaly-map overlays.",
    )
    parser.add_argument("model", help="a run directory (holding saved_model/) or a SavedModel folder")
    parser.add_argument("images", nargs="+", help="image files and folders (folders are searched recursively)")
    parser.add_argument("--out", default="predictions", help="folder for predictions.csv, skipped.csv and overlays/")
    parser.add_argument("--threshold", type=checks.finite_float,
                        help="decision threshold, a finite number (default: the one stored in the model)")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's own log lines and warnings")
    args = parser.parse_args(argv)
    problem = checks.writable_folder_problem(args.out)  # a file there, /proc, a read-only mount: before TensorFlow
    if problem:
        parser.error(problem)
    return args


def main(argv, quiet_tensorflow=None):
    """`quiet_tensorflow(verbose)`: the training command's context manager that hides TensorFlow's log lines."""
    args = parse_args(argv)
    with (quiet_tensorflow or contextlib.nullcontext)(args.verbose):
        import tensorflow  # noqa: F401, PLC0415 (loaded here, once the arguments are known to be good)
    try:
        predict(args.model, args.images, pathlib.Path(args.out), args.threshold)
    except PredictError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def saved_model_path(model):
    """A run directory's saved_model/, or the SavedModel folder itself."""
    model = pathlib.Path(model)
    for candidate in (model / "saved_model", model):
        if (candidate / "saved_model.pb").is_file():
            return candidate
    raise PredictError(f"No SavedModel at '{model}': give a run directory (holding saved_model/) or a SavedModel folder.")


def image_files(paths):
    """(files, skipped): named files as given, folders listed like a dataset folder (data.files)."""
    from data.files import list_image_files

    files, skipped = [], []
    for path in map(pathlib.Path, paths):
        if path.is_dir():
            found, left_out = list_image_files(path)
            files += found
            skipped += left_out
        elif path.is_file():
            files.append(path)
        else:
            raise PredictError(f"'{path}' is neither a file nor a folder.")
    return files, skipped


def predict(model, paths, out, threshold=None):
    """Score every usable image under `paths` with `model`; write predictions.csv, skipped.csv and overlays/."""
    serving_path = saved_model_path(model)
    files, skipped = image_files(paths)
    import cv2
    import tensorflow as tf

    from data.decode import UnusableImage, inspect_image
    from evaluation.plots import error_overlay

    serving = tf.saved_model.load(str(serving_path)).signatures["serving_float"]
    if threshold is None and "threshold" not in serving.structured_outputs:
        raise PredictError(f"{serving_path} was exported without its threshold (an older run); pass --threshold.")
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    for stale in (out / "overlays").iterdir():  # an earlier call's overlays (NNNNN_<name>.png); other files stay
        if OVERLAY_NAME.fullmatch(stale.name) and stale.is_file():
            stale.unlink()
    rows = []
    for path in files:
        try:
            _, image = inspect_image(path)
        except UnusableImage as error:
            skipped.append({"path": str(path), "reason": str(error)})
            continue
        except OSError as error:
            skipped.append({"path": str(path), "reason": f"cannot be read ({error.strerror})"})
            continue
        outputs = serving(images=tf.constant(image[None]))
        score = float(outputs["score"][0])
        limit = float(outputs["threshold"][0]) if threshold is None else threshold
        shown = shown_image(image, colour=outputs["reconstruction"].shape.rank == 4)
        anomaly_map = cv2.resize(outputs["anomaly_map"][0].numpy(), shown.shape[1::-1], interpolation=cv2.INTER_LINEAR)
        _, overlay = error_overlay(shown * 2.0 - 1.0, anomaly_map, OVERLAY_SCALE)
        overlay_path = out / "overlays" / f"{len(rows):05d}_{path.stem}.png"
        cv2.imwrite(str(overlay_path), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
        rows.append({"path": str(path), "score": f"{score:.8g}", "is_anomalous": int(score >= limit),
                     "threshold": f"{limit:.8g}", "overlay": str(overlay_path)})
    write_csv(out / "predictions.csv", ["path", "score", "is_anomalous", "threshold", "overlay"], rows)
    write_csv(out / "skipped.csv", ["path", "reason"], sorted(skipped, key=lambda entry: entry["path"]))
    if skipped:
        print(f"Skipped {len(skipped)} unusable file(s); they are listed with the reason in {out / 'skipped.csv'}.")
    if not rows:
        raise PredictError(f"No usable image among {', '.join(map(str, paths))}.")
    flagged = sum(row["is_anomalous"] for row in rows)
    print(f"Scored {len(rows)} image(s), {flagged} flagged as anomalous: {out / 'predictions.csv'}, "
          f"overlays in {out / 'overlays'}/.")
    return rows


def shown_image(image, colour):
    """A decoded [H, W, 1 or 3] image in [0, 1] in the channels the model reads, the overlay's background:
    RGB [H, W, 3] for a colour model (its reconstruction output is [N, S, S, 3]), grey [H, W] otherwise."""
    import cv2

    if colour:
        return image if image.shape[-1] == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.shape[-1] == 3 else image[..., 0]


def write_csv(path, columns, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
