"""Training losses: the Improved BiGAN reconstruction mix and the BiGAN adversarial terms."""

import keras
import tensorflow as tf

# Improved BiGAN §III: "MSE (0.5), MAE (0.2), perceptual VGG16 loss (0.2) and SSIM loss (0.1)", with every
# term on [0, 1] intensities (the paper normalises pixel values).
RECONSTRUCTION_WEIGHTS = {"mse": 0.5, "mae": 0.2, "perceptual": 0.2, "ssim_loss": 0.1}
# The same weights applied to [-1, 1] pixels, written in [0, 1] terms (MSE 4x, MAE 2x): what the quick
# profile was tuned with before the loss moved to [0, 1] (docs/fidelity.md), kept so its numbers stand.
PIXELS_PM1_WEIGHTS = {"mse": 2.0, "mae": 0.4, "perceptual": 0.2, "ssim_loss": 0.1}
# Mid-level VGG16 features: texture and edges, still spatially fine at 128x128 (our choice; the paper names no layer).
PERCEPTUAL_LAYER = "block3_conv3"


class PerceptualWeightsError(RuntimeError):
    """The VGG16 weights for the perceptual loss could not be loaded; str() is the user message."""


SSIM_FILTER_SIZE, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03  # tf.image.ssim's defaults


def _gaussian_blur_valid(images, size):
    """Gaussian blur (sigma 1.5, VALID padding) of [N, H, W, C], each channel alone: tf.image.ssim's window, separably.

    The batch is moved to the channel axis, where CPU depthwise convolutions are fast (the channels
    become the convolution's batch).
    """
    coords = tf.range(size, dtype=tf.float32) - (size - 1) / 2.0
    weights = tf.nn.softmax(-tf.square(coords) / (2.0 * SSIM_SIGMA**2))
    channels = tf.transpose(images, (3, 1, 2, 0))  # [C, H, W, N]
    count = tf.shape(channels)[-1]
    rows = tf.nn.depthwise_conv2d(channels, tf.tile(tf.reshape(weights, (size, 1, 1, 1)), (1, 1, count, 1)),
                                  strides=(1, 1, 1, 1), padding="VALID")
    blurred = tf.nn.depthwise_conv2d(rows, tf.tile(tf.reshape(weights, (1, size, 1, 1)), (1, 1, count, 1)),
                                     strides=(1, 1, 1, 1), padding="VALID")
    return tf.transpose(blurred, (3, 1, 2, 0))


def ssim(images, reconstructions):
    """Per-image SSIM of [-1, 1] images, numerically equal to tf.image.ssim on [0, 1]: for RGB, the mean
    of the channels' SSIMs (the mean over pixels and channels of one SSIM map, as the channels are equal in size).

    Images are mapped to [0, 1] because SSIM's luminance term is not shift-invariant. The
    formula and window are tf.image.ssim's, but the window is applied as two separable 1-D
    convolutions: tf.image.ssim's 11x11 depthwise convolution on one channel is ~15x slower on
    CPUs than the whole encoder + generator (tests/test_losses.py checks the equality).
    """
    x, y = (images + 1.0) / 2.0, (reconstructions + 1.0) / 2.0
    size = min(SSIM_FILTER_SIZE, x.shape[1], x.shape[2])
    c1, c2 = SSIM_K1**2, SSIM_K2**2  # max_val = 1
    stacked = tf.concat([x, y, x * y, tf.square(x) + tf.square(y)], axis=0)
    mean_x, mean_y, mean_xy, mean_squares = tf.split(_gaussian_blur_valid(stacked, size), 4, axis=0)
    luminance = (2.0 * mean_x * mean_y + c1) / (tf.square(mean_x) + tf.square(mean_y) + c1)
    contrast_structure = (2.0 * (mean_xy - mean_x * mean_y) + c2) / (
        mean_squares - tf.square(mean_x) - tf.square(mean_y) + c2
    )
    return tf.reduce_mean(luminance * contrast_structure, axis=[1, 2, 3])


def build_perceptual_extractor(weights, image_size):
    """Frozen VGG16 up to PERCEPTUAL_LAYER, or None when weights == 'none'.

    `weights` is 'imagenet' (Keras' normal download and cache), 'none', a path to a VGG16
    (no-top) weights file, or 'random' (untrained VGG16: only to measure its cost in benchmarks). A failed
    download stops the run: silently dropping a fifth of the paper's loss would make results incomparable.
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
    """0.5·MSE + 0.2·MAE + 0.2·perceptual + 0.1·(1 − SSIM) of images given in [-1, 1], each term on [0, 1].

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
        difference = (images - reconstructions) / 2.0  # on [0, 1] intensities (exact: a power of two)
        terms = {
            "mse": tf.reduce_mean(tf.square(difference)),
            "mae": tf.reduce_mean(tf.abs(difference)),
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
    Plain batch means, like every loss here (keras.losses would pre-divide by the replica
    count under tf.distribute; models.base.replica_gradients does that for all).
    """

    def bce(label, logits):
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.fill(tf.shape(logits), label), logits=logits))

    discriminator = bce(1.0, real_logits) + bce(0.0, fake_logits)
    encoder_generator = bce(0.0, real_logits) + bce(1.0, fake_logits)
    return discriminator, encoder_generator


def hinge_discriminator_loss(real_logits, fake_logits):
    """CAE-D-GAN eq. (5): E[max(0, 1 − D(x))] + E[max(0, 1 + D(x̂))]."""
    return tf.reduce_mean(tf.nn.relu(1.0 - real_logits)) + tf.reduce_mean(tf.nn.relu(1.0 + fake_logits))


def hinge_generator_loss(fake_logits):
    """CAE-D-GAN eq. (3): L_adv = −E[D(G(x))]."""
    return -tf.reduce_mean(fake_logits)


def dcgan_losses(real_logits, fake_logits):
    """DCGAN (Radford et al. 2016) losses: (D = BCE(real→1) + BCE(fake→0), G = BCE(fake→1)).

    The generator's is the non-saturating form; AnoGAN trains with both, GANomaly and Skip-GANomaly
    use the discriminator's.
    """
    discriminator, _ = bigan_losses(real_logits, fake_logits)
    generator = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.ones_like(fake_logits), logits=fake_logits))
    return discriminator, generator


def focal_loss(masks, logits, gamma=2.0):
    """Mean binary focal loss (Lin et al. 2017; DRAEM's γ = 2) of per-pixel logits [B, S, S] against masks in {0, 1}."""
    cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(labels=masks, logits=logits)
    return tf.reduce_mean(tf.pow(1.0 - tf.exp(-cross_entropy), gamma) * cross_entropy)
