"""Variational autoencoders of the Improved BiGAN paper's tables: VAE, Beta-VAE and CVAE.

- `vae` (Kingma & Welling 2014): conv encoder to a diagonal Gaussian posterior, reparameterised
  sample, conv decoder; loss = Σ squared error per image + β·KL(q(z|x) ‖ N(0, I)), β = 1.
- `beta_vae` (Higgins et al. 2017): the same with β = 4, the value Higgins et al. use for their
  image experiments; the paper gives none, and we do not tune it on test data.
- `cvae`: the paper cites one CVAE for anomaly detection, Uzunova et al. 2018 ("Unsupervised
  pathology detection in medical images using conditional variational autoencoders", its ref. [4]),
  which conditions on the *position* of an image patch: training data hold one class, so a
  class-conditional VAE has nothing to condition on. The image is cut into a grid of patches;
  encoder and decoder both read the patch's one-hot grid position. A plain "convolutional VAE" is
  what `vae` already is.

Scores (as the issue asks): the reconstruction from the posterior mean by default; the KL term
(`--score kl`) and the negative ELBO with the posterior mean (`--score elbo`) as variants. β is part
of the architecture config, so a saved model scores the ELBO it was trained on.
"""

import keras
from keras import ops

from models.autoencoders import CONV_PRESETS, Autoencoder, family
from models.base import ScorePair
from models.config import ConfigError, validate_conv_architecture
from models.layers import conv_decoder, conv_encoder


def kl_divergence(mean, log_variance):
    """KL(N(mean, exp(log_variance)) ‖ N(0, I)) per row, summed over the latent dimensions.

    Halved by division: Keras 3.15 marks `0.5 * x` of a symbolic tensor sparse, which breaks the exported scorer.
    """
    return ops.sum(ops.square(mean) + ops.exp(log_variance) - log_variance - 1.0, axis=-1) / 2.0


def squared_error(images, reconstructions):
    """Σ (x − x̂)² per image: the Gaussian log-likelihood up to constants (unit variance per pixel pair of ±1)."""
    return ops.sum(ops.square(images - reconstructions), axis=(1, 2, 3))


@keras.saving.register_keras_serializable(package="bigan_ad")
class VAE(Autoencoder):
    """Gaussian posterior q(z|x) = N(mean, diag exp(log_variance)); loss = mean over the batch of Σ error² + β KL."""

    LOSS_TERMS = ("loss", "reconstruction", "kl")
    progress_logs = ("loss", "kl")
    score_variants = {"kl": {"kl_divergence": 1.0}, "elbo": {"neg_elbo": 1.0}}

    condition_units = 0  # a conditional VAE's condition vector size (none here)

    def build_networks(self):
        latent = self.config["latent_dim"]
        self.encoder = conv_encoder(self.network_config(), {"mean": latent, "log_variance": latent},
                                    condition_units=self.condition_units)
        self.decoder = conv_decoder(self.network_config(), latent, condition_units=self.condition_units)

    def network_config(self):
        """The encoder's and decoder's input size (the whole image)."""
        return self.config

    def posterior(self, images, training=False):
        return self.encoder(self.encoder_inputs(images), training=training)

    def code(self, images, training=False):
        return self.posterior(images, training=training)[0]

    def image_kl(self, mean, log_variance):
        """KL per image (a patch model sums its patches')."""
        return kl_divergence(mean, log_variance)

    def loss_terms(self, images):
        mean, log_variance = self.posterior(images, training=True)
        sample = mean + ops.exp(0.5 * log_variance) * keras.random.normal(ops.shape(mean))
        reconstruction = ops.mean(squared_error(images, self.decode(sample, images, training=True)))
        kl = ops.mean(self.image_kl(mean, log_variance))
        return {"loss": reconstruction + self.config["beta"] * kl, "reconstruction": reconstruction, "kl": kl}

    def score_pairs(self, images):
        """The image against the reconstruction of its posterior mean, with the KL and negative-ELBO terms."""
        mean, log_variance = self.posterior(images)
        reconstruction = self.decode(mean, images)
        kl = self.image_kl(mean, log_variance)
        neg_elbo = squared_error(images, reconstruction) + self.config["beta"] * kl
        return {self.name: ScorePair(images, reconstruction, {"kl_divergence": kl, "neg_elbo": neg_elbo})}


@keras.saving.register_keras_serializable(package="bigan_ad")
class ConditionalVAE(VAE):
    """Uzunova et al. 2018 (the paper's ref. [4]): a VAE over the grid of patches, conditioned on each patch's position.

    Images [N, S, S, C] become N·g² patches [S/g, S/g, C], each with the one-hot of its grid cell
    (row-major); the decoded patches are put back in place, so scores and error maps are per image.
    """

    @property
    def condition_units(self):
        return self.config["patch_grid"] ** 2

    def network_config(self):
        return {**self.config, "image_size": self.config["image_size"] // self.config["patch_grid"]}

    def positions(self, images):
        """One-hot grid positions, g² per image, in the patches' order."""
        ones = ops.ones_like(images[:, 0, 0, :1])  # [N, 1], also for a symbolic batch of unknown size
        return ops.reshape(ones[:, :, None] * ops.eye(self.condition_units)[None], (-1, self.condition_units))

    def encoder_inputs(self, images):
        grid, size, channels = self.config["patch_grid"], self.config["image_size"], self.config["channels"]
        patch = size // grid
        patches = ops.reshape(images, (-1, grid, patch, grid, patch, channels))
        patches = ops.reshape(ops.transpose(patches, (0, 1, 3, 2, 4, 5)), (-1, patch, patch, channels))
        return [patches, self.positions(images)]

    def decoder_inputs(self, code, images):
        return [code, self.positions(images)]

    def to_image(self, outputs):
        grid, size, channels = self.config["patch_grid"], self.config["image_size"], self.config["channels"]
        patch = size // grid
        images = ops.reshape(outputs, (-1, grid, grid, patch, patch, channels))
        return ops.reshape(ops.transpose(images, (0, 1, 3, 2, 4, 5)), (-1, size, size, channels))

    def image_kl(self, mean, log_variance):
        return ops.sum(ops.reshape(kl_divergence(mean, log_variance), (-1, self.condition_units)), axis=1)


def validate_cvae_architecture(config):
    grid = config.get("patch_grid", 1)
    if grid < 1 or config["image_size"] % grid:
        raise ConfigError(f"image_size {config['image_size']} must be a multiple of patch_grid {grid}.")
    validate_conv_architecture({**config, "image_size": config["image_size"] // grid})


def _with(presets, **settings):
    return {name: {**preset, **settings} for name, preset in presets.items()}


def _patch_presets():
    """A 4×4 grid of patches (2×2 for tiny); the patch encoder has one down-sampling stage fewer per halving."""
    presets = _with(CONV_PRESETS, beta=1.0)
    presets["paper"].update(patch_grid=4, filters=[32, 64, 128], latent_dim=64)  # 32×32 patches
    presets["quick"].update(patch_grid=4, filters=[16, 32, 64], latent_dim=32)  # 16×16 patches
    presets["tiny"].update(patch_grid=2, filters=[4, 8], latent_dim=4)  # 16×16 patches
    return presets


VAE_FAMILY = family(VAE, _with(CONV_PRESETS, beta=1.0), validate_conv_architecture)
BETA_VAE_FAMILY = family(VAE, _with(CONV_PRESETS, beta=4.0), validate_conv_architecture)
CVAE_FAMILY = family(ConditionalVAE, _patch_presets(), validate_cvae_architecture)
