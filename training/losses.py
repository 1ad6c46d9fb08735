"""Training losses: the Improved BiGAN reconstruction mix and the BiGAN adversarial terms."""

import keras
import tensorflow as tf

# Improved BiGAN §III: "MSE (0.5), MAE (0.2), perceptual VGG16 loss (0.2) and SSIM loss (0.1)".
RECONSTRUCTION_WEIGHTS = {"mse": 0.5, "mae": 0.2, "perceptual": 0.2, "ssim_loss": 0.1}
# Mid-level VGG16 features: texture and edges, still spatially fine at 128x128 (our choice; the paper names no layer).
PERCEPTUAL_LAYER = "block3_conv3"


class PerceptualWeightsError(RuntimeError):
    """The VGG16 weights for the perceptual loss could not be loaded; str() is the user message."""


def ssim(images, reconstructions):
    """Per-image SSIM of [-1, 1] images, computed on [0, 1] as tf.image.ssim expects.

    SSIM's luminance term is not shift-invariant and misbehaves for negative means, so the
    images are mapped to [0, 1] first; the 11x11 window shrinks for images smaller than it.
    """
    filter_size = min(11, images.shape[1], images.shape[2])
    return tf.image.ssim((images + 1.0) / 2.0, (reconstructions + 1.0) / 2.0, max_val=1.0, filter_size=filter_size)


def build_perceptual_extractor(weights, image_size):
    """Frozen VGG16 up to PERCEPTUAL_LAYER, or None when weights == 'none'.

    `weights` is 'imagenet' (Keras' normal download and cache), 'none', a path to a VGG16
    (no-top) weights file, or 'random' (untrained VGG16: only to measure its cost in benchmarks). A failed download stops the run: silently dropping a fifth
    of the paper's loss would make results incomparable.
    """
    if weights == "none":
        return None
    try:
        vgg = keras.applications.VGG16(
            include_top=False, weights=None if weights == "random" else weights, input_shape=(image_size, image_size, 3)
        )
    except Exception as error:  # download (URLError, HTTPError, OSError) or file errors
        raise PerceptualWeightsError(
            f"Could not load VGG16 weights '{weights}' for the perceptual loss ({type(error).__name__}: {error}). "
            "Run once with internet access so Keras caches the ImageNet weights, pass "
            "--perceptual-weights PATH to a local VGG16 no-top weights file, or --perceptual-weights none "
            "to train without the perceptual term."
        ) from error
    extractor = keras.Model(vgg.input, vgg.get_layer(PERCEPTUAL_LAYER).output, name="perceptual_vgg16")
    extractor.trainable = False
    return extractor


class ReconstructionLoss:
    """0.5·MSE + 0.2·MAE + 0.2·perceptual + 0.1·(1 − SSIM) on images in [-1, 1].

    A plain object rather than a Layer so that the frozen VGG16 is never saved with the model.
    With no perceptual extractor the term is 0 and the other weights stay as in the paper.
    """

    def __init__(self, perceptual_extractor=None, weights=None):
        self.extractor = perceptual_extractor
        self.weights = dict(weights or RECONSTRUCTION_WEIGHTS)

    @property
    def terms(self):
        """Names of the terms that are computed (perceptual only with an extractor)."""
        return [name for name in self.weights if name != "perceptual" or self.extractor is not None]

    def _features(self, images):
        rgb = tf.repeat((images + 1.0) * 127.5, 3, axis=-1) if images.shape[-1] == 1 else (images + 1.0) * 127.5
        return self.extractor(keras.applications.vgg16.preprocess_input(rgb), training=False)

    def __call__(self, images, reconstructions):
        """Dict of each term (batch mean) plus 'total', the weighted sum."""
        images = tf.cast(images, tf.float32)
        reconstructions = tf.cast(reconstructions, tf.float32)
        terms = {
            "mse": tf.reduce_mean(tf.square(images - reconstructions)),
            "mae": tf.reduce_mean(tf.abs(images - reconstructions)),
            "ssim_loss": 1.0 - tf.reduce_mean(ssim(images, reconstructions)),
        }
        if self.extractor is not None:
            terms["perceptual"] = tf.reduce_mean(tf.square(self._features(images) - self._features(reconstructions)))
        terms["total"] = tf.add_n([self.weights[name] * value for name, value in terms.items()])
        return terms


def bigan_losses(real_logits, fake_logits):
    """BiGAN (Donahue et al. 2016) losses for pairs (x, E(x)) = real and (G(z), z) = fake.

    Returns (discriminator loss, encoder+generator loss); the latter uses flipped labels
    (the non-saturating form), so E and G learn to make the two joint distributions match.
    """
    bce = keras.losses.BinaryCrossentropy(from_logits=True)
    ones, zeros = tf.ones_like(real_logits), tf.zeros_like(real_logits)
    discriminator = bce(ones, real_logits) + bce(zeros, fake_logits)
    encoder_generator = bce(zeros, real_logits) + bce(ones, fake_logits)
    return discriminator, encoder_generator
