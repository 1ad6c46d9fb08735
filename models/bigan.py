"""The plain BiGAN family: `bigan` (Donahue et al. 2017) and Zenati et al. 2018's BiGAN detector as the
CAE-D-GAN paper names it twice, `egbad` and `efficient_gan`.

One network for all three: an encoder E (x -> z), a generator G (z -> x) and a discriminator D(x, z)
of image-latent pairs, trained by the BiGAN game alone: each step one D update (real pairs (x, E(x))
against fake pairs (G(z), z), z ~ N(0, I)), then one E+G update on the flipped labels. Nothing
trains G(E(x)) to equal x; reconstruction is what the BiGAN's inversion gives. Unlike the Improved
BiGAN there is no reconstruction loss, SE attention, residual generator or second phase.

Scores: the image against G(E(x)) like every model, and three per-image terms from `score_pairs`:
- `l1_error` = ‖x − G(E(x))‖₁ (Zenati's L_G, the L1 norm over pixels),
- `feature_distance` = ‖f_D(x, E(x)) − f_D(G(E(x)), E(x))‖₁, f_D the discriminator's layer before
  the logit (Zenati's feature-matching L_D),
- `discriminator_error` = σ(D(x, E(x)), 1), the cross-entropy of calling the real pair real
  (Zenati's other L_D: the discriminator's doubt that x is normal data).
Variants: `feature` (the D-feature term alone), `zenati_fm` and `zenati_ce`, Zenati's
A(x) = α·L_G + (1 − α)·L_D with α = 0.9 (the authors' code: weight 0.1 on L_D, "as in the original
AnoGAN paper") and the feature-matching or cross-entropy L_D. The three models differ only in their
settings (docs/design.md, "Plain BiGAN family"): `egbad` and `efficient_gan` test with Zenati's
averaged weights, `efficient_gan` at twice `egbad`'s input (CAE-D-GAN Table 2: 256×256 against 128×128; under
`paper` on the chest X-rays only, the Improved BiGAN's datasets being 128×128 for every model); in `--profile paper`
`egbad` defaults to `zenati_ce` and `efficient_gan` to `zenati_fm`.
"""

import keras
import tensorflow as tf
from keras import ops

from models.adversarial import TABLE_2_AT_256
from models.autoencoders import Autoencoder
from models.base import Family, ScorePair
from models.config import validate_conv_architecture
from models.layers import conv_decoder, conv_encoder, pair_discriminator
from models.losses import bigan_losses
from models.pair_game import PairAdversary
from models.schedule import SinglePhaseSchedule

# Architectures. DCGAN-style conv encoder and generator (models.layers), the Improved BiGAN's pair
# discriminator. `paper`: latent 200 and D's 512 latent / 1024 joint units and dropout 0.5 as Zenati's
# code (Donahue et al. also use a 200-d latent); the conv widths as the Improved BiGAN's presets.
PRESETS = {
    "paper": {"image_size": 128, "channels": 1, "latent_dim": 200, "filters": [32, 64, 128, 256, 512],
              "discriminator_filters": [32, 64, 128, 256], "latent_units": 512, "joint_units": 1024, "dropout": 0.5},
    "quick": {"image_size": 64, "channels": 1, "latent_dim": 64, "filters": [16, 32, 64, 128],
              "discriminator_filters": [16, 32, 64], "latent_units": 128, "joint_units": 128, "dropout": 0.2},
    "tiny": {"image_size": 32, "channels": 1, "latent_dim": 8, "filters": [4, 8],
             "discriminator_filters": [4, 8], "latent_units": 8, "joint_units": 8, "dropout": 0.0},
}
# Efficient-GAN at the CAE-D-GAN paper's 256×256 (Table 2), on its chest X-rays only (adversarial.TABLE_2_AT_256):
# one more stage each, so D's flattened image features stay 8×8×512 instead of growing fourfold.
PRESETS["paper_256"] = {**PRESETS["paper"], "image_size": 256, "filters": [32, 64, 128, 256, 512, 512],
                        "discriminator_filters": [32, 64, 128, 256, 512]}
# Efficient-GAN in `quick`: Table 2's input twice EGBAD's (128 against 64), one more stage each likewise.
PRESETS["quick_128"] = {**PRESETS["quick"], "image_size": 128, "filters": [16, 32, 64, 128, 256],
                        "discriminator_filters": [16, 32, 64, 128]}
# ... and in `smoke` (64 against 32), so the three BiGAN detectors are three networks there too.
PRESETS["tiny_64"] = {**PRESETS["tiny"], "image_size": 64, "filters": [4, 8, 16], "discriminator_filters": [4, 8, 16]}

# quick and smoke are the autoencoder baselines' budget (50 epochs, batch 32, at least 600 updates) with
# the DCGAN/BiGAN learning rate; `paper` is each model's source (see `training`).
QUICK = {"preset": "quick", "epochs": 50, "batch_size": 32, "lr": 2e-4, "score": "error_zmax", "min_updates": 600,
         "ema_momentum": None}
SMOKE = {"preset": "tiny", "epochs": 1, "batch_size": 16, "lr": 2e-4, "score": "error_zmax", "min_updates": 0,
         "ema_momentum": None}


def training(paper, quick=None, smoke=None):
    return {"paper": {"min_updates": 0, **paper}, "quick": {**QUICK, **(quick or {})}, "smoke": {**SMOKE, **(smoke or {})}}


TRAINING_COMMON = {"beta_1": 0.5, "beta_2": 0.999}  # Adam as DCGAN, BiGAN and Zenati et al.
# Zenati et al.: A(x) = α·L_G + (1 − α)·L_D, α = 0.9 (their code: weight 0.1 on L_D, "as in the original AnoGAN")
ZENATI_GENERATOR_WEIGHT, ZENATI_DISCRIMINATOR_WEIGHT = 0.9, 0.1


@keras.saving.register_keras_serializable(package="bigan_ad")
class BiGAN(PairAdversary, Autoencoder):
    """E, G (the autoencoder's encoder and decoder: inference is G(E(x))) and D(x, z), trained by the BiGAN game.

    The Autoencoder base gives the inference path, the one-phase schedule and the precise BatchNorm
    statistics on that path (finish_training); models.pair_game.PairAdversary the discriminator's
    step, shared with the Improved BiGAN.
    """

    LOSS_TERMS = ("adv_loss", "d_loss", "d_real", "d_fake")
    progress_logs = LOSS_TERMS
    score_variants = {
        "feature": {"feature_distance": 1.0},
        "zenati_fm": {"l1_error": ZENATI_GENERATOR_WEIGHT, "feature_distance": ZENATI_DISCRIMINATOR_WEIGHT},
        "zenati_ce": {"l1_error": ZENATI_GENERATOR_WEIGHT, "discriminator_error": ZENATI_DISCRIMINATOR_WEIGHT},
    }

    def build_networks(self):
        latent = self.config["latent_dim"]
        self.encoder = conv_encoder(self.config, {"latent": latent})
        self.decoder = conv_decoder(self.config, latent, name="generator")
        self.discriminator = pair_discriminator(self.config, features=True)

    @property
    def generator(self):
        return self.decoder

    @property
    def autoencoder_variables(self):
        """Encoder + generator weights: what the E+G step trains."""
        return self.encoder.trainable_variables + self.decoder.trainable_variables

    def _pair_logit(self, images, latent):
        return self.discriminator([images, latent], training=True)[0]

    def configure(self, run_config):
        """Adam for E+G (the base's `autoencoder_optimizer`) and for D, the same settings."""
        super().configure(run_config)
        self.discriminator_optimizer = self.adam(run_config, self.discriminator.trainable_variables,
                                                 **self.adam_options(run_config))

    def adam_options(self, run_config):
        """Weight averaging when `ema_momentum` is set (Zenati et al. test with the averaged weights)."""
        ema = run_config.get("ema_momentum")
        return {"use_ema": bool(ema), "ema_momentum": ema or 0.99}

    def make_schedule(self, run_config):
        return SinglePhaseSchedule(run_config["epochs"], "adversarial")

    def checkpoint_items(self):
        return {**super().checkpoint_items(), "discriminator": self.discriminator,
                "discriminator_optimizer": self.discriminator_optimizer}

    def finish_training(self, normals):
        """The averaged weights (Zenati et al. test with them) when kept, then BatchNorm statistics for
        inference: during training G's layers saw G(z), z ~ N(0, I), while inference feeds them E(x)."""
        for optimizer, variables in ((self.autoencoder_optimizer, self.autoencoder_variables),
                                     (self.discriminator_optimizer, self.discriminator.trainable_variables)):
            if optimizer.use_ema and int(optimizer.iterations):  # before step 1 the averages are zeros
                optimizer.finalize_variable_values(variables)
        super().finish_training(normals)

    def train_step(self, data):
        images, _, _ = keras.utils.unpack_x_y_sample_weight(data)  # unlabelled: only normal images
        self._discriminator_update(images)
        self._encoder_generator_update(images)
        return self.logs()

    def _encoder_generator_update(self, images):
        """One E+G step on the BiGAN loss (flipped labels); D runs but is not updated."""
        with tf.GradientTape() as tape:
            _, loss = bigan_losses(*self._pairs_logits(images, training=True))
        self.apply_gradients(self.autoencoder_optimizer, tape, loss, self.autoencoder_variables)
        self.track({"adv_loss": loss})

    def score_pairs(self, images):
        """One module: x against G(E(x)), with Zenati's per-image terms (module docstring); every network
        in inference mode (BatchNorm's moving statistics, no dropout) whatever the caller's mode."""
        latent = self.encoder(images, training=False)
        reconstruction = self.decoder(latent, training=False)
        logit, features = self.discriminator([images, latent], training=False)
        _, reconstruction_features = self.discriminator([reconstruction, latent], training=False)
        terms = {
            "l1_error": ops.sum(ops.abs(images - reconstruction), axis=(1, 2, 3)),
            "feature_distance": ops.sum(ops.abs(features - reconstruction_features), axis=-1),
            "discriminator_error": ops.softplus(-logit[:, 0]),  # sigmoid cross-entropy with label 1
        }
        return {self.name: ScorePair(images, reconstruction, terms)}


# Donahue et al.: Adam 2e-4; 128×128 is the Improved BiGAN paper's resize (§IV-B) and `paper` its score; batch 32
# and 100 epochs are ours, as for the autoencoder baselines (the paper gives no schedule for any baseline).
BIGAN_FAMILY = Family(BiGAN, PRESETS, training({"preset": "paper", "epochs": 100, "batch_size": 32, "lr": 2e-4,
                                                "score": "paper", "ema_momentum": None}),
                      TRAINING_COMMON, validate_conv_architecture)
# CAE-D-GAN Table 2: EGBAD 128×128, Efficient-GAN 256×256 (on the chest X-rays; 128×128 elsewhere), batch 64,
# 50 epochs. Zenati et al.'s code: Adam 1e-5 (β1 0.5) and weights averaged (EMA 0.999) for testing; their score.
# `quick` keeps what sets Zenati's detector apart from `bigan` at the quick budget: the averaged weights,
# with momentum 0.99 (0.999 averages over ~1000 updates, more than a whole quick run of ~600-1000; 0.99 over
# its last ~100), and for `efficient_gan` Table 2's doubled input. Not tuned.
ZENATI_QUICK = {"ema_momentum": 0.99}
# `smoke` keeps the same differences at its few updates (a smoke run makes about 3): averaged weights with momentum 0.5,
# and the doubled input. Without them the three gave the same scores to 8 digits (issue 26).
ZENATI_SMOKE = {"ema_momentum": 0.5}
EGBAD_FAMILY = BIGAN_FAMILY.replace(training=training(
    {"preset": "paper", "epochs": 50, "batch_size": 64, "lr": 1e-5, "score": "zenati_ce", "ema_momentum": 0.999},
    ZENATI_QUICK, ZENATI_SMOKE))
EFFICIENT_GAN_FAMILY = BIGAN_FAMILY.replace(training=training(
    {"preset": TABLE_2_AT_256, "epochs": 50, "batch_size": 64, "lr": 1e-5, "score": "zenati_fm", "ema_momentum": 0.999},
    {**ZENATI_QUICK, "preset": "quick_128"}, {**ZENATI_SMOKE, "preset": "tiny_64"}))
