"""The Improved BiGAN paper's plain autoencoder baselines, FC-AE and CNN-AE, and what every autoencoder shares.

The paper names its baselines (Tables I–III) but gives no architecture, loss or schedule for any
of them. Each is built in its standard form, sized like the Improved BiGAN's presets (`paper`
128×128, `quick` 64×64, `tiny` for tests), trained with Adam on its own loss, one update a step,
and scored like every model: the image against its reconstruction (evaluation.scoring).

`Autoencoder` is what all six share (vae.py and vq_vae.py subclass it; models.base.AnomalyModel is the
contract): a subclass builds its networks in `build_networks`, returns its loss terms from `loss_terms` (the
key "loss" is what is minimised) and, where it differs from a plain autoencoder, overrides the inference
path's hooks `encoder_inputs`, `code`, `decoder_inputs` and `to_image`.
"""

import keras
import tensorflow as tf
from keras import layers

from models.base import AnomalyModel, Family, ScorePair
from models.batchnorm import precise_batchnorm
from models.config import ConfigError, validate_conv_architecture
from models.layers import OUTPUT_DTYPE, conv_decoder, conv_encoder
from models.schedule import SinglePhaseSchedule

# Convolutional widths and latent sizes as the Improved BiGAN's presets (the paper gives none for the baselines).
CONV_PRESETS = {
    "paper": {"image_size": 128, "channels": 1, "latent_dim": 128, "filters": [32, 64, 128, 256, 512]},
    "quick": {"image_size": 64, "channels": 1, "latent_dim": 64, "filters": [16, 32, 64, 128]},
    "tiny": {"image_size": 32, "channels": 1, "latent_dim": 8, "filters": [4, 8]},
}
# One schedule for every autoencoder baseline. quick: chosen on the phantom's dev draw (docs/design.md);
# at least 600 updates on small sets, as the Improved BiGAN. paper: the paper gives no schedule.
TRAINING = {
    "paper": {"preset": "paper", "epochs": 100, "batch_size": 32, "lr": 2e-4, "score": "paper", "min_updates": 0},
    "quick": {"preset": "quick", "epochs": 50, "batch_size": 32, "lr": 1e-3, "score": "error_zmax",
              "min_updates": 600},
    "smoke": {"preset": "tiny", "epochs": 1, "batch_size": 16, "lr": 1e-3, "score": "error_zmax", "min_updates": 0},
}
ADAM = {"beta_1": 0.9, "beta_2": 0.999}  # Adam's own defaults: no adversary to stabilise


def family(model_class, presets, validate, **training_common):
    """One autoencoder baseline's Family: its presets, the shared schedule, its own settings."""
    return Family(model_class, presets, TRAINING, {**ADAM, **training_common}, validate)


class Autoencoder(AnomalyModel):
    """encoder -> decoder, one Adam optimizer over every weight, minimising `loss_terms(images)["loss"]`."""

    progress_logs = ("loss",)

    def encoder_inputs(self, images):
        """What the encoder reads for `images` (a conditional model adds its condition)."""
        return images

    def code(self, images, training=False):
        """The code the decoder reconstructs from at inference (a VAE: the posterior mean)."""
        return self.encoder(self.encoder_inputs(images), training=training)

    def decoder_inputs(self, code, images):
        """What the decoder reads for a code of `images`."""
        return code

    def to_image(self, outputs):
        """The decoder's outputs as images [N, S, S, C] (a patch model reassembles its patches)."""
        return outputs

    def decode(self, code, images, training=False):
        return self.to_image(self.decoder(self.decoder_inputs(code, images), training=training))

    def call(self, images, training=False):
        """The reconstruction scored for anomalies."""
        return self.decode(self.code(images, training=training), images, training=training)

    def score_pairs(self, images):
        """One module: the image against its reconstruction."""
        return {self.name: ScorePair(images, self(images))}

    def configure(self, run_config):
        self.take_settings(run_config)
        self.compile()
        self.autoencoder_optimizer = self.adam(run_config, self.autoencoder_variables, **self.adam_options(run_config))
        self.start_trackers(self.LOSS_TERMS)

    def adam_options(self, run_config):
        """Adam options beyond the run's lr and betas (a BiGAN's weight averaging); none here."""
        return {}

    @property
    def autoencoder_variables(self):
        """What the optimizer trains: every weight (a BiGAN leaves its discriminator to its own optimizer)."""
        return self.trainable_variables

    def make_schedule(self, run_config):
        return SinglePhaseSchedule(run_config["epochs"], "reconstruction")

    def checkpoint_items(self):
        return {"encoder": self.encoder, "decoder": self.decoder, "optimizer": self.autoencoder_optimizer}

    def finish_training(self, normals):
        """Precise BatchNorm statistics along the inference path: the encoder on x, the decoder on its code.

        Training feeds the decoder what inference does not always feed it (a VAE's sampled z, not
        the posterior mean), so its moving statistics are re-estimated on the inference path.
        """
        precise_batchnorm(self.encoder, normals.map(self.encoder_inputs))
        precise_batchnorm(self.decoder, normals.map(lambda images: self.decoder_inputs(self.code(images), images)))

    def train_step(self, data):
        images, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            terms = self.loss_terms(images)
        self.apply_gradients(self.autoencoder_optimizer, tape, terms["loss"], self.autoencoder_variables)
        self.track(terms)
        return self.logs()


class MSEAutoencoder(Autoencoder):
    """A deterministic autoencoder trained on the mean squared error."""

    LOSS_TERMS = ("loss",)

    def loss_terms(self, images):
        return {"loss": keras.ops.mean(keras.ops.square(images - self(images, training=True)))}


@keras.saving.register_keras_serializable(package="bigan_ad")
class ConvAutoencoder(MSEAutoencoder):
    """CNN-AE: strided conv encoder to a latent vector, transposed-conv decoder (Masci et al. 2011's form)."""

    def build_networks(self):
        self.encoder = conv_encoder(self.config, {"code": self.config["latent_dim"]})
        self.decoder = conv_decoder(self.config, self.config["latent_dim"])


FC_PRESETS = {
    "paper": {"image_size": 128, "channels": 1, "latent_dim": 128, "hidden_units": [1024, 256]},
    "quick": {"image_size": 64, "channels": 1, "latent_dim": 64, "hidden_units": [512, 128]},
    "tiny": {"image_size": 32, "channels": 1, "latent_dim": 8, "hidden_units": [16]},
}


def validate_fc_architecture(config):
    if not config["hidden_units"]:
        raise ConfigError("fcae needs at least one hidden layer (hidden_units).")


def dense_stack(x, units, name):
    """Dense -> ReLU layers, one per entry of `units`."""
    for index, width in enumerate(units):
        x = layers.Dense(width, activation="relu", name=f"{name}{index}")(x)
    return x


@keras.saving.register_keras_serializable(package="bigan_ad")
class FCAutoencoder(MSEAutoencoder):
    """FC-AE: the flattened image through ReLU dense layers to the latent vector and back (tanh output)."""

    def build_networks(self):
        size, channels, latent = self.config["image_size"], self.config["channels"], self.config["latent_dim"]
        units = self.config["hidden_units"]
        images = keras.Input((size, size, channels), name="image")
        x = dense_stack(layers.Flatten(name="flatten")(images), units, "enc_dense")
        self.encoder = keras.Model(images, layers.Dense(latent, name="code", dtype=OUTPUT_DTYPE)(x), name="encoder")
        code = keras.Input((latent,), name="code")
        x = dense_stack(code, list(reversed(units)), "dec_dense")
        x = layers.Dense(size * size * channels, activation="tanh", name="pixels", dtype=OUTPUT_DTYPE)(x)
        image = layers.Reshape((size, size, channels), name="image", dtype=OUTPUT_DTYPE)(x)  # float32, as the loss
        self.decoder = keras.Model(code, image, name="decoder")


CAE_FAMILY = family(ConvAutoencoder, CONV_PRESETS, validate_conv_architecture)
FCAE_FAMILY = family(FCAutoencoder, FC_PRESETS, validate_fc_architecture)
