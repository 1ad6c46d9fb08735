"""The Python API: train from the command line's settings, load a trained run or SavedModel, score arrays or files.

    import api
    runs = api.train(model="fcae", dataset="brain_mri", data_dir="data/brain_mri", seeds=[0, 1])
    detector = api.load(runs[0].run_dir)            # a run folder, or any exported SavedModel folder
    result = detector.score(images)                 # uint8 [N, H, W] or [N, H, W, C] (any size), or floats in [0, 1]
    result["score"], result["is_anomalous"], result["anomaly_map"]
    rows = detector.score_files(["scan.png", "folder/"], out="predictions")   # what `predict` writes

Settings are the command line's flags as keyword arguments (underscores for dashes, True for a switch), checked
by the same parser, so a notebook gets the same defaults, errors and run folders as `run_experiments.py train`.
"""

import dataclasses
import pathlib

import numpy as np

import run_experiments


@dataclasses.dataclass(frozen=True)
class Run:
    """One finished run: its folder (config.json, metrics.json, scores.csv, saved_model/, plots/) and its metrics."""

    run_dir: pathlib.Path
    config: dict
    metrics: dict


def train(**settings):
    """Train, evaluate and export every model, seed and category `settings` name; returns their `Run`s.

    Raises ValueError with the command line's message for a bad setting, and the run's own error otherwise.
    """
    argv = ["train"]
    for name, value in settings.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value not in (None, False):
            argv += [flag, ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)]
    try:
        args = run_experiments.parse_args(argv)
    except SystemExit as refused:
        raise ValueError(f"Refused settings {settings} (the reason is printed above).") from refused
    import experiment  # noqa: PLC0415 (TensorFlow, only once the settings are known to be good)

    return [Run(pathlib.Path(run_dir), config, metrics) for config, metrics, run_dir in experiment.train(args)]


class Detector:
    """A trained detector, from its SavedModel alone: what `predict` and the exported model score."""

    def __init__(self, path):
        import tensorflow as tf  # noqa: PLC0415

        from evaluation.predict import saved_model_path  # noqa: PLC0415

        self.path = saved_model_path(path)
        self._signatures = tf.saved_model.load(str(self.path)).signatures

    def score(self, images):
        """{name: numpy array} for a batch: score, is_anomalous, threshold, anomaly_map and the other outputs.

        uint8 or uint16 arrays are intensities (their full range), float arrays must be in [0, 1]; a missing
        channel axis is added. Images of any size are resized like training's.
        """
        import tensorflow as tf  # noqa: PLC0415

        images = np.asarray(images)
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4:
            raise ValueError(f"images must be [N, H, W] or [N, H, W, C]; got shape {images.shape}.")
        name = {np.dtype("uint8"): "serving_default", np.dtype("uint16"): "serving_uint16"}.get(images.dtype)
        if name is None:
            images = images.astype(np.float32)
            if not np.isfinite(images).all() or images.min() < 0 or images.max() > 1:
                raise ValueError("float images must be finite and in [0, 1] (or pass uint8 / uint16 intensities).")
            name = "serving_float"
        return {key: value.numpy() for key, value in self._signatures[name](images=tf.constant(images)).items()}

    def score_files(self, paths, out="predictions", threshold=None, overlays=False, save_maps=False):
        """Score image files and folders as `run_experiments.py predict` does (writing predictions.csv under
        `out`); returns its rows."""
        from evaluation.predict import predict  # noqa: PLC0415

        return predict(self.path, [str(path) for path in paths], pathlib.Path(out), threshold, overlays, save_maps)


def load(path):
    """The `Detector` of a run folder (holding saved_model/) or of a SavedModel folder."""
    return Detector(path)
