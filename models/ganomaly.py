"""GANomaly (Akcay et al. 2018) and Skip-GANomaly (Akçay et al. 2019): an image-to-image generator judged by a
discriminator whose features it must match, trained on normal images only.

- GANomaly: encoder–decoder–encoder generator x -> z = G_E(x) -> x̂ = G_D(z) -> ẑ = E(x̂); discriminator
  D with features f(·). L_G = w_adv·‖f(x) − f(x̂)‖² + w_con·|x − x̂| + w_enc·‖z − ẑ‖² (w 1, 50, 1, the
  paper's); L_D = binary cross-entropy. Score (§3.3): A(x) = ‖G_E(x) − E(G(x))‖², the latent
  distance, mean over the latent units (the official code's `latent` variant here).
- Skip-GANomaly: a U-Net generator (skip connections between mirrored encoder and decoder stages).
  L_G = w_adv·BCE(D(x̂) -> real) + w_con·|x − x̂| + w_lat·‖f(x) − f(x̂)‖² (w 1, 50, 1); score (§3.3)
  A(x) = λ·R(x) + (1 − λ)·L(x), λ = 0.9, R the mean squared reconstruction error and L the mean
  squared feature distance, as the official code computes them (variant `skip_ganomaly`).

`AdversarialReconstruction` is what both share: the discriminator and its update, per-network Adam
optimizers, the one-phase schedule, checkpoints, and BatchNorm in inference mode at test time
(score_pairs calls every network with training=False, so neither the detector nor the export can
run BatchNorm on batch statistics). A subclass builds its generator networks, says which terms
its generator loss has (`generator_terms`) and what it scores (`score_pairs`). The last epoch's
weights are used: no model selection or early stopping on test AUROC (the official GANomaly code
keeps the epoch with the best test AUROC; we never look at test labels).
"""

import types

import keras
import tensorflow as tf
from keras import layers

from models.config import ConfigError
from models.layers import conv_block, conv_decoder, conv_encoder, deconv_block, feature_discriminator, image_output
from training.batchnorm import precise_batchnorm
from training.distribution import replica_gradients
from training.losses import dcgan_losses
from training.schedule import SinglePhaseSchedule

# Sizes: CAE-D-GAN Table 2 for `paper` (GANomaly 256×256, Skip-GANomaly 128×128, batch 64, 50 epochs);
# `quick` the autoencoder baselines' widths at 64×64; `tiny` for tests. Latent 100 is GANomaly's nz.
GANOMALY_PRESETS = {
    "paper": {"image_size": 256, "channels": 1, "latent_dim": 100, "filters": [32, 64, 128, 256, 512, 512],
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


def training_settings(paper_score):
    """Run profiles: the original papers' Adam 2e-4 everywhere (no GAN schedule was tuned here).

    `paper` scores with the model's own paper score; `quick` and `smoke` with the project's
    error_zmax (every variant is reported either way).
    """
    return {
        "paper": {"preset": "paper", "epochs": 50, "batch_size": 64, "lr": 2e-4, "score": paper_score, "min_updates": 0},
        "quick": {"preset": "quick", "epochs": 50, "batch_size": 32, "lr": 2e-4, "score": "error_zmax",
                  "min_updates": 600},  # as the autoencoder baselines: at least 600 updates on small sets
        "smoke": {"preset": "tiny", "epochs": 1, "batch_size": 16, "lr": 2e-4, "score": "error_zmax", "min_updates": 0},
    }


ADAM = {"beta_1": 0.5, "beta_2": 0.999}  # DCGAN's, kept by GANomaly, Skip-GANomaly and AnoGAN


def validate_architecture(config):
    """Raise ConfigError when the image cannot be halved as often as the generator or discriminator needs."""
    for key in ("filters", "discriminator_filters"):
        stride = 2 ** len(config[key])
        if config["image_size"] % stride:
            raise ConfigError(f"image_size {config['image_size']} must be a multiple of {stride} for the {len(config[key])} "
                              f"down-sampling stages of {key}; pick e.g. 32, 64, 128 or 256.")


def family(presets, paper_score, **loss_weights):
    """The registry's view of one model: presets, run profiles, Adam and the generator loss weights."""
    return types.SimpleNamespace(PRESETS=presets, TRAINING=training_settings(paper_score),
                                 TRAINING_COMMON={**ADAM, **loss_weights}, validate_architecture=validate_architecture)


def squared_distance(a, b):
    """Per-image mean of (a − b)² over every axis but the batch (latent units or feature-map cells)."""
    difference = keras.ops.cast(a, "float32") - keras.ops.cast(b, "float32")  # keras.ops: runs on symbolic inputs too
    return keras.ops.mean(keras.ops.square(difference), axis=tuple(range(1, len(difference.shape))))


class AdversarialReconstruction(keras.Model):
    """x -> x̂ by generator networks, judged by a feature discriminator; one G update then one D update a step.

    Subclasses build `generator_networks` (name -> network, every trainable part of G) in
    `build_generator`, and implement `generator_terms(images)` -> (terms, x̂) with the terms named in
    LOSS_TERMS (each weighted by the run setting w_<term>), and `score_pairs`.
    """

    LOSS_TERMS = ()
    progress_logs = ("g_loss", "con_loss", "d_loss")  # the console's epoch line (training.callbacks.ProgressLine)

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.config = dict(config)
        self.generator_networks = self.build_generator()
        self.discriminator = feature_discriminator(self.config)
        self.built = True  # the functional sub-networks are built already

    def build_generator(self):
        raise NotImplementedError

    def discriminate(self, images, training):
        """(logit, features) of D for `images`, both float32 (D's output layers compute in float32)."""
        return self.discriminator(images, training=training)

    def configure(self, run_config):
        """Adam for the generator networks and for D (original papers' lr 2e-4, β1 0.5), the loss weights."""
        super().compile()

        def adam():
            return keras.optimizers.Adam(run_config["lr"], beta_1=run_config["beta_1"], beta_2=run_config["beta_2"])

        self.generator_optimizer, self.discriminator_optimizer = adam(), adam()
        # Built eagerly so checkpoints can restore optimizer slots before the first step.
        self.generator_optimizer.build(self.generator_variables)
        self.discriminator_optimizer.build(self.discriminator.trainable_variables)
        self.loss_weights = {term: float(run_config[f"w_{term}"]) for term in self.LOSS_TERMS}
        names = ["g_loss", *(f"{term}_loss" for term in self.LOSS_TERMS), "d_loss", "d_real", "d_fake"]
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}

    def get_compile_config(self):
        return None  # optimizers are rebuilt by configure; a saved model carries weights only

    @property
    def metrics(self):
        return list(getattr(self, "trackers", {}).values())

    @property
    def generator_variables(self):
        return [variable for network in self.generator_networks.values() for variable in network.trainable_variables]

    def make_schedule(self, run_config):
        return SinglePhaseSchedule(run_config["epochs"], "adversarial")

    def checkpoint_items(self):
        return {**self.generator_networks, "discriminator": self.discriminator,
                "generator_optimizer": self.generator_optimizer, "discriminator_optimizer": self.discriminator_optimizer}

    def train_step(self, data):
        """The official codes' order: G on its weighted terms, then D on x (real) against the x̂ of that pass (fake)."""
        images, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        reconstruction = self.generator_update(images)
        self.discriminator_update(images, reconstruction)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def generator_update(self, images):
        """One Adam step of the generator networks on Σ w_term · term; returns the x̂ it computed (before the step)."""
        with tf.GradientTape() as tape:
            terms, reconstruction = self.generator_terms(images)
            g_loss = tf.add_n([self.loss_weights[term] * terms[term] for term in self.LOSS_TERMS])
        variables = self.generator_variables
        self.generator_optimizer.apply_gradients(zip(replica_gradients(tape, g_loss, variables), variables))
        self.track({"g_loss": g_loss, **{f"{term}_loss": terms[term] for term in self.LOSS_TERMS}})
        return reconstruction

    def discriminator_update(self, images, reconstruction):
        """One Adam step of D: binary cross-entropy, x real and x̂ (a constant here) fake."""
        with tf.GradientTape() as tape:
            real, _ = self.discriminate(images, training=True)
            fake, _ = self.discriminate(tf.stop_gradient(reconstruction), training=True)
            d_loss, _ = dcgan_losses(real, fake)
        variables = self.discriminator.trainable_variables
        self.discriminator_optimizer.apply_gradients(zip(replica_gradients(tape, d_loss, variables), variables))
        self.track({"d_loss": d_loss, "d_real": tf.reduce_mean(tf.sigmoid(real)), "d_fake": tf.reduce_mean(tf.sigmoid(fake))})

    def track(self, values):
        for name, value in values.items():
            self.trackers[name].update_state(value)

    def call(self, images, training=False):
        """The reconstruction x̂ scored for anomalies (inference mode)."""
        (pair,) = self.score_pairs(images).values()
        return pair[1]

    def get_config(self):
        return {**super().get_config(), "config": self.config}


@keras.saving.register_keras_serializable(package="bigan_ad")
class GANomaly(AdversarialReconstruction):
    """Encoder G_E, decoder G_D and a second encoder E (Akcay et al. 2018, Fig. 2), plus D."""

    LOSS_TERMS = ("adv", "con", "enc")
    # §3.3: A(x) = ‖G_E(x) − E(G(x))‖², the paper's own score (the default under --profile paper).
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
        _, real_features = self.discriminate(images, training=True)
        _, fake_features = self.discriminate(reconstruction, training=True)
        return {
            "adv": tf.reduce_mean(tf.square(real_features - fake_features)),  # feature matching
            "con": tf.reduce_mean(tf.abs(images - reconstruction)),
            "enc": tf.reduce_mean(tf.square(latent - relatent)),
        }, reconstruction

    def score_pairs(self, images):
        """One module: x against x̂ = G_D(G_E(x)), and the latent distance ‖G_E(x) − E(x̂)‖² / d."""
        latent, reconstruction, relatent = self.encode_decode_encode(images, training=False)
        return {self.name: (images, reconstruction, {"latent_distance": squared_distance(latent, relatent)})}

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
        real, real_features = self.discriminate(images, training=True)
        fake, fake_features = self.discriminate(reconstruction, training=True)
        return {
            "adv": dcgan_losses(real, fake)[1],
            "con": tf.reduce_mean(tf.abs(images - reconstruction)),
            "lat": tf.reduce_mean(tf.square(real_features - fake_features)),
        }, reconstruction

    def score_pairs(self, images):
        """One module: x against G(x), and the feature distance ‖f(x) − f(G(x))‖² (mean over D's last feature map)."""
        reconstruction = self.generator_networks["generator"](images, training=False)
        _, real_features = self.discriminate(images, training=False)
        _, fake_features = self.discriminate(reconstruction, training=False)
        return {self.name: (images, reconstruction, {"feature_distance": squared_distance(real_features, fake_features)})}

    def finish_training(self, normals):
        """Precise BatchNorm statistics of the U-Net for the final weights (D has no BatchNorm)."""
        precise_batchnorm(self.generator_networks["generator"], normals)


GANOMALY_FAMILY = family(GANOMALY_PRESETS, "latent", w_adv=1.0, w_con=50.0, w_enc=1.0)
SKIP_GANOMALY_FAMILY = family(SKIP_GANOMALY_PRESETS, "skip_ganomaly", w_adv=1.0, w_con=50.0, w_lat=1.0)
