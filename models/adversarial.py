"""What the GAN baselines GANomaly, Skip-GANomaly (models/ganomaly.py) and AnoGAN (models/anogan.py) share.

`GANBaseline` is what a model made of generator networks and one feature discriminator
(models.layers.feature_discriminator) shares, each side with its own Adam optimizer: configure, make_schedule
(one phase of `epochs`), checkpoint_items, the discriminator's update (binary cross-entropy, real x against
given fake images) and the loss trackers. A subclass builds its generator
networks (`build_generator`), writes its `train_step` and generator update, and says what it scores
(`score_pairs`, always in inference mode). Training keeps the last epoch's weights: there is no model
selection or early stopping (on test AUROC or anything else).
"""

import tensorflow as tf

from models.base import AnomalyModel, Family
from models.config import validate_conv_architecture
from models.layers import feature_discriminator
from models.losses import dcgan_losses
from models.schedule import SinglePhaseSchedule

ADAM = {"beta_1": 0.5, "beta_2": 0.999}  # DCGAN's, kept by GANomaly, Skip-GANomaly and AnoGAN
# The `paper` preset of a model CAE-D-GAN Table 2 runs at 256×256 (GANomaly, Efficient-GAN): that input on the
# paper's own chest X-rays only; the Improved BiGAN resized every image of its datasets to 128×128 (§IV-B).
TABLE_2_AT_256 = {"cae_d_gan": "paper_256", "improved_bigan": "paper"}


def training_settings(paper_score, paper_preset="paper"):
    """Run profiles: CAE-D-GAN Table 2's batch 64 and 50 epochs for `paper`, the original papers' Adam 2e-4
    everywhere (no GAN schedule was tuned here); `quick` the autoencoder baselines' budget.

    `paper` scores with the model's own paper score; `quick` and `smoke` with the project's error_zmax
    (every variant is computed and reported either way).
    """
    return {
        "paper": {"preset": paper_preset, "epochs": 50, "batch_size": 64, "lr": 2e-4, "score": paper_score,
                  "min_updates": 0},
        "quick": {"preset": "quick", "epochs": 50, "batch_size": 32, "lr": 2e-4, "score": "error_zmax",
                  "min_updates": 600},  # as the autoencoder baselines: at least 600 updates on small sets
        "smoke": {"preset": "tiny", "epochs": 1, "batch_size": 16, "lr": 2e-4, "score": "error_zmax", "min_updates": 0},
    }


def family(model_class, presets, paper_score, paper_preset="paper", **loss_weights):
    """One model's Family: presets, run profiles, Adam and the generator loss weights."""
    return Family(model_class, presets, training_settings(paper_score, paper_preset), {**ADAM, **loss_weights},
                  validate_conv_architecture)


class GANBaseline(AnomalyModel):
    """Generator networks (`generator_networks`: name -> network) and a feature discriminator, two Adams.

    LOSS_TERMS name the generator loss terms, each weighted by the run setting w_<term> and logged as
    <term>_loss beside g_loss, d_loss and D's mean outputs on real and fake images.
    """

    LOSS_TERMS = ()

    def build_networks(self):
        self.generator_networks = self.build_generator()
        self.discriminator = feature_discriminator(self.config)

    def build_generator(self):
        raise NotImplementedError

    @property
    def generator_variables(self):
        return [variable for network in self.generator_networks.values() for variable in network.trainable_variables]

    def configure(self, run_config):
        """Adam for the generator networks and for D (lr, β from the run config), the loss weights, the trackers."""
        super().compile()
        self.generator_optimizer = self.adam(run_config, self.generator_variables)
        self.discriminator_optimizer = self.adam(run_config, self.discriminator.trainable_variables)
        self.loss_weights = {term: float(run_config[f"w_{term}"]) for term in self.LOSS_TERMS}
        self.start_trackers(["g_loss", *(f"{term}_loss" for term in self.LOSS_TERMS), "d_loss", "d_real", "d_fake"])

    def make_schedule(self, run_config):
        return SinglePhaseSchedule(run_config["epochs"], "adversarial")

    def checkpoint_items(self):
        return {**self.generator_networks, "discriminator": self.discriminator,
                "generator_optimizer": self.generator_optimizer, "discriminator_optimizer": self.discriminator_optimizer}

    def discriminator_update(self, images, fake_images):
        """One Adam step of D: binary cross-entropy, x real and `fake_images` (constants here) fake."""
        with tf.GradientTape() as tape:
            real = self.discriminator(images, training=True)[0]
            fake = self.discriminator(tf.stop_gradient(fake_images), training=True)[0]
            d_loss, _ = dcgan_losses(real, fake)
        self.apply_gradients(self.discriminator_optimizer, tape, d_loss, self.discriminator.trainable_variables)
        self.track({"d_loss": d_loss, "d_real": tf.reduce_mean(tf.sigmoid(real)), "d_fake": tf.reduce_mean(tf.sigmoid(fake))})

