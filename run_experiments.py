"""Command line: train, evaluate and export anomaly detectors (argument parsing and orchestration only).

    python run_experiments.py --model improved_bigan --dataset phantom --profile quick
    python run_experiments.py --model improved_bigan --dataset brain_mri --data-dir PATH
"""

import argparse
import functools
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out of the user's way

import keras  # noqa: E402
import numpy as np  # noqa: E402

from data.describe import describe, duplicates_line  # noqa: E402
from data.download import download  # noqa: E402
from data.pipeline import image_dataset  # noqa: E402
from data.protocols import (  # noqa: E402
    PROTOCOLS,
    make_split,
    split_from_json,
    write_split,
)
from data.sources import (  # noqa: E402
    DATASET_NAMES,
    SOURCES,
    DatasetError,
    available_categories,
    load_dataset,
)
from evaluation.evaluate import calibrate, evaluate  # noqa: E402
from evaluation.export import export_saved_model  # noqa: E402
from evaluation.report import dataset_label, summary_table, write_report, write_tensorboard_results  # noqa: E402
from evaluation.scoring import build_detector  # noqa: E402
from models.config import ConfigError  # noqa: E402
from models.registry import FAMILIES, FLOOR_NAMES, MODEL_NAMES, ModelNotAvailableError, check_model_name  # noqa: E402
from training.callbacks import TrainingDivergedError  # noqa: E402
from training.losses import PerceptualWeightsError  # noqa: E402
from training.distribution import STRATEGIES, make_strategy  # noqa: E402
from training.profiles import (  # noqa: E402
    COMMON, OVERRIDABLE, PROFILE_NAMES, applicable_overrides, resolve_config, scale_to_data,
)
from training.runs import latest_unfinished_run, new_run_dir, set_state  # noqa: E402
from training.trainer import compiled_model, fit, set_determinism  # noqa: E402

EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 3, 130
# With one validation normal the score's std is 0 and every score explodes (±2·10⁷ was seen); three is
# the fewest that gives a spread at all (the smoke profile's 40-normal phantom has exactly three).
MIN_VALIDATION_NORMALS = 3


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def seed_list(text):
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("needs at least one seed")
    return seeds


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Train on normal images only, then score, evaluate and export an anomaly detector.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", default="improved_bigan", help=f"NAME[,NAME...] or 'all'; one of {', '.join(MODEL_NAMES)}")
    parser.add_argument("--dataset", default="phantom", choices=DATASET_NAMES)
    parser.add_argument("--category", help="MVTec AD / Plant Village category (e.g. bottle, Tomato)")
    parser.add_argument("--data-dir", help="dataset folder (default: $BIGAN_DATA_DIR/<dataset>, then ./datasets/<dataset>)")
    parser.add_argument("--normal-dir", help="--dataset folder: folder of normal images")
    parser.add_argument("--abnormal-dir", help="--dataset folder: folder of abnormal images")
    parser.add_argument("--protocol", choices=PROTOCOLS,
                        help="train/test protocol (default: native for mvtec_ad, cae_d_gan for chest_xray_*, "
                             "improved_bigan otherwise)")
    parser.add_argument("--source", default="local", choices=SOURCES, help="plant_village: a local folder or TFDS")
    parser.add_argument("--describe", action="store_true",
                        help="print what the dataset holds and how the protocol splits it, then exit (no training)")
    parser.add_argument("--download", action="store_true",
                        help="download the dataset (and --category for mvtec_ad) into --data-dir, then exit")
    parser.add_argument("--profile", default="quick", choices=PROFILE_NAMES,
                        help="paper = the paper's full schedule; quick = minutes on a CPU; smoke = seconds")
    parser.add_argument("--epochs", type=positive_int, help="training epochs of single-phase models (cae_d_gan)")
    parser.add_argument("--epochs-recon", type=non_negative_int, help="improved_bigan: phase-1 (reconstruction-only) epochs")
    parser.add_argument("--epochs-adv", type=non_negative_int, help="improved_bigan: phase-2 (adversarial) epochs")
    parser.add_argument("--batch-size", type=positive_int)
    parser.add_argument("--image-size", type=positive_int, help="square input size (paper: 128)")
    parser.add_argument("--latent-dim", type=positive_int)
    parser.add_argument("--lr", type=float, help="Adam learning rate for all networks")
    parser.add_argument("--perceptual-weights", help="VGG16 weights for the perceptual loss: imagenet | none | PATH")
    parser.add_argument("--xla", choices=("auto", "on", "off"), help="XLA-compile the train steps (auto: on a GPU only)")
    parser.add_argument("--strategy", choices=STRATEGIES,
                        help="tf.distribute strategy: default (one device), mirrored (every local GPU), "
                             "multi_worker (the cluster in TF_CONFIG); --batch-size is the global batch")
    parser.add_argument("--mixed-precision", action="store_true", default=None,
                        help="bfloat16 compute inside the networks, float32 weights, losses, scores and exports")
    parser.add_argument("--score", help="score variant behind the score, threshold and exports: paper (0.7 MSE + "
                        "0.3 (1-SSIM)), mse, error_zmax, latent (improved_bigan); default per model and profile")
    parser.add_argument("--phantom-draw", choices=("test", "dev"),
                        help="phantom: `dev` is a separate draw for tuning; reported numbers use `test`")
    parser.add_argument("--min-updates", type=non_negative_int,
                        help="stretch the epochs of a small training set to at least this many updates (0: off)")
    parser.add_argument("--nondeterministic", dest="deterministic", action="store_false", default=None,
                        help="skip TensorFlow op determinism (faster; the same command may then differ slightly)")
    parser.add_argument("--lr-schedule", choices=("constant", "cosine"),
                        help="improved_bigan: constant learning rate, or cosine decay to 5 %% over the schedule")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=seed_list, help="comma-separated seeds, e.g. 0,1,2: one run each, then mean ± std in report.md")
    parser.add_argument("--out", default="runs", help="root of run directories")
    parser.add_argument("--resume", action="store_true", help="continue the latest unfinished run of this model/dataset")
    parser.add_argument("--no-floor", action="store_true",
                        help="do not also run the classical floors (pca, knn) beside the deep models")
    return parser.parse_args(argv)


def model_names(value):
    if value == "all":  # every model that exists; the planned ones are named, not silently dropped
        missing = [name for name in MODEL_NAMES if name not in FAMILIES]
        if missing:
            print(f"--model all: skipping {len(missing)} model(s) not available yet: {', '.join(missing)}.")
        return [name for name in MODEL_NAMES if name in FAMILIES]
    names = [name.strip() for name in value.split(",") if name.strip()]
    for name in names:
        check_model_name(name)
    return names


def planned_models(names, no_floor):
    """The models each seed runs, floors first (seconds; their AUROCs go into the deep runs' metrics).

    A call naming a deep model also runs the floors unless --no-floor; a floor named explicitly runs once.
    """
    deep = [name for name in names if name not in FLOOR_NAMES]
    return [name for name in FLOOR_NAMES if name in names or (deep and not no_floor)] + deep


def run_config(args, model, seed, category, named):
    """The resolved config of one run. A floor the user did not name takes only the flags it has a use
    for (e.g. --image-size, not the deep model's --epochs) and keeps its own score (a deep model's
    --score must not change what the floor is); a named model refuses the others."""
    overrides = {key: getattr(args, key) for key in OVERRIDABLE}
    if not named:
        overrides = applicable_overrides(model, args.dataset, args.profile, {**overrides, "score": None})
    return resolve_config(model, args.dataset, args.profile, seed=seed, category=category, protocol=args.protocol,
                          **overrides)


def run(args, model, seed, category, strategy, named=True, floor=None, floor_variants=None):
    """One model, seed and category: data -> split -> train (under `strategy`) -> calibrate -> evaluate -> export.

    `floor` ({floor model: AUROC} on the same split) is stored in metrics.json and printed beside
    the model's AUROC; `floor_variants` ({floor model: its score_variants}) gives `floor_same_score`,
    each floor's AUROC under this model's own score (a PCA scored like the model). Returns (config, metrics, run dir).
    """
    config = run_config(args, model, seed, category, named)
    run_dir = latest_unfinished_run(args.out, config) if args.resume else None
    if run_dir is not None:
        config = json.loads((run_dir / "config.json").read_text())
        print(f"Resuming {run_dir} (its saved config.json is used; other flags are ignored).")
    elif args.resume:
        print(f"No unfinished {model} run on {args.dataset} under {args.out}/; starting a new run.")

    set_determinism(config)  # before any dataset is built: tf.data's parallel maps follow it
    keras.utils.set_random_seed(config["seed"])
    collection = load_collection(args, config)
    if collection.skipped:
        print(f"Skipped {len(collection.skipped)} unusable file(s); they are listed under 'skipped' in split.json.")
    if duplicates_line(collection.duplicates):
        print(duplicates_line(collection.duplicates))
    if run_dir is None:
        split = protocol_split(collection, config)
        if len(split.validation) < MIN_VALIDATION_NORMALS:
            raise DatasetError(
                f"Only {len(split.validation)} validation normal(s) after the split ({len(split.train)} training normals); "
                f"the score's standardisation and the threshold need at least {MIN_VALIDATION_NORMALS}. Add normal "
                "images (about 10 % of the training normals are held out for validation).")
        config = scale_to_data(config, len(split.train))
        if config["epoch_scale"] > 1:
            print(f"Small training set ({len(split.train)} images, {config['steps_per_epoch']} steps an epoch): epochs "
                  f"x{config['epoch_scale']} to reach {config['min_updates']} updates (--min-updates 0 turns this off).")
        run_dir = new_run_dir(args.out, config)
        (run_dir / "config.json").write_text(json.dumps(config, indent=1))
        write_split(run_dir / "split.json", collection, split)
    else:
        split = split_from_json(collection, json.loads((run_dir / "split.json").read_text()))
    print(f"Run directory: {run_dir}")
    print(f"Images: {len(split.train)} train, {len(split.validation)} validation normals, "
          f"{len(split.test)} test ({int(collection.labels[split.test].sum())} abnormal).")
    if collection.not_used or split.not_used:
        print(f"Left out on purpose: {len(collection.not_used) + len(split.not_used)} image(s), listed with the "
              "reason under 'not_used' in split.json.")

    size, batch = config["architecture"]["image_size"], config["batch_size"]
    train_ds = image_dataset(collection, split.train, size, batch, training=True, seed=config["seed"])
    validation_ds = image_dataset(collection, split.validation, size, batch)
    normals_ds = image_dataset(collection, split.train, size, batch)  # un-augmented training normals
    abnormal = split.test[collection.labels[split.test] == 1]
    preview_indices = np.concatenate([split.validation[:4], abnormal[:4]])
    preview = next(iter(image_dataset(collection, preview_indices, size, len(preview_indices))))

    with strategy.scope():  # variables and optimizer slots are created per replica
        network = compiled_model(config)
    set_state(run_dir, "running")
    started = time.perf_counter()
    history = fit(network, train_ds, normals_ds, preview, config, run_dir, verbose=1 if sys.stdout.isatty() else 2)

    detector = build_detector(network, size, config["architecture"]["channels"], config["score"])
    calibrate(detector, normals_ds, validation_ds, config["threshold_quantile"])
    threshold_label = f"threshold ({config['threshold_quantile']:.0%} quantile of validation normals)"
    metrics = evaluate(detector, collection, split, batch, run_dir, history, threshold_label,
                       extra_metrics=floor_metrics(floor, floor_variants, config["score"]), started=started)
    write_tensorboard_results(run_dir / "tensorboard", metrics, run_dir / "plots" / "roc.png", len(history))
    detector.save(run_dir / "model.keras")
    export_saved_model(detector, run_dir / "saved_model", size)
    set_state(run_dir, "finished")

    print(f"\n{model} on {dataset_label(config)} (profile {config['profile']}, protocol {config['protocol']}, "
          f"seed {config['seed']}), {len(history)} epochs:")
    print(summary_table(metrics, config))
    print(f"\nEverything is in {run_dir}  (tensorboard --logdir {args.out})")
    return config, metrics, run_dir


def floor_metrics(floor, floor_variants, score):
    """metrics.json's `floor` (the floors' own AUROCs) and `floor_same_score` (theirs under `score`)."""
    if not floor:
        return None
    same = {name: variants[score] for name, variants in (floor_variants or {}).items() if score in variants}
    return {"floor": floor, **({"floor_same_score": same} if same else {})}


def run_seed(args, models, named, seed, category, strategy):
    """Every planned model on one seed's split, floors first, so each deep run gets the floors' AUROCs."""
    results, floor, floor_variants = [], {}, {}
    for model in models:
        is_floor = model in FLOOR_NAMES
        result = run(args, model, seed, category, strategy, named=model in named,
                     floor=None if is_floor else floor, floor_variants=None if is_floor else floor_variants)
        if is_floor:
            floor[model] = result[1]["auroc"]
            floor_variants[model] = result[1]["score_variants"]
        results.append(result)
    return results


def load_collection(args, config):
    """The dataset of a resolved config; where it lives on disk comes from the command line.

    Only the generated phantom depends on the seed, so a folder is scanned, decoded and checked for
    duplicates once for all the models and seeds of a call, not once per run.
    """
    seed = config["seed"] if config["dataset"] == "phantom" else 0
    return _cached_dataset(
        config["dataset"], data_dir=args.data_dir, normal_dir=args.normal_dir, abnormal_dir=args.abnormal_dir,
        seed=seed, phantom_normals=config["phantom_normals"], phantom_abnormals=config["phantom_abnormals"],
        phantom_draw=config["phantom_draw"],
        category=config["category"], source=args.source,
    )


# Runs loop category > seed > model, so one cached dataset serves a category's runs and memory holds one at a time.
_cached_dataset = functools.lru_cache(maxsize=1)(load_dataset)


def protocol_split(collection, config):
    return make_split(config["protocol"], collection, config["seed"], config["test_fraction"], config["validation_fraction"])


def categories(args):
    """--category all -> every category found on disk (MVTec AD, Plant Village); else the one given (or None)."""
    if args.category == "all":
        return available_categories(args.dataset, args.data_dir, args.source)
    return [args.category]


def prepare_data(args):
    """--download and/or --describe: the data part only, no model is built."""
    if args.download:
        print(download(args.dataset, args.data_dir, args.category))
    if args.describe:
        for category in categories(args):
            config = resolve_config(model_names(args.model)[0], args.dataset, args.profile, seed=args.seed,
                                    category=category, protocol=args.protocol)
            collection = load_collection(args, config)
            print(f"\n{args.dataset}" + (f" {category}" if category else "") + f" (seed {args.seed}):")
            print(describe(collection, protocol_split(collection, config), config["protocol"]))


def check_data_flags(args):
    """Folders given to a dataset that does not read them would be ignored silently: refuse instead."""
    if (args.normal_dir or args.abnormal_dir) and args.dataset != "folder":
        raise ConfigError(f"--normal-dir/--abnormal-dir are read by --dataset folder only (this call has --dataset "
                          f"{args.dataset}); add --dataset folder.")
    if args.data_dir and args.dataset in ("phantom", "folder"):
        raise ConfigError(f"--dataset {args.dataset} does not read --data-dir; name the dataset in that folder, "
                          "e.g. --dataset brain_mri (or --dataset folder --normal-dir A --abnormal-dir B).")


def main(argv=None):
    args = parse_args(argv)
    _cached_dataset.cache_clear()  # each call reads the folders as they are now
    try:
        check_data_flags(args)
        if args.download or args.describe:
            prepare_data(args)
            return 0
        named = model_names(args.model)
        models = planned_models(named, args.no_floor)
        for model in models:  # a bad flag stops the call before any run, not after the floors
            run_config(args, model, args.seed, args.category, model in named)
        strategy = make_strategy(args.strategy or COMMON["strategy"])  # before any other TensorFlow work
        results = [
            result
            for category in categories(args) for seed in (args.seeds or [args.seed])
            for result in run_seed(args, models, named, seed, category, strategy)
        ]
        if len(results) > 1:
            report = write_report(results, args.out)
            print(f"\nReport over {len(results)} runs:\n\n{report.with_suffix('.txt').read_text()}")
            print(f"Tables and figures: {report}.md, .csv, .txt, .png and {report.parent}/report_roc.png")
    except (DatasetError, ModelNotAvailableError, PerceptualWeightsError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except TrainingDivergedError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_DIVERGED
    except KeyboardInterrupt:
        print("\nInterrupted. Continue later with the same command plus --resume.", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
