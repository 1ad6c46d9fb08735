"""Anomaly score and error map, part of the model graph so evaluation and export agree.

Improved BiGAN §III: score = 0.7 · MSE error + 0.3 · (1 − SSIM). The two terms live on very
different scales, so each is standardised with the mean and standard deviation it has on the
validation normals (SPEC §5) before weighting; 0 means "as typical as a validation normal".
"""

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from training.losses import ssim

SCORE_WEIGHTS = {"mse": 0.7, "ssim_error": 0.3}


@keras.saving.register_keras_serializable(package="bigan_ad")
class AnomalyScorer(layers.Layer):
    """(images, reconstructions) -> score, its components, |x − x̂| error map and the decision.

    Calibration (per-term mean/std on validation normals, and the threshold) is stored in
    non-trainable weights, so it is saved with the model and baked into the SavedModel.
    """

    def build(self, input_shape=None):
        def stat(name, value):
            return self.add_weight(name=name, shape=(), initializer=keras.initializers.Constant(value), trainable=False)

        self.mse_mean, self.mse_std = stat("mse_mean", 0.0), stat("mse_std", 1.0)
        self.ssim_error_mean, self.ssim_error_std = stat("ssim_error_mean", 0.0), stat("ssim_error_std", 1.0)
        self.threshold = stat("threshold", np.inf)
        super().build(input_shape)

    def call(self, images, reconstructions):
        images = tf.cast(images, tf.float32)
        reconstructions = tf.cast(reconstructions, tf.float32)
        difference = images - reconstructions
        mse = tf.reduce_mean(tf.square(difference), axis=[1, 2, 3])
        ssim_error = 1.0 - ssim(images, reconstructions)
        score = SCORE_WEIGHTS["mse"] * (mse - self.mse_mean) / self.mse_std + SCORE_WEIGHTS["ssim_error"] * (
            ssim_error - self.ssim_error_mean
        ) / self.ssim_error_std
        return {
            "score": score,
            "mse": mse,
            "ssim_error": ssim_error,
            "psnr": tf.image.psnr(images, reconstructions, max_val=2.0),
            "error_map": tf.reduce_mean(tf.abs(difference), axis=-1),
            "is_anomalous": score >= self.threshold,
        }

    def calibrate(self, mse, ssim_error):
        """Fix the normalisation from the validation normals' raw terms (std floored to avoid /0)."""
        for mean_var, std_var, values in (
            (self.mse_mean, self.mse_std, mse),
            (self.ssim_error_mean, self.ssim_error_std, ssim_error),
        ):
            mean_var.assign(float(np.mean(values)))
            std_var.assign(max(float(np.std(values)), 1e-8))


def build_detector(autoencoder, image_size, channels=1):
    """Functional inference model: preprocessed images in [-1, 1] -> reconstruction + AnomalyScorer outputs."""
    images = keras.Input((image_size, image_size, channels), name="image")
    reconstruction = autoencoder.generator(autoencoder.encoder(images))
    outputs = AnomalyScorer(name="anomaly_scorer")(images, reconstruction)
    return keras.Model(images, {"reconstruction": reconstruction, **outputs}, name="anomaly_detector")


def score_batches(detector, dataset, keep=("score", "mse", "ssim_error", "psnr")):
    """Run the detector over a batched dataset and concatenate the requested outputs as numpy arrays."""
    collected = {name: [] for name in keep}
    for batch in dataset:
        outputs = detector(batch, training=False)
        for name in keep:
            collected[name].append(np.asarray(outputs[name]))
    return {name: np.concatenate(parts) for name, parts in collected.items()}
