"""Improved BiGAN (Das et al., "Leveraging GANs, Autoencoders and their Combined ...", §III).

Encoder with SE attention and global pooling, generator with transposed convolutions, SE
refinement and residual Adds, and a discriminator over image-latent pairs. Training has two
phases (Fig. 4): reconstruction only, then adversarial BiGAN training in which the
discriminator learns on every 5th epoch and the reconstruction update runs 3 times per step (§III
says "3 times per epoch"; docs/design.md gives our reading).

Option `synthetic_anomalies` (--synthetic-anomalies, issue 27; not the paper's): trained as DRAEM's
reconstructive network (models.segmentation_head). The encoder-generator restores x from a synthetically
corrupted x̃ in both phases, the discriminator still sees clean pairs, and a discriminative U-Net on
(x̃, G(E(x̃))) learns to segment the corruption; its predicted map is the module's anomaly map and DRAEM's
`draem` the default score.
"""

import keras
import tensorflow as tf
from keras import layers

from models.base import AnomalyModel, Family, ScorePair
from models.batchnorm import precise_batchnorm
from models.config import validate_conv_architecture
from models.layers import OUTPUT_DTYPE, conv_block, image_output, pair_discriminator, up_block
from models.losses import PIXELS_PM1_WEIGHTS, RECONSTRUCTION_WEIGHTS, ReconstructionLoss, bigan_losses, build_perceptual_extractor
from models.pair_game import PairAdversary
from models.schedule import TwoPhaseSchedule
from models.segmentation_head import MAP_VARIANTS, SegmentationHead

# Architectures. `paper` follows the paper where it speaks (128x128 grayscale, SE attention, residual
# generator, image-latent discriminator); widths and depths are ours (the paper gives none).
PRESETS = {
    "paper": {
        "image_size": 128, "channels": 1, "latent_dim": 128, "filters": [32, 64, 128, 256, 512],
        "discriminator_filters": [32, 64, 128, 256], "latent_units": 256, "joint_units": 512,
        "se_ratio": 8, "dropout": 0.2, "synthetic_anomalies": False, "unet_filters": [16, 32, 64, 128, 128],
    },
    "quick": {
        "image_size": 64, "channels": 1, "latent_dim": 64, "filters": [16, 32, 64, 128],
        "discriminator_filters": [16, 32, 64], "latent_units": 128, "joint_units": 128,
        "se_ratio": 4, "dropout": 0.2, "synthetic_anomalies": False, "unet_filters": [8, 16, 32, 64],
    },
    "tiny": {
        "image_size": 32, "channels": 1, "latent_dim": 8, "filters": [4, 8],
        "discriminator_filters": [4, 8], "latent_units": 8, "joint_units": 8, "se_ratio": 2, "dropout": 0.0,
        "synthetic_anomalies": False, "unet_filters": [8, 16, 32],
    },
}

# Training settings per run profile: `paper` is §III's schedule.
TRAINING = {
    "paper": {"preset": "paper", "epochs_recon": 150, "epochs_adv": 500, "batch_size": 32, "lr": 2e-4,
              "perceptual_weights": "imagenet", "score": "paper",
              "reconstruction_weights": RECONSTRUCTION_WEIGHTS, "min_updates": 0},
    # quick: chosen on the phantom's dev draw (seed 0), see docs/design.md: 100 reconstruction
    # epochs (error_zmax AUROC 0.848 vs 0.800 at 40); at least 600 updates on small sets (scale_to_data).
    # Its loss weights are the ones it was tuned with: the paper's applied to [-1, 1] pixels (docs/fidelity.md).
    "quick": {"preset": "quick", "epochs_recon": 100, "epochs_adv": 10, "batch_size": 32, "lr": 1e-3,
              "perceptual_weights": "none", "score": "error_zmax", "reconstruction_weights": PIXELS_PM1_WEIGHTS,
              "min_updates": 600},
    "smoke": {"preset": "tiny", "epochs_recon": 1, "epochs_adv": 1, "batch_size": 16, "lr": 1e-3,
              "perceptual_weights": "none", "score": "error_zmax", "reconstruction_weights": PIXELS_PM1_WEIGHTS,
              "min_updates": 0},
}
# --synthetic-anomalies under quick: the same ~800 updates of 16 on every set, the samples DRAEM's quick sees
# (1,600 steps of 8), the phases 10:1 as quick's 100:10 (epochs are stretched to min_updates by
# training.profiles.scale_to_data). A step with the U-Net costs 4-5x a plain one: quick's epoch count would take
# 10-16 minutes on the larger dev sets, and 600 updates of 32 took 11.7-12.7 minutes alone on the tiles and leaves.
# `paper` keeps the paper's schedule (a GPU schedule, not run here).
SYNTHETIC_TRAINING = {"quick": {"epochs_recon": 10, "epochs_adv": 1, "batch_size": 16, "min_updates": 800}}
TRAINING_COMMON = {
    "beta_1": 0.5,  # DCGAN/BiGAN practice; the paper gives no optimizer settings
    "beta_2": 0.999,
    "adversarial_weight": 0.1,  # reconstruction "prioritized over the adversarial performance" (§III)
    "reconstruction_repeats": 3,  # §III: "trained 3 times per epoch"; here 3 updates per step in phase 2
    "discriminator_every": 5,  # §III: discriminator trained every 5th epoch
    "lr_schedule": "constant",  # or "cosine": E+G learning rate decays to 5 % over the schedule
}


def build_encoder(config):
    """x -> z: strided conv blocks with SE attention, global average pooling, dense to the latent."""
    size, channels = config["image_size"], config["channels"]
    images = keras.Input((size, size, channels), name="image")
    x = images
    for index, filters in enumerate(config["filters"]):
        x = conv_block(x, filters, f"enc{index}", attention=True, se_ratio=config["se_ratio"])
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    latent = layers.Dense(config["latent_dim"], name="latent", dtype=OUTPUT_DTYPE)(x)
    return keras.Model(images, latent, name="encoder")


def build_generator(config):
    """z -> x: dense to the bottleneck, SE-refined residual up blocks, tanh output in [-1, 1]."""
    filters = config["filters"]
    base = config["image_size"] // 2 ** len(filters)
    latent = keras.Input((config["latent_dim"],), name="latent")
    x = layers.Dense(base * base * filters[-1], use_bias=False, name="project")(latent)
    x = layers.Reshape((base, base, filters[-1]), name="bottleneck")(x)
    x = layers.BatchNormalization(name="project_bn")(x)
    x = layers.LeakyReLU(0.2, name="project_act")(x)
    for index, width in enumerate(reversed(filters[:-1])):
        x = up_block(x, width, f"up{index}", se_ratio=config["se_ratio"])
    return keras.Model(latent, image_output(x, config["channels"]), name="generator")


def build_discriminator(config):
    """(x, z) -> logit: the image-latent pair discriminator (models.layers.pair_discriminator)."""
    return pair_discriminator(config)


@keras.saving.register_keras_serializable(package="bigan_ad")
class ImprovedBiGAN(SegmentationHead, PairAdversary, AnomalyModel):
    """Owns encoder, generator and discriminator; `train_step` is the paper's two-phase update.

    The phase is plain Python state set once per epoch by `models.schedule.TwoPhaseSchedule`
    through `set_phase`, which retraces the train function only when the phase changes, so each
    compiled step contains exactly the updates of its phase.
    """

    SETTINGS = ("seed",)  # seeds the synthetic anomalies
    progress_logs = ("recon_loss", "adv_loss", "d_loss", "focal")  # the console's epoch line (training.callbacks.ProgressLine)

    def build_networks(self):
        self.encoder = build_encoder(self.config)
        self.generator = build_generator(self.config)
        self.discriminator = build_discriminator(self.config)
        self.synthetic = bool(self.config.get("synthetic_anomalies"))
        if self.synthetic:
            self.build_head()
        self.adversarial = False
        self.train_discriminator = False
        self._train_functions = {}

    def call(self, images, training=False):
        """Reconstruction G(E(x)): the inference path scored for anomalies."""
        return self.generator(self.encoder(images, training=training), training=training)

    def configure(self, run_config):
        """Compile from a resolved run config: Adam (shared lr) for E+G and D, the §III reconstruction loss.

        Raises models.losses.PerceptualWeightsError when VGG16 weights cannot be had.
        """
        extractor = build_perceptual_extractor(run_config["perceptual_weights"], self.config["image_size"])

        # E+G updates in the whole schedule: one per phase-1 step, `reconstruction_repeats` per phase-2 step.
        updates = run_config.get("steps_per_epoch", 0) * (
            run_config["epochs_recon"] + run_config["reconstruction_repeats"] * run_config["epochs_adv"])
        self.take_settings(run_config)
        lr = run_config["lr"]
        if updates and run_config.get("lr_schedule") == "cosine":
            lr = keras.optimizers.schedules.CosineDecay(lr, decay_steps=updates, alpha=0.05)
        self.compile(
            reconstruction_optimizer=self.adam(run_config, self.autoencoder_variables, learning_rate=lr),
            discriminator_optimizer=self.adam(run_config, self.discriminator.trainable_variables),
            reconstruction_loss=ReconstructionLoss(extractor, run_config.get("reconstruction_weights")),
            adversarial_weight=run_config["adversarial_weight"],
            reconstruction_repeats=run_config["reconstruction_repeats"],
        )

    def make_schedule(self, run_config):
        return TwoPhaseSchedule(run_config["epochs_recon"], run_config["epochs_adv"], run_config["discriminator_every"])

    def checkpoint_items(self):
        """Everything training needs to continue: the networks (with the head, when trained with one) and both optimizers."""
        return {
            "encoder": self.encoder, "generator": self.generator, "discriminator": self.discriminator,
            **({"segmentation_head": self.discriminative} if self.synthetic else {}),
            "reconstruction_optimizer": self.reconstruction_optimizer,
            "discriminator_optimizer": self.discriminator_optimizer,
        }

    def training_data(self, dataset):
        """The normals, or with --synthetic-anomalies the (x̃, mask, x) batches of data.synthesis."""
        return super().training_data(dataset) if self.synthetic else dataset

    @classmethod
    def own_score_variants(cls, architecture):
        """The latent distance; with the segmentation head, DRAEM's map scores too."""
        return {**cls.score_variants, **(MAP_VARIANTS if architecture.get("synthetic_anomalies") else {})}

    # §IV-F: "anomaly scores were computed using reconstruction error or latent space distance" (§IV-D likewise).
    score_variants = {"latent": {"latent_distance": 1.0}}

    def score_pairs(self, images):
        """One module: the image against its reconstruction G(E(x)), and the latent distance
        ||E(x) − E(G(E(x)))||² / d (the code of the reconstruction drifts from the image's code where
        the generator could not rebuild the image)."""
        latent = self.encoder(images)
        reconstruction = self.generator(latent)
        drift = keras.ops.mean(keras.ops.square(latent - self.encoder(reconstruction)), axis=-1)
        if self.synthetic:
            return {"improved_bigan": self.head_pair(images, reconstruction, {"latent_distance": drift})}
        return {"improved_bigan": ScorePair(images, reconstruction, {"latent_distance": drift})}

    def finish_training(self, normals):
        """Precise BatchNorm statistics for inference, from the un-augmented training normals.

        During training the generator's BatchNorm layers also see G(z), z ~ N(0, I), whose scale
        differs from the E(x) that inference feeds them (E(x) std ~0.02 vs 1), so their moving
        statistics describe neither path. Re-estimated here stage by stage — the encoder's on x, then
        the generator's on E(x) as inference computes it — as population averages (Wu & Johnson 2021).
        """
        precise_batchnorm(self.encoder, normals)
        precise_batchnorm(self.generator, normals.map(lambda images: self.encoder(images, training=False)))

    def compile(self, reconstruction_optimizer, discriminator_optimizer, reconstruction_loss,
                adversarial_weight=0.1, reconstruction_repeats=3):
        """Optimizers for encoder+generator and for the discriminator; the reconstruction loss object."""
        super().compile()
        self.reconstruction_optimizer = reconstruction_optimizer
        self.discriminator_optimizer = discriminator_optimizer
        self.reconstruction_loss = reconstruction_loss
        self.adversarial_weight = adversarial_weight
        self.reconstruction_repeats = reconstruction_repeats
        # Built eagerly so checkpoints can restore optimizer slots before the first step.
        for optimizer, variables in ((reconstruction_optimizer, self.autoencoder_variables),
                                     (discriminator_optimizer, self.discriminator.trainable_variables)):
            if not optimizer.built:
                optimizer.build(variables)
        self.start_trackers(["recon_loss", *reconstruction_loss.terms, "adv_loss", "d_loss", "d_real", "d_fake",
                             *(["focal"] if self.synthetic else [])])

    @property
    def autoencoder_variables(self):
        """Encoder + generator weights (and the segmentation head's): what every E/G update trains."""
        head = self.discriminative.trainable_variables if self.synthetic else []
        return self.encoder.trainable_variables + self.generator.trainable_variables + head

    def set_phase(self, adversarial, train_discriminator):
        """Switch phase, reusing the step compiled for it: at most three traces per run."""
        if self.train_function is not None:
            self._train_functions[(self.adversarial, self.train_discriminator)] = self.train_function
        self.adversarial, self.train_discriminator = adversarial, train_discriminator
        self.train_function = self._train_functions.get((adversarial, train_discriminator))
        if self.train_function is None:
            self.make_train_function()

    def train_step(self, data):
        """Phase 1: reconstruction updates; phase 2 adds the discriminator's and the BiGAN term. With the
        segmentation head, E and G restore the clean x from the corrupted x̃ and the head segments x̃."""
        if self.synthetic:
            corrupted, masks, images = self.synthetic_triple(data, self.reconstruction_optimizer.iterations)
        else:
            images, _, _ = keras.utils.unpack_x_y_sample_weight(data)  # unlabelled: only normal images
            corrupted, masks = images, None
        logged = ["recon_loss", *self.reconstruction_loss.terms, *(["focal"] if self.synthetic else [])]
        if self.adversarial:
            if self.train_discriminator:
                self._discriminator_update(images)
                logged += ["d_loss", "d_real", "d_fake"]
            self._autoencoder_update(images, corrupted, masks, adversarial=True)
            logged.append("adv_loss")
            for _ in range(self.reconstruction_repeats - 1):
                self._autoencoder_update(images, corrupted, masks, adversarial=False)
        else:
            self._autoencoder_update(images, corrupted, masks, adversarial=False)
        return self.logs(logged)

    def _autoencoder_update(self, images, corrupted, masks, adversarial):
        """One encoder+generator step: the reconstruction loss of x from `corrupted` (x itself without the head),
        plus the head's focal loss on `masks`, plus the BiGAN term on clean pairs when adversarial."""
        with tf.GradientTape() as tape:
            reconstruction = self(corrupted, training=True)
            terms = self.reconstruction_loss(images, reconstruction)
            loss = terms["total"]
            tracked = {"recon_loss": terms["total"], **{name: terms[name] for name in self.reconstruction_loss.terms}}
            if self.synthetic:
                tracked["focal"] = self.head_loss(corrupted, reconstruction, masks)
                loss = loss + tracked["focal"]
            if adversarial:
                _, tracked["adv_loss"] = bigan_losses(*self._pairs_logits(images, training=True))
                loss = loss + self.adversarial_weight * tracked["adv_loss"]
        self.apply_gradients(self.reconstruction_optimizer, tape, loss, self.autoencoder_variables)
        self.track(tracked)


FAMILY = Family(ImprovedBiGAN, PRESETS, TRAINING, TRAINING_COMMON, validate_conv_architecture, SYNTHETIC_TRAINING)
