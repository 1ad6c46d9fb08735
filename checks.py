"""Argument checks the command line (run_experiments.py) and `predict` share, free of TensorFlow so a bad value
is refused at once, before TensorFlow is imported and before any data is read (issue 21).

Each check raises argparse.ArgumentTypeError (as an argparse `type=`) or returns a one-sentence problem or None.
"""

import argparse
import contextlib
import json
import math
import os
import pathlib
import uuid

# Bounds of the numeric flags. The sizes are what the networks and memory allow: the decoder keeps large images
# at REDUCED_MIN_SIDE = 512 px at least (data/decode.py), so a larger input only upsamples, and a 512 px float32
# batch of 1024 images is already 1 GB before the first layer; the papers' largest latent code is 200.
MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 1024
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 512
MAX_LATENT_DIM = 1024
MAX_LR = 1.0
MAX_MIN_UPDATES = 1_000_000
MAX_SEED = 2**32 - 1  # numpy's and TensorFlow's seeds are unsigned 32-bit
# Images per step times pixels per image: the papers' largest setting (GANomaly, EfficientGAN: batch 64 of 256 px).
MAX_PIXELS_PER_STEP = 64 * 256 * 256
# Image channels of every model's input and output: 1 = grayscale (the papers', every preset's default), 3 = RGB.
CHANNELS = (1, 3)


def xla_problem(xla, deterministic):
    """The sentence refusing --xla on under op determinism, or None (the parser and resolve_config both ask)."""
    if xla == "on" and deterministic:
        return "--xla on needs --nondeterministic: Keras turns XLA off under TensorFlow's op determinism."
    return None


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, but a refused value is one line on stderr (the error), not the 20-line usage first."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _integer(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None


def bounded_int(low, high):
    """An argparse type: an integer in low..high."""

    def parse(text):
        value = _integer(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high:,}, got {text}")
        return value

    parse.__name__ = f"integer {low}..{high}"
    return parse


def learning_rate(text):
    """An argparse type: a finite number in (0, MAX_LR] (a negative rate ascends the loss, 0 trains nothing)."""
    return _finite_number(text, lambda value: 0 < value <= MAX_LR, f"a finite number above 0 and at most {MAX_LR:g}")


def fraction(text):
    """An argparse type: a finite number in (0, 1] (e.g. the share of patches a PatchCore bank keeps)."""
    return _finite_number(text, lambda value: 0 < value <= 1, "a finite number above 0 and at most 1")


def finite_float(text):
    """An argparse type: any finite number (a NaN threshold would mark every image normal)."""
    return _finite_number(text, lambda value: True, "a finite number")


def _finite_number(text, allowed, requirement):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (math.isfinite(value) and allowed(value)):
        raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
    return value


def seed(text):
    return bounded_int(0, MAX_SEED)(text)


def seed_list(text):
    """An argparse type: comma-separated distinct seeds in 0..2**32-1 (an empty item is refused, not dropped)."""
    parts = [part.strip() for part in text.split(",")]
    if not any(parts):
        raise argparse.ArgumentTypeError("needs at least one seed")
    if not all(parts):
        raise argparse.ArgumentTypeError(f"has an empty item in {text!r}; give comma-separated seeds such as 0,1,2")
    try:
        seeds = [int(part) for part in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers, got {text!r}") from None
    bad = [value for value in seeds if not 0 <= value <= MAX_SEED]
    if bad:
        raise argparse.ArgumentTypeError(f"seeds must be from 0 to {MAX_SEED:,}, got {bad[0]}")
    repeated = sorted({value for value in seeds if seeds.count(value) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(
            f"seed {repeated[0]} is given twice; each seed is one run, so a repeat would count one run twice")
    return seeds


def tf_config_problem(environ=os.environ):
    """Why $TF_CONFIG does not describe a multi-worker cluster with this process in it, or None."""
    text = environ.get("TF_CONFIG")
    if not text:
        return ("--strategy multi_worker needs the TF_CONFIG environment variable (the cluster and this process's "
                "task); without it the run would silently train as one worker.")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        return f"--strategy multi_worker: TF_CONFIG is not valid JSON ({error.msg} at character {error.pos})."
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not any(cluster.get(kind) for kind in ("worker", "chief")):
        return '--strategy multi_worker: TF_CONFIG has no "cluster" with a "worker" (or "chief") list of host:port.'
    for kind, addresses in cluster.items():
        if not isinstance(addresses, list) or not all(isinstance(a, str) and ":" in a for a in addresses):
            return f'--strategy multi_worker: TF_CONFIG\'s cluster "{kind}" must be a list of "host:port" strings.'
    if not isinstance(task, dict) or task.get("type") not in cluster or not isinstance(task.get("index"), int) \
            or not 0 <= task["index"] < len(cluster[task["type"]]):
        return ('--strategy multi_worker: TF_CONFIG\'s "task" must name this process\'s place in the cluster, '
                'e.g. {"type": "worker", "index": 0}.')
    return None


def writable_folder_problem(folder, flag="--out"):
    """Why `folder` cannot be created and written, or None: checked by really creating it and a probe file.

    What this creates (the probe, and folders that did not exist) is removed again, so a call refused later
    leaves nothing behind. A path under /proc or a read-only mount passes os.access but fails here.
    """
    path = pathlib.Path(folder).absolute()
    existing = next(parent for parent in (path, *path.parents) if parent.exists())
    if not existing.is_dir():
        return f"{flag} {folder}: cannot create a folder there ({existing} is a file, not a folder)."
    created = [parent for parent in (path, *path.parents) if not parent.exists()]
    probe = path / f".write-probe-{uuid.uuid4().hex}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        with open(probe, "x") as handle:
            handle.write("probe")
        probe.unlink()
    except OSError as error:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
        return f"{flag} {folder}: cannot create and write files there ({error.strerror or error})."
    finally:
        for parent in created:  # deepest first; only what this check made, and only if still empty
            try:
                parent.rmdir()
            except OSError:
                break
    return None
