"""Command line: train, evaluate and export anomaly detectors.

    python run_experiments.py --model improved_bigan --dataset phantom --profile quick
    python run_experiments.py --model improved_bigan --dataset brain_mri --data-dir PATH
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

from data.protocols import PROTOCOLS
from data.sources import DATASET_NAMES, SOURCES
from models.names import CHANNELS, MODEL_NAMES
from training.names import PROFILE_NAMES, STRATEGIES

PROFILE_DEFAULT = "default: from --profile"


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


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default only when it has one: no "(default: None)" for settings the profile decides."""

    def _get_help_string(self, action):
        return action.help if action.default in (None, False) else super()._get_help_string(action)


def build_parser():
    parser = argparse.ArgumentParser(
        description="Train on normal images only, then score, evaluate and export an anomaly detector.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--model", default="improved_bigan", help=f"NAME[,NAME...] or 'all'; one of {', '.join(MODEL_NAMES)}")
    parser.add_argument("--dataset", default="phantom", choices=DATASET_NAMES,
                        help="phantom is generated (no download); folder reads --normal-dir and --abnormal-dir")
    parser.add_argument("--category", help="MVTec AD / Plant Village category (e.g. bottle, Tomato), or all")
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
    parser.add_argument("--epochs", type=positive_int,
                        help=f"training epochs of single-phase models (cae_d_gan; {PROFILE_DEFAULT})")
    parser.add_argument("--epochs-recon", type=non_negative_int,
                        help=f"improved_bigan: phase-1 (reconstruction-only) epochs ({PROFILE_DEFAULT})")
    parser.add_argument("--epochs-adv", type=non_negative_int,
                        help=f"improved_bigan: phase-2 (adversarial) epochs ({PROFILE_DEFAULT})")
    parser.add_argument("--batch-size", type=positive_int, help=f"images per training step ({PROFILE_DEFAULT})")
    parser.add_argument("--image-size", type=positive_int, help=f"square input size (paper: 128; {PROFILE_DEFAULT})")
    parser.add_argument("--latent-dim", type=positive_int, help=f"size of the latent code ({PROFILE_DEFAULT})")
    parser.add_argument("--channels", type=int, choices=CHANNELS,
                        help="image channels the model reads: 1 = grayscale, as in the papers (the default), 3 = RGB")
    parser.add_argument("--lr", type=float, help=f"Adam learning rate for all networks ({PROFILE_DEFAULT})")
    parser.add_argument("--perceptual-weights",
                        help=f"improved_bigan: VGG16 weights for the perceptual loss: imagenet | none | PATH ({PROFILE_DEFAULT})")
    parser.add_argument("--xla", choices=("auto", "on", "off"),
                        help="XLA-compile the train steps (default: auto, on a GPU only)")
    parser.add_argument("--strategy", choices=STRATEGIES,
                        help="tf.distribute strategy: default = one device (the default), mirrored = every local GPU, "
                             "multi_worker = the cluster in TF_CONFIG; --batch-size is the global batch")
    parser.add_argument("--mixed-precision", action="store_true", default=None,
                        help="bfloat16 compute inside the networks, float32 weights, losses, scores and exports")
    parser.add_argument("--score", help="score variant behind the score, threshold and exports: paper (0.7 MSE + "
                        "0.3 (1-SSIM)), mse, error_zmax, latent (improved_bigan, ganomaly), feature, zenati_fm, "
                        "zenati_ce (bigan, egbad, efficient_gan), skip_ganomaly, anogan, knn; default per model and profile")
    parser.add_argument("--phantom-draw", choices=("test", "dev"),
                        help="phantom: `dev` is a separate draw for tuning; reported numbers use `test` (the default)")
    parser.add_argument("--min-updates", type=non_negative_int,
                        help=f"stretch the epochs of a small training set to at least this many updates (0: off; {PROFILE_DEFAULT})")
    parser.add_argument("--nondeterministic", dest="deterministic", action="store_false", default=None,
                        help="skip TensorFlow op determinism (faster; the same command may then differ slightly)")
    parser.add_argument("--lr-schedule", choices=("constant", "cosine"),
                        help="improved_bigan: constant learning rate (the default), or cosine decay to 5 %% over the schedule")
    seeds = parser.add_mutually_exclusive_group()
    # No argparse default: with one, `--seed 0 --seeds 1,2` would not count as a conflict.
    seeds.add_argument("--seed", type=int, help="seed of the split, initialisation and augmentation (default: 0)")
    seeds.add_argument("--seeds", type=seed_list,
                       help="comma-separated seeds, e.g. 0,1,2: one run each, then mean ± std in report.md")
    parser.add_argument("--out", default="runs", help="root of run directories")
    parser.add_argument("--resume", action="store_true",
                        help="continue the newest unfinished run of this model, dataset, data and seed from its last checkpoint")
    parser.add_argument("--no-floor", action="store_true",
                        help="do not also run the classical floors (pca, knn) beside the deep models")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's own log lines and warnings (hidden otherwise)")
    return parser


def parse_args(argv=None):
    """The call's arguments, checked as far as possible without TensorFlow; a bad one exits with code 2.

    Adds `seeds` (the seeds to run, from --seed or --seeds) and `command` (the call, for config.json).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    problem = data_flag_problem(args) or (None if args.download or args.describe else out_problem(args.out))
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


def out_problem(out):
    """Why run directories cannot be made under `out`, or None; checked before any data is read.

    Nothing is created here: the nearest existing folder on the way must be writable.
    """
    path = pathlib.Path(out).absolute()
    existing = next(folder for folder in (path, *path.parents) if folder.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        return f"--out {out}: cannot create run directories there ({existing} is not a writable folder)."
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
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["predict"]:  # a subcommand with its own arguments (evaluation/predict.py)
        from evaluation.predict import main as predict  # noqa: PLC0415

        return predict(argv[1:], quiet_tensorflow)
    args = parse_args(argv)
    with quiet_tensorflow(args.verbose):
        import experiment  # noqa: PLC0415 (TensorFlow, only once the arguments are known to be good)
    return experiment.execute(args)


if __name__ == "__main__":
    sys.exit(main())
