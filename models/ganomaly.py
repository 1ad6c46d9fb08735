"""GANomaly (Akcay et al. 2018) and Skip-GANomaly (Akçay et al. 2019): an image-to-image generator judged by a
discriminator whose features it must match, trained on normal images only.

- GANomaly: encoder–decoder–encoder generator x -> z = G_E(x) -> x̂ = G_D(z) -> ẑ = E(x̂); discriminator
  D with features f(·). L_G = w_adv·‖f(x) − f(x̂)‖² + w_con·|x − x̂| + w_enc·‖z − ẑ‖² (w 1, 50, 1, the
  paper's); L_D = binary cross-entropy. Score: the latent distance, which §3.3 writes as the L1 norm
  A(x) = ‖G_E(x) − E(G(x))‖₁; we compute what the official code does (lib/model.py), the mean over the
  latent units of (G_E(x) − E(G(x)))² (variant `latent`), the squared distance L_enc trains on.
- Skip-GANomaly: a U-Net generator (skip connections between mirrored encoder and decoder stages).
  L_G = w_adv·BCE(D(x̂) -> real) + w_con·|x − x̂| + w_lat·‖f(x) − f(x̂)‖² (w 1, 50, 1); score (§3.3)
  A(x) = λ·R(x) + (1 − λ)·L(x), λ = 0.9, R the mean squared reconstruction error and L the mean
  squared feature distance, as the official code computes them (variant `skip_ganomaly`).

`AdversarialReconstruction` (on models.adversarial.GANBaseline, which AnoGAN shares) is what both have in
common: a G update on weighted terms, then a D update against that x̂. BatchNorm runs in inference mode at
test time: score_pairs calls every network with training=False, and the detector, evaluation and the
export call the model with training=False. The last epoch's weights are used: no model selection or
early stopping on test AUROC (the official GANomaly code keeps the epoch with the best test AUROC; we
never look at test labels during training).
"""

import keras
import tensorflow as tf
from keras import layers

from models.adversarial import TABLE_2_AT_256, GANBaseline, family
from models.base import ScorePair
from models.batchnorm import precise_batchnorm
from models.layers import conv_block, conv_decoder, conv_encoder, deconv_block, image_output
from models.losses import dcgan_losses

# Sizes. `paper`: 128×128, the Improved BiGAN's resize of its datasets (§IV-B) and Skip-GANomaly's in CAE-D-GAN Table 2;
# `paper_256`: GANomaly's 256×256 of Table 2 (one more stage, down to 4×4 again), on that paper's chest X-rays only
# (adversarial.TABLE_2_AT_256). `quick` the autoencoder baselines' widths at 64×64; `tiny` for tests. Latent 100 is
# GANomaly's nz.
GANOMALY_PRESETS = {
    "paper": {"image_size": 128, "channels": 1, "latent_dim": 100, "filters": [32, 64, 128, 256, 512],
              "discriminator_filters": [32, 64, 128, 256, 512]},
    "paper_256": {"image_size": 256, "channels": 1, "latent_dim": 100, "filters": [32, 64, 128, 256, 512, 512],
                  "discriminator_filters": [32, 64, 128, 256, 512, 512]},
    "quick": {"image_size": 64, "channels": 1, "latent_dim": 64, "filters": [16, 32, 64, 128],
              "discriminator_filters": [16, 32, 64, 128]},
    "tiny": {"image_size": 32, "channels": 1, "latent_dim": 8, "filters": [4, 8], "discriminator_filters": [4, 8]},
}
SKIP_GANOMALY_PRESETS = {
    "paper": {"image_size": 128, "channels": 1, "filters": [32, 64, 128, 256, 512],
              "discriminator_filters": [32, 64, 128, 256, 512]},
    "quick": {"image_size": 64, "channels": 1, "filters": [16, 32, 64, 128], "discriminator_filters": [16, 32, 64, 128]},
    "tiny": {"image_size": 32, "channels": 1, "filters": [4, 8], "discriminator_filters": [4, 8]},
}


def squared_distance(a, b):
    """Per-image mean of (a − b)² over every axis but the batch (latent units or feature-map cells)."""
    difference = keras.ops.cast(a, "float32") - keras.ops.cast(b, "float32")  # keras.ops: runs on symbolic inputs too
    return keras.ops.mean(keras.ops.square(difference), axis=tuple(range(1, len(difference.shape))))


class AdversarialReconstruction(GANBaseline):
    """x -> x̂ by the generator networks, judged by D; one G update, then one D update, a step.

    Subclasses implement `generator_terms(images)` -> (terms named in LOSS_TERMS, x̂) and `score_pairs`.
    """

    progress_logs = ("g_loss", "con_loss", "d_loss")  # the console's epoch line (training.callbacks.ProgressLine)

    def train_step(self, data):
        """The official codes' order: G on its weighted terms, then D on x (real) against the x̂ of that pass (fake)."""
        images, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        self.discriminator_update(images, self.generator_update(images))
        return self.logs()

    def generator_update(self, images):
        """One Adam step of the generator networks on Σ w_term · term; returns the x̂ it computed (before the step)."""
        with tf.GradientTape() as tape:
            terms, reconstruction = self.generator_terms(images)
            g_loss = tf.add_n([self.loss_weights[term] * terms[term] for term in self.LOSS_TERMS])
        self.apply_gradients(self.generator_optimizer, tape, g_loss, self.generator_variables)
        self.track({"g_loss": g_loss, **{f"{term}_loss": terms[term] for term in self.LOSS_TERMS}})
        return reconstruction


@keras.saving.register_keras_serializable(package="bigan_ad")
class GANomaly(AdversarialReconstruction):
    """Encoder G_E, decoder G_D and a second encoder E (Akcay et al. 2018, Fig. 2), plus D."""

    LOSS_TERMS = ("adv", "con", "enc")
    # The paper's own score (§3.3, written with L1), squared as the official code computes it (default under `paper`).
    score_variants = {"latent": {"latent_distance": 1.0}}

    def build_generator(self):
        """The shared conv encoder / decoder blocks (models.layers), the second encoder a copy of the first's shape."""
        latent = {"latent": self.config["latent_dim"]}
        return {"encoder": conv_encoder(self.config, latent, name="encoder"),
                "decoder": conv_decoder(self.config, self.config["latent_dim"], name="decoder"),
                "reencoder": conv_encoder(self.config, latent, name="reencoder")}

    def encode_decode_encode(self, images, training):
        networks = self.generator_networks
        latent = networks["encoder"](images, training=training)
        reconstruction = networks["decoder"](latent, training=training)
        return latent, reconstruction, networks["reencoder"](reconstruction, training=training)

    def generator_terms(self, images):
        latent, reconstruction, relatent = self.encode_decode_encode(images, training=True)
        _, real_features = self.discriminator(images, training=True)
        _, fake_features = self.discriminator(reconstruction, training=True)
        return {
            "adv": tf.reduce_mean(tf.square(real_features - fake_features)),  # feature matching
            "con": tf.reduce_mean(tf.abs(images - reconstruction)),
            "enc": tf.reduce_mean(tf.square(latent - relatent)),
        }, reconstruction

    def score_pairs(self, images):
        """One module: x against x̂ = G_D(G_E(x)), and the latent distance ‖G_E(x) − E(x̂)‖² / d."""
        latent, reconstruction, relatent = self.encode_decode_encode(images, training=False)
        return {self.name: ScorePair(images, reconstruction, {"latent_distance": squared_distance(latent, relatent)})}

    def finish_training(self, normals):
        """Precise BatchNorm statistics for the final weights, network by network along the inference path."""
        networks = self.generator_networks
        precise_batchnorm(networks["encoder"], normals)
        codes = normals.map(lambda images: networks["encoder"](images, training=False))
        precise_batchnorm(networks["decoder"], codes)
        precise_batchnorm(networks["reencoder"], codes.map(lambda code: networks["decoder"](code, training=False)))


def build_unet_generator(config):
    """x -> x̂: strided conv blocks down, transposed-conv blocks up, each up stage concatenated with the
    down stage of its size (Skip-GANomaly Fig. 2, a U-Net), tanh output. The first block has no
    BatchNorm (DCGAN / pix2pix practice)."""
    size, channels, filters = config["image_size"], config["channels"], config["filters"]
    images = keras.Input((size, size, channels), name="input_image")  # "image" is the output layer's name
    x, skips = images, []
    for index, width in enumerate(filters):
        x = conv_block(x, width, f"down{index}", batch_norm=index > 0)
        skips.append(x)
    for index, (width, skip) in enumerate(zip(reversed(filters[:-1]), reversed(skips[:-1]))):
        x = layers.Concatenate(name=f"skip{index}")([deconv_block(x, width, f"up{index}"), skip])
    return keras.Model(images, image_output(x, channels), name="generator")


# §3.3 of Skip-GANomaly: A(x) = λ·R(x) + (1 − λ)·L(x), λ = 0.9.
SKIP_GANOMALY_LAMBDA = 0.9


@keras.saving.register_keras_serializable(package="bigan_ad")
class SkipGANomaly(AdversarialReconstruction):
    """A U-Net generator and D (Akçay et al. 2019)."""

    LOSS_TERMS = ("adv", "con", "lat")
    score_variants = {"skip_ganomaly": {"mse": SKIP_GANOMALY_LAMBDA, "feature_distance": 1.0 - SKIP_GANOMALY_LAMBDA}}

    def build_generator(self):
        return {"generator": build_unet_generator(self.config)}

    def generator_terms(self, images):
        reconstruction = self.generator_networks["generator"](images, training=True)
        real, real_features = self.discriminator(images, training=True)
        fake, fake_features = self.discriminator(reconstruction, training=True)
        return {
            "adv": dcgan_losses(real, fake)[1],
            "con": tf.reduce_mean(tf.abs(images - reconstruction)),
            "lat": tf.reduce_mean(tf.square(real_features - fake_features)),
        }, reconstruction

    def score_pairs(self, images):
        """One module: x against G(x), and the feature distance ‖f(x) − f(G(x))‖² (mean over D's last feature map)."""
        reconstruction = self.generator_networks["generator"](images, training=False)
        _, real_features = self.discriminator(images, training=False)
        _, fake_features = self.discriminator(reconstruction, training=False)
        return {self.name: ScorePair(images, reconstruction,
                                     {"feature_distance": squared_distance(real_features, fake_features)})}

    def finish_training(self, normals):
        """Precise BatchNorm statistics of the U-Net for the final weights (D has no BatchNorm)."""
        precise_batchnorm(self.generator_networks["generator"], normals)


GANOMALY_FAMILY = family(GANomaly, GANOMALY_PRESETS, "latent", TABLE_2_AT_256, w_adv=1.0, w_con=50.0, w_enc=1.0)
SKIP_GANOMALY_FAMILY = family(SkipGANomaly, SKIP_GANOMALY_PRESETS, "skip_ganomaly", w_adv=1.0, w_con=50.0, w_lat=1.0)
