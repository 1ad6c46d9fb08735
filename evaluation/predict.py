"""`python run_experiments.py predict RUN_DIR|SAVED_MODEL IMAGES... [--out DIR] [--threshold T] [--no-overlays] [--save-maps]`.

Scores image files and folders with a run's SavedModel alone (no training data, no project
layers). Files go through training's own scan and decoder (`data.decode.inspect_image`: JPEG,
PNG, 16-bit, TIFF, huge images decoded reduced; unusable files skipped with the reason), and the
decoded [0, 1] image goes to the `serving_float` signature, whose preprocessing and calibration
are evaluation's: a test image scores here what it scored in scores.csv. Writes predictions.csv
(path, score, is_anomalous, threshold, overlay[, map]), skipped.csv (path, reason), one anomaly-map
overlay per image at the size the image was decoded at (its own size, unless decoded reduced; not
with --no-overlays) and, with --save-maps, each raw anomaly map as .npy. Files are decoded in a
thread pool and resized to the model's input first (checked to score the same), so images of any
mix of sizes are scored in batches. TensorFlow is imported after the arguments are parsed, so `predict --help` is instant.
"""

import collections
import concurrent.futures
import contextlib
import csv
import functools
import os
import pathlib
import re
import sys

import numpy as np

import checks

EXIT_USAGE = 2  # run_experiments' code for bad usage or data
# Overlay colours span anomaly-map values 0..OVERLAY_SCALE, one fixed scale so overlays of different images and calls
# compare: the map is the error divided by the normals' typical error there, so 1 is a normal pixel and 3 saturates.
OVERLAY_SCALE = 3.0
OVERLAY_NAME = re.compile(r"\d{5}_.*\.png")  # the overlays predict writes, and clears from --out on the next call
OUTPUTS = ("predictions.csv", "skipped.csv", "overlays", "maps")  # what predict writes into --out
BATCH_SIZE = 64  # images per call of the model
THREADS = min(8, 2 * (os.cpu_count() or 1))  # file reading and decoding (tf.io and OpenCV release the GIL)
PREFETCH = 4 * BATCH_SIZE  # files decoded ahead of the model, at most
GREY_WEIGHTS = (0.2989, 0.5870, 0.1140)  # tf.image.rgb_to_grayscale's (ITU-R BT.601)


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
    parser.add_argument("--no-overlays", dest="overlays", action="store_false",
                        help="write no overlays/ (faster; predictions.csv's overlay column stays empty)")
    parser.add_argument("--save-maps", action="store_true",
                        help="also write each raw anomaly map (float32 [S, S] at the model's input size) as "
                             "maps/NNNNN_<name>.npy, named in predictions.csv's map column")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's own log lines and warnings")
    args = parser.parse_args(argv)
    problem = checks.writable_folder_problem(args.out)  # a file there, /proc, a read-only mount: before TensorFlow
    try:
        saved_model_path(args.model)
    except PredictError as error:
        problem = problem or str(error)
    if problem:
        parser.error(problem)
    return args


def main(argv, quiet_tensorflow=None):
    """`quiet_tensorflow(verbose)`: the training command's context manager that hides TensorFlow's log lines."""
    args = parse_args(argv)
    with (quiet_tensorflow or contextlib.nullcontext)(args.verbose):
        import tensorflow  # noqa: F401, PLC0415 (loaded here, once the arguments are known to be good)
    try:
        predict(args.model, args.images, pathlib.Path(args.out), args.threshold, args.overlays, args.save_maps)
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


def image_files(paths, out=None):
    """(files, skipped): named files as given, folders listed like a dataset folder (data.files), each file once
    (a path named twice, or inside a folder also named, is scored once), and none of predict's own outputs in `out`
    (OUTPUTS): an earlier call's are not images to score."""
    from data.files import list_image_files

    found_files, skipped = [], []
    for path in map(pathlib.Path, paths):
        if path.is_dir():
            found, left_out = list_image_files(path)
            found_files += found
            skipped += left_out
        elif path.is_file():
            found_files.append(path)
        else:
            raise PredictError(f"'{path}' is neither a file nor a folder.")
    outputs = [(pathlib.Path(out) / name).resolve() for name in OUTPUTS] if out is not None else []

    def ours(path):
        return any(pathlib.Path(path).resolve().is_relative_to(folder) for folder in outputs)

    files, seen = [], set()
    for path in found_files:
        if path.resolve() not in seen and not ours(path):
            seen.add(path.resolve())
            files.append(path)
    return files, [entry for entry in skipped if not ours(entry["path"])]


def predict(model, paths, out, threshold=None, overlays=True, save_maps=False, batch_size=BATCH_SIZE):
    """Score every usable image under `paths` with `model`; write predictions.csv, skipped.csv, overlays/ (unless
    `overlays` is false) and maps/ (the raw anomaly maps as .npy, with `save_maps`). Returns the rows.

    Files are read and decoded in a thread pool while the model scores batches of `batch_size` images.
    """
    serving_path = saved_model_path(model)
    files, skipped = image_files(paths, out)
    import tensorflow as tf

    from data.decode import warm_up
    from data.progress import Progress

    serving = tf.saved_model.load(str(serving_path)).signatures["serving_float"]
    if threshold is None and "threshold" not in serving.structured_outputs:
        raise PredictError(f"{serving_path} was exported without its threshold (an older run); pass --threshold.")
    out.mkdir(parents=True, exist_ok=True)
    for folder, wanted in (("overlays", overlays), ("maps", save_maps)):
        if wanted:
            (out / folder).mkdir(exist_ok=True)
    if (out / "overlays").is_dir():
        for stale in (out / "overlays").iterdir():  # an earlier call's overlays (NNNNN_<name>.png); other files stay
            if OVERLAY_NAME.fullmatch(stale.name) and stale.is_file():
                stale.unlink()
    prepare = preparation(serving, overlays)
    warm_up(prepare)  # the decoder's tracing is start-up, not scoring
    writer = OverlayWriter() if overlays else None
    rows, pending, buffered = [], {}, 0
    progress = Progress(len(files), "Scoring", "images")
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        writes = collections.deque()  # overlay and map writes under way, each holding its image

        def score(key):
            items = pending.pop(key)
            outputs = serving(images=tf.constant(np.stack([item["input"] for item in items])))
            scores, maps = outputs["score"].numpy(), outputs["anomaly_map"].numpy()
            limits = outputs["threshold"].numpy() if threshold is None else np.full(len(items), threshold)
            for item, score_, limit, anomaly_map in zip(items, scores, limits, maps):
                row = item["row"]
                row.update(score=f"{score_:.8g}", is_anomalous=int(score_ >= limit), threshold=f"{limit:.8g}")
                if save_maps:
                    row["map"] = str(out / "maps" / f"{item['name']}.npy")
                    writes.append(pool.submit(np.save, row["map"], anomaly_map))
                if writer is not None:
                    row["overlay"] = str(out / "overlays" / f"{item['name']}.png")
                    writes.append(pool.submit(writer.write, row["overlay"], item["shown"], anomaly_map))
            while len(writes) > PREFETCH:  # writing slower than scoring: wait rather than hold every image
                writes.popleft().result()
            progress.add(len(items))
            return len(items)

        for path, loaded in in_order(pool, functools.partial(load, prepare=prepare), files):
            if isinstance(loaded, str):
                skipped.append({"path": str(path), "reason": loaded})
                progress.add()
                continue
            row = {"path": str(path), "overlay": ""}
            rows.append(row)
            key = loaded["input"].shape
            pending.setdefault(key, []).append({**loaded, "row": row, "name": f"{len(rows) - 1:05d}_{path.stem}"})
            buffered += 1
            if len(pending[key]) >= batch_size:
                buffered -= score(key)
            if buffered >= 2 * batch_size:  # many sizes (a model whose input is not resized first): bound memory
                buffered -= sum(score(key) for key in list(pending))
        for key in list(pending):
            score(key)
        for write in writes:
            write.result()  # raises what a write raised
    columns = ["path", "score", "is_anomalous", "threshold", "overlay"] + (["map"] if save_maps else [])
    write_csv(out / "predictions.csv", columns, rows)
    write_csv(out / "skipped.csv", ["path", "reason"], sorted(skipped, key=lambda entry: entry["path"]))
    seconds = progress.seconds
    progress.close(line=False)  # the summary below says it
    if skipped:
        print(f"Skipped {len(skipped)} unusable file(s); they are listed with the reason in {out / 'skipped.csv'}.")
    if not rows:
        raise PredictError(f"No usable image among {', '.join(map(str, paths))}.")
    flagged = sum(row["is_anomalous"] for row in rows)
    written = [f"overlays in {out / 'overlays'}/"] * overlays + [f"anomaly maps in {out / 'maps'}/"] * save_maps
    print(f"Scored {len(rows)} image(s) in {seconds:.1f} s ({len(rows) / max(seconds, 1e-9):.0f} images/s after "
          f"loading the model), {flagged} flagged as anomalous: {', '.join([str(out / 'predictions.csv'), *written])}.")
    return rows


def preparation(serving, overlays):
    """The TensorFlow function that turns a decoded image into what predict gives `serving`, and for overlays its grey.

    The SavedModel converts to grayscale and resizes (bilinear, antialiased) to its S x S input itself
    (data.pipeline.to_model_input). Doing the same here first lets images of every size go in one batch,
    and the SavedModel's own steps then change nothing (a grey image stays grey; a resize from S to S is the
    identity). Checked on two probe images (grey and colour) rather than assumed: "grey" (grayscale, then
    resize: the SavedModel's own order) is taken if it scores them as the SavedModel scores them unresized,
    else "colour" (resize, channels kept: for a model that reads colour), else the image as decoded, and
    then only images of one size share a batch.
    """
    import tensorflow as tf

    rng = np.random.default_rng(0)
    probes = [rng.uniform(0.0, 1.0, (45, 70, channels)).astype(np.float32) for channels in (1, 3)]
    direct = [serving(images=tf.constant(probe[None])) for probe in probes]
    size = direct[0]["anomaly_map"].shape[1]
    for mode in ("grey", "colour"):
        prepare = prepared(mode, size, overlays)
        if all(_same_outputs(serving(images=prepare(tf.constant(probe))["input"][None]), outputs)
               for probe, outputs in zip(probes, direct)):
            return prepare
    return prepared(None, size, overlays)


def _same_outputs(outputs, expected):
    return all(outputs[name].shape == expected[name].shape
               and np.allclose(outputs[name].numpy(), expected[name].numpy(), rtol=1e-4, atol=1e-4)
               for name in ("score", "anomaly_map"))


def prepared(mode, size, overlays):
    """[H, W, C] in [0, 1] -> {"input": grey ("grey") or all channels ("colour") resized to S x S, or the image
    itself (None); "shown": the overlay's background, with `overlays`: RGB [H, W, 3] for a colour model, else grey [H, W]}."""
    import tensorflow as tf

    def prepare(image):
        # tf.image.rgb_to_grayscale's weights, as a weighted sum: the same values, 20 % less CPU per image
        # than its matrix product over every pixel.
        grey = tf.cond(tf.shape(image)[-1] >= 3,
                       lambda: sum(image[..., k:k + 1] * weight for k, weight in enumerate(GREY_WEIGHTS)),
                       lambda: image[..., :1])
        model_input = {"grey": grey, "colour": image, None: image}[mode]
        if mode is not None:
            model_input = tf.image.resize(model_input, (size, size), method="bilinear", antialias=True)
        if mode == "colour":  # a colour model's overlay is drawn over the colour image
            shown = tf.cond(tf.shape(image)[-1] >= 3, lambda: image[..., :3], lambda: tf.repeat(image[..., :1], 3, axis=-1))
        else:
            shown = grey[..., 0]
        return {"input": model_input, **({"shown": shown} if overlays else {})}

    return prepare


def load(path, prepare):
    """One file -> prepare(its decoded image) as numpy, or why to skip it; decoded by training's own scan and
    decoder (data.decode.inspect_image)."""
    from data.decode import UnusableImage, inspect_image

    try:
        return inspect_image(path, prepare)[1]
    except UnusableImage as error:
        return str(error)
    except OSError as error:
        return f"cannot be read ({error.strerror})"


def in_order(pool, function, items):
    """(item, function(item)) in the order of `items`, computed in `pool` at most PREFETCH items ahead."""
    pending = collections.deque()
    for item in items:
        pending.append((item, pool.submit(function, item)))
        if len(pending) >= PREFETCH:
            done, future = pending.popleft()
            yield done, future.result()
    while pending:
        done, future = pending.popleft()
        yield done, future.result()


class OverlayWriter:
    """The anomaly map over the image (grey, or colour for a colour model), at its decoded size, on the fixed OVERLAY_SCALE."""

    def __init__(self):
        from evaluation.plots import error_overlay  # matplotlib and sklearn: only loaded when overlays are written

        self.error_overlay = error_overlay

    def write(self, path, shown, anomaly_map):
        import cv2

        anomaly_map = cv2.resize(anomaly_map, shown.shape[1::-1], interpolation=cv2.INTER_LINEAR)
        _, overlay = self.error_overlay(shown * 2.0 - 1.0, anomaly_map, OVERLAY_SCALE)
        if not cv2.imwrite(path, cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write {path}")


def write_csv(path, columns, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
