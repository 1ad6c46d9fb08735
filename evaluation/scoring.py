"""Anomaly scores and error maps, part of the model graph so evaluation and export agree.

Every model exposes `score_pairs(images)`: one models.base.ScorePair (reference, reconstruction, extra
terms) per module (one module for most models, three for the CAE-D-GAN cascade). Each gets
an `AnomalyScorer`: score = (Σ weight · term − mean) / std for the chosen variant, standardised on
the validation normals, so 0 means "as typical as a validation normal" (variant `paper`: Improved
BiGAN §III's 0.7 · MSE + 0.3 · (1 − SSIM)). A `ScoreCombiner` averages the module scores into the model's score and
holds the decision threshold.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from models.base import COMMON_VARIANTS, score_variants
from models.layers import gaussian_smooth
from models.losses import ssim

ERROR_SMOOTHING_SIGMA = 1.0  # pixels: one-pixel noise is not a lesion
# The localisation map (`anomaly_map`: pixel AUROC, heat maps): the error smoothed at σ = 2 px,
# divided by where normals typically err there (the training normals' mean smoothed error) plus half
# that mean's median, which keeps background pixels with almost no normal error from exploding.
# Chosen on the phantom's dev draw (docs/design.md "Scoring and thresholds").
ANOMALY_MAP_SIGMA = 2.0
ANOMALY_MAP_DAMPING = 0.5


def smooth_error(error_maps, sigma=ERROR_SMOOTHING_SIGMA):
    """[N, H, W] |x − x̂| (or a model's own anomaly map) -> Gaussian-smoothed (models.layers.gaussian_smooth)."""
    return gaussian_smooth(error_maps, sigma)


@keras.saving.register_keras_serializable(package="bigan_ad")
class AnomalyScorer(layers.Layer):
    """(references, reconstructions[, extra terms]) -> score, every score variant, the terms, PSNR, error map, z-map.

    Maps: error_map |x − x̂|, z_map (smoothed, standardised per pixel) and anomaly_map (smoothed
    at 2 px, relative to the normals' typical error there: the localisation map).
    Terms: mse (on [0, 1] intensities, like SSIM), ssim_error (1 − SSIM), error_zmax (the largest value of the smoothed error map
    standardised per pixel by the training normals' mean and std there: a normative map, so a
    pixel counts as anomalous when it errs more than normals do there, which finds small lesions
    a whole-image mean dilutes), and any per-image terms the model adds (e.g. latent_distance).
    Each variant's raw value Σ weight · term is standardised on the validation normals
    (`score_<variant>`); `score` is the chosen variant's. All calibration lives in non-trainable
    weights, saved with the model and baked into the SavedModel.
    """

    def __init__(self, image_size, score="paper", variants=None, **kwargs):
        super().__init__(**kwargs)
        self.image_size = image_size
        self.variants = {name: dict(weights) for name, weights in (variants or COMMON_VARIANTS).items()}
        if score not in self.variants:
            raise ValueError(f"Unknown score {score!r}; choose one of {sorted(self.variants)}.")
        self.score = score

    def build(self, input_shape=None):
        self.stats = {
            name: (self._stat(f"{name}_mean", 0.0), self._stat(f"{name}_std", 1.0)) for name in self.variants
        }
        pixels = (self.image_size, self.image_size)
        self.pixel_mean = self._stat("pixel_error_mean", 0.0, pixels)
        self.pixel_std = self._stat("pixel_error_std", 1.0, pixels)
        self.typical_error = self._stat("typical_error", 1.0, pixels)
        super().build(input_shape)

    def _stat(self, name, value, shape=()):
        return self.add_weight(name=name, shape=shape, initializer=keras.initializers.Constant(value), trainable=False)

    def call(self, references, reconstructions=None, extra_terms=None, predicted_map=None):
        """`predicted_map`, a model's own anomaly map, takes the place of |x − x̂| as the error map (models.base.ScorePair);
        without a reconstruction there are no reconstruction terms (mse, ssim_error, psnr)."""
        terms = {}
        if reconstructions is not None:
            references = tf.cast(references, tf.float32)
            reconstructions = tf.cast(reconstructions, tf.float32)
            difference = references - reconstructions
            terms["mse"] = tf.reduce_mean(tf.square(difference / 2.0), axis=[1, 2, 3])  # on [0, 1] intensities
            terms["ssim_error"] = 1.0 - ssim(references, reconstructions)
        error_map = (tf.reduce_mean(tf.abs(difference), axis=-1) if predicted_map is None
                     else tf.cast(predicted_map, tf.float32))
        z_map = (smooth_error(error_map) - self.pixel_mean) / self.pixel_std
        terms["error_zmax"] = tf.reduce_max(z_map, axis=[1, 2])
        terms.update({name: tf.cast(value, tf.float32) for name, value in (extra_terms or {}).items()})
        variants = {
            f"score_{name}": (variant_raw(terms, weights) - self.stats[name][0]) / self.stats[name][1]
            for name, weights in self.variants.items()
        }
        quality = {} if reconstructions is None else {"psnr": tf.image.psnr(references, reconstructions, max_val=2.0)}
        return {
            "score": variants[f"score_{self.score}"],
            "raw_score": variant_raw(terms, self.variants[self.score]),
            **variants,
            **terms,
            **quality,
            "error_map": error_map,
            "z_map": z_map,
            "anomaly_map": smooth_error(error_map, ANOMALY_MAP_SIGMA) / self.typical_error,
        }

    def calibrate_pixels(self, mean, std):
        """Set the z-map's per-pixel mean and std of normals' smoothed error maps (std smoothed too, floored),
        and the anomaly map's typical error (the mean smoothed on to ANOMALY_MAP_SIGMA: Gaussians compose)."""
        mean = np.asarray(mean, np.float32)
        extra_sigma = (ANOMALY_MAP_SIGMA**2 - ERROR_SMOOTHING_SIGMA**2) ** 0.5
        typical = np.asarray(smooth_error(mean[None], extra_sigma))[0]
        self.typical_error.assign(typical + ANOMALY_MAP_DAMPING * max(float(np.median(typical)), 1e-6))
        std = np.asarray(smooth_error(np.asarray(std, np.float32)[None]))[0]
        self.pixel_mean.assign(mean)
        self.pixel_std.assign(np.maximum(std, max(float(np.median(std)) * 0.1, 1e-4)))

    def calibrate(self, raw_terms):
        """Fix each variant's standardisation from the validation normals' raw terms (std floored to avoid /0)."""
        for name, (mean, std) in self.stats.items():
            raw = variant_raw(raw_terms, self.variants[name])
            mean.assign(float(np.mean(raw)))
            std.assign(max(float(np.std(raw)), 1e-8))

    @property
    def terms(self):
        """The raw terms the variants need (what calibration must collect)."""
        return sorted({term for weights in self.variants.values() for term in weights})

    def get_config(self):
        return {**super().get_config(), "image_size": self.image_size, "score": self.score, "variants": self.variants}


def variant_raw(terms, weights):
    """A variant's unstandardised score Σ weight · term (for `paper`, exactly the paper's formula)."""
    return sum(weight * terms[term] for term, weight in weights.items())


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


def build_detector(model, image_size, channels=1, score="paper"):
    """Functional inference model: images in [-1, 1] -> reconstruction, score, decision, per-module terms.

    `score` names the variant behind `score` and the threshold (see COMMON_VARIANTS); every
    variant is also output as `score_<variant>`. Top-level terms / error_map / reconstruction
    are the last module's (the model's final reconstruction); with several modules each also
    reports `<module>_<output>`.
    """
    images = keras.Input((image_size, image_size, channels), name="image")
    pairs = model.score_pairs(images)
    variants = score_variants(model)
    outputs, module_scores = {}, []
    for name, pair in pairs.items():
        scorer = AnomalyScorer(image_size, score, variants, name=scorer_name(name, len(pairs)), dtype="float32")
        terms = scorer(pair.reference, reconstructions=pair.reconstruction, extra_terms=pair.terms,
                       predicted_map=pair.anomaly_map)
        module_scores.append(terms["score"])
        if len(pairs) > 1:
            outputs.update({f"{name}_{key}": value for key, value in terms.items()})
    outputs.update({key: value for key, value in terms.items() if key != "score"})
    if pair.reconstruction is not None:
        outputs["reconstruction"] = pair.reconstruction  # the last module's
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
    """Run the detector over a batched dataset and concatenate the requested outputs it has as numpy arrays
    (a model without a reconstruction has no mse, ssim_error or psnr)."""
    collected = {name: [] for name in keep if name in detector_outputs(detector)}
    for batch in dataset:
        outputs = detector(batch, training=False)
        for name, parts in collected.items():
            parts.append(np.asarray(outputs[name]))
    return {name: np.concatenate(parts) for name, parts in collected.items()}


def detector_outputs(detector):
    """The names of a detector's outputs (a functional model with a dict of outputs)."""
    return set(detector.output)
