"""One call's run spec (spec.py) -> every model, seed and category: data, split, training, calibration,
evaluation, export, and the report over them. The command line and the API build and check the spec, then import
this module, so that --help and refused settings never wait for TensorFlow.
"""

import dataclasses
import functools
import json
import pathlib
import platform
import shlex
import shutil
import subprocess
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from data.describe import describe, duplicates_line
from data.download import download
from data.pipeline import image_dataset
from data.protocols import make_split, split_from_json, write_split
from data.sources import DatasetError, available_categories, load_dataset, resolve_data_dir
from evaluation.evaluate import calibrate, evaluate
from evaluation.export import ImageDetector, export_saved_model
from evaluation.metrics import norm_quantile, quantile_support, threshold_rule
from evaluation.plots import plot_synthetic_samples
from evaluation.report import REPORT_RUNS, dataset_label, summary_table, write_report, write_tensorboard_image, write_tensorboard_results
from evaluation.scoring import build_detector
from models.config import ConfigError
from models.losses import PerceptualWeightsError
from models.names import model_list
from models.registry import FLOOR_NAMES, ModelNotAvailableError, family
from spec import command_line
from training.callbacks import TrainingDivergedError
from training.distribution import check_resume, make_strategy, worker_out
from training.domains import RECOMMENDED, domain_defaults, domain_of
from training.profiles import COMMON, applicable_overrides, resolve_config, scale_to_data
from training.runs import (
    RunBusyError,
    latest_unfinished_run,
    locked,
    locked_report,
    new_run_dir,
    set_state,
    setting_differences,
    trained,
    unfinished_runs,
)
from training.trainer import compiled_model, fit, set_determinism

EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 3, 130
# With one validation normal the score's std is 0 and every score explodes (±2·10⁷ was seen); three is
# the fewest that gives a spread at all (the smoke profile's 40-normal phantom has exactly three).
MIN_VALIDATION_NORMALS = 3


def planned_models(names, no_floor):
    """The models each seed runs, floors first (seconds; their AUROCs go into the deep runs' metrics).

    A call naming a deep model also runs the floors unless --no-floor; a floor named explicitly runs once.
    """
    deep = [name for name in names if name not in FLOOR_NAMES]
    return [name for name in FLOOR_NAMES if name in names or (deep and not no_floor)] + deep


def run_config(spec, model, seed, category, named):
    """The resolved config of one run, with where its data comes from. A floor the user did not name takes
    only the flags it has a use for (e.g. --image-size, not the deep model's --epochs) and keeps its own
    score (a deep model's --score must not change what the floor is); a named model refuses the others."""
    overrides = spec.overrides
    if spec.source == "tfds" and overrides.get("channels") is None:
        overrides["channels"] = 1  # TFDS Plant Village is held as grayscale: the plant domain's colour default can't apply
    if not named:
        overrides = applicable_overrides(model, spec.dataset, spec.profile, {**overrides, "score": None})
    config = resolve_config(model, spec.dataset, spec.profile, seed=seed, category=category, protocol=spec.protocol,
                            **overrides)
    if config["architecture"]["channels"] == 3 and spec.source == "tfds":
        raise ConfigError("--channels 3 needs colour images, and --source tfds keeps Plant Village in memory as "
                          "grayscale; use the local folder (--source local --data-dir ...).")
    return {**config, "data": data_location(spec)}


def data_location(spec):
    """The folders a run reads, absolute (None where unused) and the source: config.json records them and
    --resume only continues a run of the same data."""
    folders = {
        "data_dir": None if spec.dataset in ("phantom", "folder") else resolve_data_dir(spec.dataset, spec.data_dir),
        "normal_dir": spec.normal_dir,
        "abnormal_dir": spec.abnormal_dir,
    }
    return {"source": spec.source, **{key: str(pathlib.Path(path).resolve()) if path else None
                                      for key, path in folders.items()}}


def provenance(spec):
    """What config.json records beside the settings so a run can be reproduced: the spec (`train --config` repeats
    it), the command, code and library versions."""
    versions = {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
                "numpy": np.__version__}
    return {"spec": spec.as_json(), "command": spec.command or command_line(spec), "git_commit": git_commit(),
            "versions": versions}


def git_commit():
    """The commit of this checkout, suffixed -dirty when tracked files differ from it; None outside a git
    checkout (e.g. an unpacked archive) or without git. (--exclude=* skips tags, so describe names the commit.)"""
    try:
        result = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=40", "--exclude=*"],
                                cwd=pathlib.Path(__file__).parent, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def run(spec, model, seed, category, strategy, named=True, floor=None, floor_variants=None):
    """One model, seed and category: data -> split -> train (under `strategy`) -> calibrate -> evaluate -> export.

    `floor` ({floor model: AUROC} on the same split) is stored in metrics.json and printed beside
    the model's AUROC; `floor_variants` ({floor model: its score_variants}) gives `floor_same_score`,
    each floor's AUROC under this model's own score (a PCA scored like the model). Returns (config, metrics, run dir).
    A new run that fails or is interrupted before its first checkpoint is removed: it has nothing to
    resume, and --resume would otherwise repeat its failure with its saved config.
    """
    config = run_config(spec, model, seed, category, named)
    run_dir = resumable_run(spec, config)
    if run_dir is not None:
        with locked(run_dir):  # a second --resume of this run, or the call still training it, is refused
            config = json.loads((run_dir / "config.json").read_text())
            print(f"Resuming {run_dir} (its saved settings are this command's).")
            try:
                return start_or_resume(spec, config, run_dir, strategy, floor, floor_variants)
            except KeyboardInterrupt as interrupt:
                interrupt.resumable = run_dir  # it has a checkpoint: latest_unfinished_run chose it for that
                raise
    if spec.resume:
        unfinished = unfinished_runs(spec.out, config)
        if unfinished:
            print(f"Not resuming {unfinished[-1]}: its settings differ from this command's "
                  f"({', '.join(setting_differences(unfinished[-1], config))}).")
        print(f"No unfinished {model} run with these settings under {spec.out}/ has a checkpoint; starting a new run.")
    return start_or_resume(spec, config, None, strategy, floor, floor_variants)


def resumable_run(spec, config):
    """The run --resume continues: the folder it names (for that run's model), else the newest unfinished run of
    these settings; None without --resume or when there is none."""
    if isinstance(spec.resume, str):
        named = pathlib.Path(spec.resume)
        if json.loads((named / "config.json").read_text())["model"] == config["model"]:
            return named
    return latest_unfinished_run(spec.out, config) if spec.resume else None


def start_or_resume(spec, config, run_dir, strategy, floor, floor_variants):
    """`run` once the run is chosen: resume run_dir (locked by the caller), or start a new run when it is None."""
    set_determinism(config)  # before any dataset is built: tf.data's parallel maps follow it
    keras.utils.set_random_seed(config["seed"])
    collection = load_collection_once(spec, config)
    if run_dir is not None:
        split = split_from_json(collection, json.loads((run_dir / "split.json").read_text()))
        return train_evaluate_export(spec, config, collection, split, run_dir, strategy, floor, floor_variants)

    split = protocol_split(collection, config)
    if len(split.validation) < MIN_VALIDATION_NORMALS:
        raise DatasetError(
            f"Only {len(split.validation)} validation normal(s) after the split ({len(split.train)} training normals); "
            f"the score's standardisation and the threshold need at least {MIN_VALIDATION_NORMALS}. Add normal "
            "images (about 10 % of the training normals are held out for validation).")
    config = {**scale_to_data(config, len(split.train)), **provenance(spec)}
    if config["epoch_scale"] > 1:
        print(f"Small training set ({len(split.train)} images, {config['steps_per_epoch']} steps an epoch): epochs "
              f"x{config['epoch_scale']} to reach {config['min_updates']} updates (--min-updates 0 turns this off).")
    run_dir = new_run_dir(spec.out, config)
    try:
        with locked(run_dir):
            (run_dir / "config.json").write_text(json.dumps(config, indent=1))
            write_split(run_dir / "split.json", collection, split)
            return train_evaluate_export(spec, config, collection, split, run_dir, strategy, floor, floor_variants)
    except BaseException as error:
        if not trained(run_dir):
            shutil.rmtree(run_dir)
            print(f"Removed {run_dir}: it stopped before its first checkpoint, so there is nothing to resume.",
                  file=sys.stderr)
        elif isinstance(error, KeyboardInterrupt):
            error.resumable = run_dir  # execute advises --resume only then
        raise


def train_evaluate_export(spec, config, collection, split, run_dir, strategy, floor, floor_variants):
    """The part of `run` that writes into run_dir; returns (config, metrics, run dir)."""
    print(f"Run directory: {run_dir}")
    print(f"Images: {len(split.train)} train, {len(split.validation)} validation normals, "
          f"{len(split.test)} test ({int(collection.labels[split.test].sum())} abnormal).")
    if collection.not_used or split.not_used:
        print(f"Left out on purpose: {len(collection.not_used) + len(split.not_used)} image(s), listed with the "
              "reason under 'not_used' in split.json.")

    size, channels, batch = config["architecture"]["image_size"], config["architecture"]["channels"], config["batch_size"]
    train_ds = image_dataset(collection, split.train, size, batch, training=True, seed=config["seed"],
                             channels=channels, augment=config["augment"])
    validation_ds = image_dataset(collection, split.validation, size, batch, channels=channels)
    normals_ds = image_dataset(collection, split.train, size, batch, channels=channels)  # un-augmented training normals
    abnormal = split.test[collection.labels[split.test] == 1]
    preview_indices = np.concatenate([split.validation[:4], abnormal[:4]])
    preview = next(iter(image_dataset(collection, preview_indices, size, len(preview_indices), channels=channels)))

    with strategy.scope():  # variables and optimizer slots are created per replica
        network = compiled_model(config)
    set_state(run_dir, "running")
    show_synthetic_samples(network, train_ds, run_dir)
    started = time.perf_counter()
    history = fit(network, train_ds, normals_ds, preview, config, run_dir, verbose=1 if sys.stdout.isatty() else 2)

    detector = build_detector(network, size, channels, config["score"])
    print(f"Calibrating the score and threshold on {len(split.validation)} validation normals "
          f"(pixel statistics: {len(split.train)} training normals)")
    calibrate(detector, normals_ds, validation_ds, config["threshold_quantile"])
    calibration = threshold_calibration(len(split.validation), config["threshold_quantile"])
    if collection.labels.any():
        print(f"Evaluating on {len(split.test)} test images")
        metrics = evaluate(detector, collection, split, batch, run_dir, history, calibration["threshold_label"],
                           extra_metrics={"calibration": calibration,
                                          **(floor_metrics(floor, floor_variants, config["score"]) or {})},
                           started=started)
        write_tensorboard_results(run_dir / "tensorboard", metrics, run_dir / "plots" / "roc.png", len(history))
    else:  # normals only: a calibrated detector to deploy, nothing to evaluate it against
        metrics = {"threshold": float(detector.get_layer("score_combiner").threshold.numpy()), "calibration": calibration}
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print("Exporting model.keras and saved_model/", end="", flush=True)  # the seconds each took follow
    image_detector = ImageDetector(detector)  # raw images in, as a deployed model is used
    exporting = time.perf_counter()
    image_detector.save(run_dir / "model.keras")
    print(f": model.keras {time.perf_counter() - exporting:.1f} s", end="", flush=True)
    exporting = time.perf_counter()
    export_saved_model(image_detector, run_dir / "saved_model")
    print(f", saved_model/ {time.perf_counter() - exporting:.1f} s")
    set_state(run_dir, "finished")

    print(f"\n{config['model']} on {dataset_label(config)} (profile {config['profile']}, protocol {config['protocol']}, "
          f"seed {config['seed']}), {len(history)} epochs:")
    if "auroc" in metrics:
        print(summary_table(metrics, config))
    else:
        print(f"Trained and calibrated on normal images only (threshold {metrics['threshold']:.4g}); evaluation "
              f"needs abnormal images (--abnormal-dir). Score new images with: "
              f"python run_experiments.py predict {shlex.quote(str(run_dir))} IMAGES...")
    print(f"\nEverything is in {run_dir}\nTensorBoard: tensorboard --logdir {shlex.quote(str(spec.out))}")
    return config, metrics, run_dir


def show_synthetic_samples(network, train_ds, run_dir):
    """A grid of the synthetic anomalies a model learns from (one training batch), in plots/ and TensorBoard;
    nothing for a model that learns from the normals as they are."""
    taught = network.training_data(train_ds)
    if taught is train_ds:
        return
    corrupted, masks, images = next(iter(taught))
    png = plot_synthetic_samples(corrupted, masks, images, run_dir / "plots" / "synthetic_samples.png")
    write_tensorboard_image(run_dir / "tensorboard", "training/synthetic_samples", png)
    print(f"Synthetic anomalies it learns from: {png}")


def threshold_calibration(count, quantile):
    """metrics.json's `calibration`: how many validation normals set the threshold and by which rule
    (evaluation.metrics.threshold_rule); too few for a quantile is said loudly on the console."""
    rule = threshold_rule(count, quantile)
    if rule == "quantile":
        label = f"threshold ({quantile:.0%} quantile of {count} validation normals)"
    else:
        label = f"threshold (normal fit to {count} validation normals: mean + {norm_quantile(quantile):.3f} std)"
        print(f"WARNING: only {count} validation normals, fewer than the {quantile_support(quantile)} a {quantile:.0%} "
              f"quantile needs: the threshold is a normal fit to their scores (mean + {norm_quantile(quantile):.3f} std), "
              "a rough estimate. Precision, recall and F1 at it are uncertain; AUROC does not depend on it.")
    return {"validation_normals": count, "threshold_quantile": quantile, "threshold_rule": rule,
            "threshold_label": label}


def floor_metrics(floor, floor_variants, score):
    """metrics.json's `floor` (the floors' own AUROCs) and `floor_same_score` (theirs under `score`)."""
    if not floor:
        return None
    same = {name: variants[score] for name, variants in (floor_variants or {}).items() if score in variants}
    return {"floor": floor, **({"floor_same_score": same} if same else {})}


def run_seed(spec, models, named, seed, category, strategy):
    """Every planned model on one seed's split, floors first, so each deep run gets the floors' AUROCs."""
    results, floor, floor_variants = [], {}, {}
    for model in models:
        is_floor = model in FLOOR_NAMES
        result = run(spec, model, seed, category, strategy, named=model in named,
                     floor=None if is_floor else floor, floor_variants=None if is_floor else floor_variants)
        if is_floor and "auroc" in result[1]:  # no AUROC when trained on normals only
            floor[model] = result[1]["auroc"]
            floor_variants[model] = result[1]["score_variants"]
        results.append(result)
    return results


def load_collection(spec, config):
    """The dataset of a resolved config; where it lives on disk comes from the command line.

    Only the generated phantom depends on the seed, so a folder is scanned, decoded and checked for
    duplicates once for all the models and seeds of a call, not once per run.
    """
    seed = config["seed"] if config["dataset"] == "phantom" else 0
    return _cached_dataset(
        config["dataset"], data_dir=spec.data_dir, normal_dir=spec.normal_dir, abnormal_dir=spec.abnormal_dir,
        seed=seed, phantom_normals=config["phantom_normals"], phantom_abnormals=config["phantom_abnormals"],
        phantom_draw=config["phantom_draw"],
        category=config["category"], source=spec.source,
    )


def load_collection_once(spec, config):
    """load_collection, printing its skipped-files and Duplicates lines only when it was read now, so once per
    dataset of a call (per category; per seed for the phantom), not once per run of the models and floors."""
    misses = _cached_dataset.cache_info().misses
    collection = load_collection(spec, config)
    if _cached_dataset.cache_info().misses > misses:
        if collection.skipped:
            print(f"Skipped {len(collection.skipped)} unusable file(s); they are listed under 'skipped' in split.json.")
        if duplicates_line(collection.duplicates):
            print(duplicates_line(collection.duplicates))
    return collection


# Runs loop category > seed > model, so one cached dataset serves a category's runs and memory holds one at a time.
_cached_dataset = functools.lru_cache(maxsize=1)(load_dataset)


def protocol_split(collection, config):
    return make_split(config["protocol"], collection, config["seed"], config["test_fraction"], config["validation_fraction"])


def categories(spec):
    """--category all -> every category found on disk (MVTec AD, Plant Village); else the one given (or None)."""
    if spec.category == "all":
        return available_categories(spec.dataset, spec.data_dir, spec.source)
    return [spec.category]


def prepare_data(spec):
    """The download and describe subcommands: the data part only, no model is built."""
    if spec.action == "download":
        print(download(spec.dataset, spec.data_dir, spec.category))
    else:
        for category in categories(spec):
            config = resolve_config(model_list(spec.model)[0], spec.dataset, spec.profile, seed=spec.seeds[0],
                                    category=category, protocol=spec.protocol)
            collection = load_collection(spec, config)
            print(f"\n{spec.dataset}" + (f" {category}" if category else "") + f" (seed {spec.seeds[0]}):")
            print(describe(collection, protocol_split(collection, config), config["protocol"]))


def domain_note(dataset, profile, named, own_score=()):
    """The console line naming the dataset domain's quick defaults and recommended model (training.domains);
    `own_score`: the named models whose resolved config did not take the domain's score."""
    domain = domain_of(dataset)
    parts, defaults = [], domain_defaults(dataset, profile)
    if defaults:
        own_score = own_score if "score" in defaults else ()
        parts.append(f"quick defaults for {domain} data: " + ", ".join(f"{key} {value}" for key, value in defaults.items())
                     + (f" ({', '.join(own_score)} keeps its own score)" if own_score else ""))
    if domain in RECOMMENDED and RECOMMENDED[domain][0] not in named:
        model, flags, _ = RECOMMENDED[domain]
        parts.append(f"recommended for {domain} data: --model {model}" + (f" {flags}" if flags else ""))
    return "; ".join(parts) + " (chosen on the development sets: docs/defaults.md)." if parts else ""


def interrupted_line(run_dir):
    """The console line after Ctrl-C: --resume is advised only when the interrupted run kept a checkpoint."""
    if run_dir is not None:
        return f"Interrupted. Continue later with the same command plus --resume ({run_dir} has a checkpoint)."
    return ("Interrupted before this call's run saved a checkpoint, so there is nothing to resume; "
            "run the same command again to start it afresh.")


def train(spec):
    """Every run the checked `spec` describes (spec.check), then the report over them: a list of
    (config, metrics, run dir), one per model, seed and category. Raises the errors `execute` turns into exit codes."""
    _cached_dataset.cache_clear()  # each call reads the folders as they are now
    named = model_list(spec.model)
    models = planned_models(named, spec.no_floor)
    configs = {model: run_config(spec, model, spec.seeds[0], spec.category, model in named) for model in models}
    for model, config in configs.items():  # a bad flag or weights file stops the call before any data is read
        family(model).model_class.preflight(config)
    own_score = [model for model in named if "score" not in configs[model]["domain_defaults"]]
    note = domain_note(spec.dataset, spec.profile, named, own_score)
    if note:
        print(note)
    check_resume(spec.strategy, spec.resume)
    strategy = make_strategy(spec.strategy or COMMON["strategy"])  # before any other TensorFlow work
    spec = dataclasses.replace(spec, out=worker_out(strategy, spec.out))  # only the chief keeps run folders
    results = [
        result
        for category in categories(spec) for seed in spec.seeds
        for result in run_seed(spec, models, named, seed, category, strategy)
    ]
    evaluated = [result for result in results if "auroc" in result[1]]
    if len(evaluated) > 1:
        with locked_report(spec.out):  # another call writing the same report waits for this one, and then merges
            report = write_report(evaluated, spec.out)
        earlier = len(json.loads((report.parent / REPORT_RUNS).read_text())) - len(evaluated)
        kept = f" (and {earlier} run(s) of earlier calls into {report.parent}/, merged)" if earlier else ""
        print(f"\nReport over {len(evaluated)} runs{kept}:\n\n{report.with_suffix('.txt').read_text()}")
        print(f"Tables and figures: {report}.md, .csv, .txt, .png and {report.parent}/report_roc.png")
    return results


def execute(spec):
    """Run the checked `spec` (spec.check); returns the process exit code."""
    _cached_dataset.cache_clear()  # each call reads the folders as they are now
    try:
        if spec.action in ("download", "describe"):
            prepare_data(spec)
        else:
            train(spec)
    except (DatasetError, ModelNotAvailableError, PerceptualWeightsError, ConfigError, RunBusyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except TrainingDivergedError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_DIVERGED
    except KeyboardInterrupt as interrupt:
        print("\n" + interrupted_line(getattr(interrupt, "resumable", None)), file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0
