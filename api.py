"""The Python API: train from a run spec's settings, load a trained run or SavedModel, score arrays or files.

    import api
    runs = api.train(model="fcae", dataset="brain_mri", data_dir="data/brain_mri", seeds=[0, 1])
    again = api.train(config=runs[0].run_dir / "config.json")   # the same run again (same AUROC)
    detector = api.load(runs[0].run_dir)            # a run folder, or any exported SavedModel folder
    result = detector.score(images)                 # uint8 [N, H, W] or [N, H, W, C] (C 1-4, any size), or floats in [0, 1]
    result["score"], result["is_anomalous"], result["anomaly_map"]
    rows = detector.score_files(["scan.png", "folder/"], out="predictions")   # what `predict` writes

Settings are the command line's flags as keyword arguments (underscores for dashes, True for a switch, `seed` or
`seeds`), typed (0 is 0): they build the same run spec (spec.py) the command line builds, checked by the same
`spec.check`, so a notebook gets the same defaults and run folders as `run_experiments.py train`, and a refused
setting raises spec.SpecError whose message is the reason.
"""

import dataclasses
import pathlib

import numpy as np

from spec import SpecError, build, check

__all__ = ["Detector", "Run", "SpecError", "load", "spec", "train"]

# Image channels a SavedModel takes: grey, grey + alpha, RGB, RGBA (data.pipeline.to_model_input converts them).
IMAGE_CHANNELS = (1, 2, 3, 4)


@dataclasses.dataclass(frozen=True)
class Run:
    """One finished run: its folder (config.json, metrics.json, scores.csv, saved_model/, plots/) and its metrics."""

    run_dir: pathlib.Path
    config: dict
    metrics: dict


def spec(config=None, **settings):
    """The checked RunSpec `train` runs: from the settings, repeating the run whose config.json is `config`, or
    continuing the run folder `resume` names (then only out, verbose and resume may be given). Raises SpecError
    with the reason; imports no TensorFlow."""
    built = build(config, **settings)
    check(built)
    return built


def train(config=None, **settings):
    """Train, evaluate and export every model, seed and category `settings` name (or repeat the run whose
    config.json is `config`); returns their `Run`s.

    Raises SpecError (a ValueError) whose message is the reason for a refused setting, before TensorFlow is
    imported, and the run's own error otherwise.
    """
    return run(spec(config, **settings))


def run(checked):
    """Train the RunSpec `checked` (already through spec.check); returns its `Run`s."""
    import experiment  # noqa: PLC0415 (TensorFlow, only once the settings are known to be good)

    return [Run(pathlib.Path(run_dir), config, metrics) for config, metrics, run_dir in experiment.train(checked)]


class Detector:
    """A trained detector, from its SavedModel alone: what `predict` and the exported model score."""

    def __init__(self, path):
        import tensorflow as tf  # noqa: PLC0415

        from evaluation.predict import saved_model_path  # noqa: PLC0415

        self.path = saved_model_path(path)
        self._signatures = tf.saved_model.load(str(self.path)).signatures

    def score(self, images):
        """{name: numpy array} for a batch: score, is_anomalous, threshold, anomaly_map and the other outputs.

        uint8 or uint16 arrays are intensities (their full range), float arrays must be in [0, 1]; channels last
        (1-4), a missing channel axis is added. Images of any size are resized like training's. A shape or type the
        model would misread raises ValueError saying so.
        """
        import tensorflow as tf  # noqa: PLC0415

        images = checked_images(images)
        name = {np.dtype("uint8"): "serving_default", np.dtype("uint16"): "serving_uint16"}.get(images.dtype, "serving_float")
        return {key: value.numpy() for key, value in self._signatures[name](images=tf.constant(images)).items()}

    def score_files(self, paths, out="predictions", threshold=None, overlays=False, save_maps=False):
        """Score image files and folders as `run_experiments.py predict` does (writing predictions.csv under
        `out`); returns its rows."""
        from evaluation.predict import predict  # noqa: PLC0415

        return predict(self.path, [str(path) for path in paths], pathlib.Path(out), threshold, overlays, save_maps)


def checked_images(images):
    """`images` as Detector.score passes them on: [N, H, W, C] uint8, uint16 or float32 in [0, 1]; raises ValueError
    for what would be misread (channels first, 0, 5 or more channels, an empty side, other integer types)."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"images must be [N, H, W] or [N, H, W, C]; got shape {images.shape}.")
    if images.shape[-1] not in IMAGE_CHANNELS:
        first = " (channels first? pass [N, H, W, C])" if images.shape[1] in IMAGE_CHANNELS else ""
        raise ValueError(f"images must have 1-4 channels last, [N, H, W, C]; got shape {images.shape}{first}.")
    if min(images.shape[1:3]) < 2 or images.shape[0] == 0:
        raise ValueError(f"images must hold at least one image of at least 2 x 2 pixels; got shape {images.shape}.")
    if images.dtype in (np.uint8, np.uint16):
        return images
    if images.dtype.kind != "f":
        raise ValueError(f"images must be uint8 or uint16 intensities or floats in [0, 1]; got {images.dtype}.")
    images = images.astype(np.float32)
    if not np.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        raise ValueError("float images must be finite and in [0, 1] (or pass uint8 / uint16 intensities).")
    return images


def load(path):
    """The `Detector` of a run folder (holding saved_model/) or of a SavedModel folder."""
    return Detector(path)
