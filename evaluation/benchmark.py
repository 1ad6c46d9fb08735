"""Throughput (images/s) and peak memory: a model's training and inference, `predict`, and the data stage at scale.

    python run_experiments.py benchmark                 # improved_bigan, quick preset (64 px), batch 32: about a minute
    python run_experiments.py benchmark --model improved_bigan --preset paper --batch-size 32
    python run_experiments.py benchmark --model cae_d_gan --preset quick --image-size 64
    python run_experiments.py benchmark --model knn --preset quick --image-size 64
    python run_experiments.py benchmark --predict RUN_DIR IMAGES...      # predict --no-overlays, as a user runs it
    python run_experiments.py benchmark --scale 20000                   # describe and a run's data stage on N files

Model: synthetic batches, so the numbers measure the model, not the disk. Each training mode of the
model's schedule (e.g. the Improved BiGAN's phase 1, and phase 2 with and without the
discriminator) is timed separately; the first epoch of each (graph tracing) is excluded. A floor
(pca, knn) has no training steps: its one fit on steps × batch_size synthetic normals is timed,
and that many normals are what the kNN searches at inference.

--predict runs `python run_experiments.py predict RUN_DIR IMAGES... --no-overlays` in a child process:
the whole call's wall time and peak memory, the images/s predict reports once the model is loaded,
and, where RUN_DIR has a scores.csv, the largest difference from it over the images both hold.

--scale generates N small phantom PNGs (64×64, 80 % normal, 20 % abnormal) in a temporary folder
and times, each in a child process with its peak resident memory (getrusage of that child):
`describe` on them, and a quick run's data stage (scan and decode, duplicate search, split and
split.json, then one pass of the training pipeline, which decodes the training images into its cache).
"""

import argparse
import contextlib
import json
import os
import pathlib
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

import checks
from models.names import MODEL_NAMES

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # only fatal lines from its C++ side (cuInit on a CPU machine)

REPO = pathlib.Path(__file__).resolve().parents[1]
PRESETS = ("paper", "quick", "tiny")  # every family's architecture presets
PRESET_SIZES = {"paper": 128, "quick": 64, "tiny": 32}  # their usual input (a family may differ, e.g. patchcore's 224)


def _epoch_timer():
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.perf_counter() - self.start

    return EpochTimer()


def peak_memory_mb():
    """Peak accelerator memory if there is a GPU, else the process's peak resident memory."""
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        return {"gpu_peak_mb": tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20}
    return {"cpu_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def benchmark(model_name, preset, batch_size, image_size, steps, perceptual_weights, mixed_precision=False, xla="auto"):
    import tensorflow as tf

    from evaluation.scoring import build_detector
    from models.base import FittedModel
    from models.registry import architecture
    from training.profiles import resolve_config
    from training.trainer import compiled_model, dtype_policy

    overrides = {"perceptual_weights": perceptual_weights} if perceptual_weights else {}
    config = resolve_config(model_name, "phantom", "paper", batch_size=batch_size, mixed_precision=mixed_precision,
                            deterministic=False,  # a speed measurement; also lets --xla on compile
                            xla=xla, **overrides)
    config["architecture"] = architecture(model_name, preset, image_size=image_size)
    model = compiled_model(config)
    schedule = model.make_schedule(config)
    schedule.set_model(model)
    batch = tf.random.uniform((batch_size, image_size, image_size, 1), -1.0, 1.0)
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    results = {"model": model_name, "preset": preset, "batch_size": batch_size, "image_size": image_size,
               "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU", "dtype_policy": dtype_policy(config),
               "xla": xla, **overrides}
    if isinstance(model, FittedModel):
        normals = tf.random.uniform((steps * batch_size, image_size, image_size, 1), -1.0, 1.0)
        start = time.perf_counter()
        model.fit_normals(tf.data.Dataset.from_tensor_slices(normals).batch(batch_size))
        results.update(fit_seconds=time.perf_counter() - start, fit_images=steps * batch_size)
    for mode, epoch in schedule.representative_epochs().items():
        print(f"training, {mode}: a warm-up epoch, then {steps} timed steps", flush=True)
        schedule.on_epoch_begin(epoch)
        timer = _epoch_timer()
        model.fit(dataset, epochs=2, steps_per_epoch=steps, verbose=0, shuffle=False, callbacks=[timer])
        results[f"train_{mode}_images_per_s"] = steps * batch_size / timer.seconds
    print(f"inference: {steps} timed steps", flush=True)
    detector = build_detector(model, image_size, score=config["score"])

    @tf.function
    def infer(images):
        return detector(images, training=False)["score"]

    infer(batch).numpy()
    start = time.perf_counter()
    for _ in range(steps):
        infer(batch).numpy()
    results["inference_images_per_s"] = steps * batch_size / (time.perf_counter() - start)
    results.update(peak_memory_mb())
    return results


def run_child(command, log=None):
    """Run `command` (from the repository root): (exit code, wall seconds, peak resident MiB of that child, output).

    The child's CPU seconds (user + system) are kept in run_child.cpu_seconds: unlike wall time, they hardly
    change when other jobs share the cores."""
    with tempfile.TemporaryFile("w+") as output:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage, not every child's so far
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        run_child.cpu_seconds = usage.ru_utime + usage.ru_stime
        output.seek(0)
        text = output.read()
    if log:
        pathlib.Path(log).write_text(text)
    return process.returncode, seconds, usage.ru_maxrss / 1024, text


def _check(code, text, what):
    if code != 0:
        raise SystemExit(f"{what} failed (exit {code}):\n{text[-3000:]}")


def benchmark_predict(run_dir, images, overlays=False):
    """`predict` as a user runs it, in a child process: wall time, peak memory, images/s after start-up."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "run_experiments.py", "predict", str(run_dir), *map(str, images), "--out", out]
        code, seconds, peak, text = run_child(command + ([] if overlays else ["--no-overlays"]))
        _check(code, text, "predict")
        scored = re.search(r"Scored (\d+) image\(s\) in ([\d.]+) s \((\d+) images/s", text)
        results = {"images": int(scored[1]), "overlays": overlays, "call_seconds": seconds,
                   "scoring_seconds": float(scored[2]), "images_per_s_after_start_up": float(scored[3]),
                   "start_up_seconds": seconds - float(scored[2]), "call_cpu_seconds": run_child.cpu_seconds,
                   "peak_rss_mb": peak}
        # CPU seconds barely depend on other jobs, wall seconds do: the same call on one image gives the start-up's
        # CPU, so the rest is what scoring the others took, the per-image cost on an unshared machine.
        first = next(path for path in sorted(pathlib.Path(images[0]).rglob("*")) if path.is_file()) \
            if pathlib.Path(images[0]).is_dir() else pathlib.Path(images[0])
        call_cpu = run_child.cpu_seconds
        code, _, _, text = run_child([*command[:4], str(first), "--out", str(pathlib.Path(out) / "one"), "--no-overlays"])
        _check(code, text, "predict on one image")
        results["scoring_cpu_ms_per_image"] = 1e3 * (call_cpu - run_child.cpu_seconds) / max(results["images"] - 1, 1)
        scores_csv = pathlib.Path(run_dir) / "scores.csv"
        if scores_csv.is_file():
            results["max_difference_from_scores_csv"] = max_difference(scores_csv, pathlib.Path(out) / "predictions.csv")
    return results


def max_difference(scores_csv, predictions_csv):
    import csv

    with open(scores_csv) as handle:
        expected = {row["path"]: float(row["score"]) for row in csv.DictReader(handle)}
    with open(predictions_csv) as handle:
        predicted = {row["path"]: float(row["score"]) for row in csv.DictReader(handle)}
    common = expected.keys() & predicted.keys()
    return max((abs(expected[path] - predicted[path]) for path in common), default=None)


def _write_slice(job):
    import cv2

    from data.phantom import render_slice

    path, label, index = job
    assert cv2.imwrite(path, render_slice(7, label, index, 64)[0])


def generate_folder(root, count):
    """`count` distinct 64×64 phantom PNGs: 80 % under root/normal, 20 % under root/abnormal."""
    import concurrent.futures

    abnormal = count // 5
    jobs = []
    for label, name, number in ((0, "normal", count - abnormal), (1, "abnormal", abnormal)):
        (root / name).mkdir(parents=True)
        jobs += [(str(root / name / f"{index:06d}.png"), label, index) for index in range(number)]
    with concurrent.futures.ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(_write_slice, jobs, chunksize=256))
    return root / "normal", root / "abnormal"


DATA_STAGE = textwrap.dedent("""
    import json, pathlib, sys, time
    started = time.perf_counter()
    import run_experiments
    args = run_experiments.parse_args(sys.argv[2:])
    import experiment
    from data.pipeline import image_dataset
    from data.protocols import write_split
    times = {"start_up_seconds": time.perf_counter() - started}
    config = experiment.run_config(args, "fcae", 0, None, True)
    start = time.perf_counter()
    collection = experiment.load_collection(args, config)
    times["load_scan_and_duplicates_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    split = experiment.protocol_split(collection, config)
    write_split(pathlib.Path(sys.argv[1]) / "split.json", collection, split)
    times["split_and_split_json_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    dataset = image_dataset(collection, split.train, config["architecture"]["image_size"], config["batch_size"],
                            training=True, seed=0)
    batches = sum(1 for _ in dataset)
    times["first_pass_of_training_pipeline_seconds"] = time.perf_counter() - start
    times["training_images"] = len(split.train)
    print(json.dumps(times))
""")


def benchmark_scale(count, keep=None):
    """describe and a quick run's data stage on `count` generated files, each in a child process."""
    root = pathlib.Path(keep) if keep else pathlib.Path(tempfile.mkdtemp(prefix="bigan-scale-"))
    try:
        start = time.perf_counter()
        if not (root / "normal").is_dir():
            generate_folder(root, count)
        results = {"files": count, "generate_seconds": time.perf_counter() - start}
        folders = ["--dataset", "folder", "--normal-dir", str(root / "normal"), "--abnormal-dir", str(root / "abnormal")]
        code, seconds, peak, text = run_child([sys.executable, "run_experiments.py", "describe", *folders])
        _check(code, text, "describe")
        results.update(describe_seconds=seconds, describe_cpu_seconds=run_child.cpu_seconds, describe_peak_rss_mb=peak)
        with tempfile.TemporaryDirectory() as out:
            command = [sys.executable, "-c", DATA_STAGE, out, "--model", "fcae", *folders, "--profile", "quick",
                       "--no-floor", "--out", out]
            code, seconds, peak, text = run_child(command)
            _check(code, text, "the data stage")
        results.update(data_stage_seconds=seconds, data_stage_cpu_seconds=run_child.cpu_seconds,
                       data_stage_peak_rss_mb=peak,
                       **{f"data_stage_{key}": value for key, value in json.loads(text.strip().splitlines()[-1]).items()})
        return results
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def load_average():
    return dict(zip(("load_1min", "load_5min", "load_15min"), os.getloadavg()))


def parse_args(argv):
    """The benchmark's arguments; a bad value exits 2 with one line, before TensorFlow is imported."""
    parser = checks.ArgumentParser(prog="run_experiments.py benchmark", description=__doc__.splitlines()[0],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", default="improved_bigan", choices=MODEL_NAMES, help="the model to time")
    parser.add_argument("--preset", default="quick", choices=PRESETS, help="architecture preset")
    parser.add_argument("--batch-size", type=checks.bounded_int(1, checks.MAX_BATCH_SIZE), default=32)
    parser.add_argument("--image-size", type=checks.bounded_int(checks.MIN_IMAGE_SIZE, checks.MAX_IMAGE_SIZE),
                        help="input size (default: the preset's, 128 / 64 / 32)")
    parser.add_argument("--steps", type=checks.bounded_int(1, 10_000), default=5,
                        help="timed steps per mode, after a warm-up epoch of as many (more for steadier numbers)")
    parser.add_argument("--perceptual-weights", help="improved_bigan: 'none' (default) measures the networks alone; "
                        "'random' adds the cost of the VGG16 perceptual loss")
    parser.add_argument("--mixed-precision", action="store_true", help="bfloat16 compute (float32 weights and outputs)")
    parser.add_argument("--xla", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--predict", nargs="+", metavar=("RUN_DIR", "IMAGES"),
                        help="time `predict RUN_DIR IMAGES... --no-overlays` instead of a model")
    parser.add_argument("--overlays", action="store_true", help="--predict: write overlays too")
    parser.add_argument("--scale", type=int, metavar="FILES",
                        help="time describe and a quick run's data stage on FILES generated images instead")
    parser.add_argument("--keep", help="--scale: generate into (or reuse) this folder and keep it")
    args = parser.parse_args(argv)
    args.image_size = args.image_size or PRESET_SIZES[args.preset]
    if args.predict and len(args.predict) < 2:
        parser.error("--predict needs RUN_DIR and at least one image file or folder")
    if args.batch_size * args.image_size ** 2 > checks.MAX_PIXELS_PER_STEP:
        parser.error(f"--batch-size {args.batch_size} of {args.image_size} px images is more than the "
                     f"{checks.MAX_PIXELS_PER_STEP:,} pixels a step memory is sized for; lower one of them.")
    if args.perceptual_weights is None and args.model == "improved_bigan":
        args.perceptual_weights = "none"
    return args


def main(argv=None, quiet_tensorflow=None):
    """`quiet_tensorflow(verbose)`: the training command's context manager that hides TensorFlow's log lines."""
    args = parse_args(argv)
    before = load_average()  # the machine's load as the measurement starts (other jobs skew every number)
    if args.predict:
        results = benchmark_predict(args.predict[0], args.predict[1:], args.overlays)
    elif args.scale:
        results = benchmark_scale(args.scale, args.keep)
    else:
        print(f"Timing {args.model} (preset {args.preset}, {args.image_size} px, batch {args.batch_size}, {args.steps} "
              "steps per mode after a warm-up epoch): training steps per mode, then inference.")
        print("Loading TensorFlow and building the model ...", flush=True)
        with (quiet_tensorflow or contextlib.nullcontext)(False):
            import tensorflow  # noqa: F401, PLC0415 (its start-up log lines hidden, as in train and predict)
        results = benchmark(args.model, args.preset, args.batch_size, args.image_size, args.steps,
                            args.perceptual_weights, args.mixed_precision, args.xla)
    results.update({f"{key}_before": value for key, value in before.items()},
                   **{f"{key}_after": value for key, value in load_average().items()}, cpus=os.cpu_count())
    for name, value in results.items():
        print(f"{name:40s} {value:.1f}" if isinstance(value, float) else f"{name:40s} {value}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
