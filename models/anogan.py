"""AnoGAN (Schlegl et al. 2017): a DCGAN trained on normal images; at test time the latent code whose image
best matches x is searched by gradient steps.

Training is plain DCGAN (one D update, then one G update, on z ~ N(0, I)). Scoring (§2.2): for an
image x, z is moved by Adam on L(z) = (1 − λ)·R(z) + λ·D(z), R = Σ|x − G(z)| (the residual loss),
D = Σ|f(x) − f(G(z))| (the discrimination loss, f the discriminator's last feature map), λ = 0.1;
the anomaly score is L at the last step, the reconstruction G(z_Γ). The paper takes Γ = 500 steps
per image; here the search is a fixed, small number of steps (`search_steps`: 3 tiny, 10 quick,
100 paper), batched over the images, inside a registered layer (`LatentSearch`), so the detector,
model.keras and the SavedModel all run it. Every image's z and Adam moments are its own, so an
image scores the same alone and in a batch.
"""

import keras
import tensorflow as tf

from models.adversarial import GANBaseline, family
from models.base import ScorePair
from models.batchnorm import precise_batchnorm
from models.layers import GradientSearch, conv_decoder
from models.losses import dcgan_losses

# AnoGAN §2.2: λ = 0.1 weighs the discrimination loss against the residual loss, in the search and the score.
ANOGAN_LAMBDA = 0.1

# No AnoGAN row in CAE-D-GAN Table 2: `paper` is the Improved BiGAN's 128×128 with Table 2's batch and
# epochs; generator widths as the autoencoder baselines' decoders. search_lr: Adam's step on z (z ~ N(0, 1)).
PRESETS = {
    "paper": {"image_size": 128, "channels": 1, "latent_dim": 100, "filters": [32, 64, 128, 256, 512],
              "discriminator_filters": [32, 64, 128, 256, 512], "search_steps": 100, "search_lr": 0.05},
    "quick": {"image_size": 64, "channels": 1, "latent_dim": 64, "filters": [16, 32, 64, 128],
              "discriminator_filters": [16, 32, 64, 128], "search_steps": 10, "search_lr": 0.1},
    "tiny": {"image_size": 32, "channels": 1, "latent_dim": 8, "filters": [4, 8], "discriminator_filters": [4, 8],
             "search_steps": 3, "search_lr": 0.1},
}


@keras.saving.register_keras_serializable(package="bigan_ad")
class LatentSearch(GradientSearch):
    """Images x -> (G(z_Γ), residual, discrimination): `steps` Adam steps on z from z_0 = 0, batched.

    z_0 = 0 (the prior's mode) rather than a random draw, so a score does not depend on a seed or
    on the image's place in the batch. G and D always run in inference mode, whatever the caller's
    `training`: a search must never update BatchNorm statistics. The steps are models.layers'
    `adam_search`, shared with the CAE-D-GAN's code search.
    """

    networks = ("generator", "discriminator")

    def __init__(self, generator, discriminator, steps, learning_rate, weight=ANOGAN_LAMBDA, **kwargs):
        super().__init__(steps, learning_rate, **kwargs)
        self.generator, self.discriminator = generator, discriminator
        self.weight = float(weight)

    def terms(self, images, real_features, latent):
        """Per image (residual Σ|x − G(z)|, discrimination Σ|f(x) − f(G(z))|) and G(z)."""
        generated = tf.cast(self.generator(latent, training=False), tf.float32)
        fake_features = tf.cast(self.discriminator(generated, training=False)[1], tf.float32)
        residual = tf.reduce_sum(tf.abs(images - generated), axis=[1, 2, 3])
        discrimination = tf.reduce_sum(tf.abs(real_features - fake_features), axis=[1, 2, 3])
        return residual, discrimination, generated

    def search(self, images, steps=None):
        """z after `steps` Adam steps on L(z) from z_0 = 0 (default: the layer's own count), per image."""
        images = tf.cast(images, tf.float32)
        real_features = tf.stop_gradient(tf.cast(self.discriminator(images, training=False)[1], tf.float32))

        def loss(z):
            residual, discrimination, _ = self.terms(images, real_features, z)
            return (1.0 - self.weight) * residual + self.weight * discrimination

        return self.descend(loss, tf.zeros((tf.shape(images)[0], self.generator.input_shape[-1]), tf.float32), steps)

    def call(self, images, training=False):
        images = tf.cast(images, tf.float32)
        latent = self.search(images)
        real_features = tf.cast(self.discriminator(images, training=False)[1], tf.float32)
        residual, discrimination, generated = self.terms(images, real_features, latent)
        return generated, residual, discrimination

    def compute_output_shape(self, input_shape):
        return tuple(input_shape), (input_shape[0],), (input_shape[0],)

    def get_config(self):
        return {**super().get_config(), "weight": self.weight}


@keras.saving.register_keras_serializable(package="bigan_ad")
class AnoGAN(GANBaseline):
    """DCGAN generator G (the shared conv decoder) and feature discriminator D; scored by the latent search."""

    progress_logs = ("g_loss", "d_loss")
    # §2.2: A(x) = (1 − λ)·R(x) + λ·D(x) at the searched z, the paper's own score (the default under --profile paper).
    score_variants = {"anogan": {"residual": 1.0 - ANOGAN_LAMBDA, "discrimination": ANOGAN_LAMBDA}}

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        self.latent_search = LatentSearch(self.generator, self.discriminator, self.config["search_steps"],
                                          self.config["search_lr"], name="latent_search", dtype="float32")

    def build_generator(self):
        return {"generator": conv_decoder(self.config, self.config["latent_dim"], name="generator")}

    @property
    def generator(self):
        return self.generator_networks["generator"]

    def score_pairs(self, images):
        """One module: x against G(z_Γ), with the residual and discrimination losses as extra terms."""
        reconstruction, residual, discrimination = self.latent_search(images)
        return {self.name: ScorePair(images, reconstruction, {"residual": residual, "discrimination": discrimination})}

    def noise(self, images):
        return tf.random.normal((tf.shape(images)[0], self.config["latent_dim"]))

    def train_step(self, data):
        """DCGAN: D on real x against G(z), then G (non-saturating) on a fresh z."""
        images, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        self.discriminator_update(images, self.generator(self.noise(images), training=True))
        self.generator_update(images)
        return self.logs()

    def generator_update(self, images):
        with tf.GradientTape() as tape:
            fake = self.discriminator(self.generator(self.noise(images), training=True), training=True)[0]
            _, g_loss = dcgan_losses(tf.zeros_like(fake), fake)  # only the generator's term is used
        self.apply_gradients(self.generator_optimizer, tape, g_loss, self.generator.trainable_variables)
        self.track({"g_loss": g_loss})

    def finish_training(self, normals):
        """Precise BatchNorm statistics of G for the final weights, on prior draws (what G was trained on),
        one batch per batch of training normals; seeded, so the same run gives the same statistics."""
        latent_dim = self.config["latent_dim"]
        draws = normals.enumerate().map(lambda index, images: tf.random.stateless_normal(
            (tf.shape(images)[0], latent_dim), seed=tf.stack([index, tf.constant(0, tf.int64)])))
        precise_batchnorm(self.generator, draws)


ANOGAN_FAMILY = family(AnoGAN, PRESETS, "anogan")
