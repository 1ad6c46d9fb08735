"""Anomaly scores and error maps, part of the model graph so evaluation and export agree.

Every model exposes `score_pairs(images)`: one (reference, reconstruction) pair per module (one
module for most models, three for the CAE-D-GAN cascade). Each pair gets an `AnomalyScorer`:
score = Σ weight · (term − mean) / std over the terms MSE and 1 − SSIM, each standardised on the
validation normals (Improved BiGAN §III uses 0.7 · MSE + 0.3 · (1 − SSIM)), so 0 means "as typical
as a validation normal". A `ScoreCombiner` averages the module scores into the model's score and
holds the decision threshold.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from training.losses import ssim

SCORE_WEIGHTS = {"mse": 0.7, "ssim_error": 0.3}
_TERMS = ("mse", "ssim_error", "error_zmax")
ERROR_SMOOTHING_SIGMA = 1.0  # pixels: one-pixel noise is not a lesion


def smooth_error(error_maps):
    """[N, H, W] |x − x̂| -> Gaussian-smoothed (σ = 1 px, 5-tap, SAME), the map the z-map is built on."""
    taps = np.exp(-0.5 * (np.arange(-2, 3) / ERROR_SMOOTHING_SIGMA) ** 2)
    taps = tf.constant(taps / taps.sum(), tf.float32)
    maps = tf.convert_to_tensor(error_maps, tf.float32)[..., None]
    maps = tf.nn.conv2d(maps, tf.reshape(taps, (5, 1, 1, 1)), 1, "SAME")
    return tf.nn.conv2d(maps, tf.reshape(taps, (1, 5, 1, 1)), 1, "SAME")[..., 0]


@keras.saving.register_keras_serializable(package="bigan_ad")
class AnomalyScorer(layers.Layer):
    """(references, reconstructions) -> score, its terms, PSNR, the |x − x̂| error map and its z-map.

    Terms: mse, ssim_error (1 − SSIM) and error_zmax, the largest value of the smoothed error map
    standardised per pixel by the training normals' mean and std at that pixel (a normative map:
    a pixel counts as anomalous when it errs more than normals do there, which finds small
    lesions that a whole-image mean dilutes). score = Σ weight · (term − mean) / std over the
    weighted terms. All calibration lives in non-trainable weights, saved with the model and
    baked into the SavedModel.
    """

    def __init__(self, image_size, weights=None, **kwargs):
        super().__init__(**kwargs)
        self.image_size = image_size
        self.term_weights = dict(weights or SCORE_WEIGHTS)

    def build(self, input_shape=None):
        self.stats = {
            term: (self._stat(f"{term}_mean", 0.0), self._stat(f"{term}_std", 1.0)) for term in _TERMS
        }
        pixels = (self.image_size, self.image_size)
        self.pixel_mean = self._stat("pixel_error_mean", 0.0, pixels)
        self.pixel_std = self._stat("pixel_error_std", 1.0, pixels)
        super().build(input_shape)

    def _stat(self, name, value, shape=()):
        return self.add_weight(name=name, shape=shape, initializer=keras.initializers.Constant(value), trainable=False)

    def call(self, references, reconstructions):
        references = tf.cast(references, tf.float32)
        reconstructions = tf.cast(reconstructions, tf.float32)
        difference = references - reconstructions
        error_map = tf.reduce_mean(tf.abs(difference), axis=-1)
        z_map = (smooth_error(error_map) - self.pixel_mean) / self.pixel_std
        terms = {
            "mse": tf.reduce_mean(tf.square(difference), axis=[1, 2, 3]),
            "ssim_error": 1.0 - ssim(references, reconstructions),
            "error_zmax": tf.reduce_max(z_map, axis=[1, 2]),
        }
        score = tf.add_n([
            weight * (terms[term] - self.stats[term][0]) / self.stats[term][1]
            for term, weight in self.term_weights.items()
        ])
        return {
            "score": score,
            **terms,
            "psnr": tf.image.psnr(references, reconstructions, max_val=2.0),
            "error_map": error_map,
            "z_map": z_map,
        }

    def calibrate_pixels(self, mean, std):
        """Set the z-map's per-pixel mean and std of normals' smoothed error maps (std smoothed too, floored)."""
        std = np.asarray(smooth_error(np.asarray(std, np.float32)[None]))[0]
        self.pixel_mean.assign(np.asarray(mean, np.float32))
        self.pixel_std.assign(np.maximum(std, max(float(np.median(std)) * 0.1, 1e-4)))

    def calibrate(self, raw_terms):
        """Fix the normalisation from the validation normals' raw terms (std floored to avoid /0)."""
        for term, (mean, std) in self.stats.items():
            mean.assign(float(np.mean(raw_terms[term])))
            std.assign(max(float(np.std(raw_terms[term])), 1e-8))

    def get_config(self):
        return {**super().get_config(), "image_size": self.image_size, "weights": self.term_weights}


@keras.saving.register_keras_serializable(package="bigan_ad")
class ScoreCombiner(layers.Layer):
    """Module scores -> their mean (the model's score) and the decision at the stored threshold."""

    def build(self, input_shape=None):
        self.threshold = self.add_weight(
            name="threshold", shape=(), initializer=keras.initializers.Constant(np.inf), trainable=False
        )
        super().build(input_shape)

    def call(self, module_scores):
        score = tf.add_n(module_scores) / float(len(module_scores))
        return {"score": score, "is_anomalous": score >= self.threshold}


def build_detector(model, image_size, channels=1, score_weights=None):
    """Functional inference model: images in [-1, 1] -> reconstruction, score, decision, per-module terms.

    Top-level mse / ssim_error / psnr / error_map / reconstruction are the last module's (the
    model's final reconstruction); with several modules each also reports `<module>_<output>`.
    """
    images = keras.Input((image_size, image_size, channels), name="image")
    pairs = model.score_pairs(images)
    outputs, module_scores = {}, []
    for name, (reference, reconstruction, *_) in pairs.items():
        scorer = AnomalyScorer(image_size, score_weights, name=scorer_name(name, len(pairs)), dtype="float32")
        terms = scorer(reference, reconstruction)
        module_scores.append(terms["score"])
        if len(pairs) > 1:
            outputs.update({f"{name}_{key}": value for key, value in terms.items()})
    outputs.update({key: value for key, value in terms.items() if key != "score"})
    outputs["reconstruction"] = reconstruction
    outputs.update(ScoreCombiner(name="score_combiner", dtype="float32")(module_scores))
    return keras.Model(images, outputs, name="anomaly_detector")


def scorer_name(module, n_modules):
    return "anomaly_scorer" if n_modules == 1 else f"anomaly_scorer_{module}"


def module_scorers(detector):
    """{module name: (scorer layer, output-key prefix)} in cascade order, for a built or reloaded detector.

    A single-module detector reports its terms under plain keys (prefix ""); a cascade under
    "<module>_" as well.
    """
    # Keras lists a functional model's layers by graph depth; scorer names carry the cascade order.
    scorers = sorted((layer for layer in detector.layers if isinstance(layer, AnomalyScorer)), key=lambda layer: layer.name)
    if len(scorers) == 1:
        return {scorers[0].name: (scorers[0], "")}
    return {
        layer.name.removeprefix("anomaly_scorer_"): (layer, layer.name.removeprefix("anomaly_scorer_") + "_")
        for layer in scorers
    }


def score_batches(detector, dataset, keep=("score", "mse", "ssim_error", "psnr")):
    """Run the detector over a batched dataset and concatenate the requested outputs as numpy arrays."""
    collected = {name: [] for name in keep}
    for batch in dataset:
        outputs = detector(batch, training=False)
        for name in keep:
            collected[name].append(np.asarray(outputs[name]))
    return {name: np.concatenate(parts) for name, parts in collected.items()}
