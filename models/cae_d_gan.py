"""CAE-D-GAN (chest X-ray anomaly detection, 2025, §2-3): a convolutional autoencoder, then two GANs in series.

Module 1 (CAE) reconstructs x through a small spatial code, so what normal images do not
share (a lesion) is not rebuilt. Module 2 (DGAN, "learn the degradation") maps the CAE output
to what a realistic degraded view of x looks like; module 3 (DDGAN, "learn the restoration")
restores a sharp x from DGAN's degraded image, trained on the pairs DGAN produces (Bulat et al.
2018's high-to-low / low-to-high pair). The paper leaves the degradation unspecified; ours is
`degrade(x)` = a half-resolution, blurred view (average pooling then bilinear up-sampling), and
both GANs only ever see images derived from the CAE output, so none of them can copy an anomaly
from the input. Each module scores its own (reference, reconstruction) pair.

`--profile paper` follows the paper where quick keeps its tuned recipe (docs/fidelity.md §3-4):
the modules are trained one after the other (CAE, DGAN, DDGAN; `training_order: sequential`),
the DGAN without paired targets (`dgan_paired: False`), at inference the CAE code is refined by
a bounded Adam search (`search_steps`), and the score is the L1 reconstruction error (`cae_d_gan`).
"""

import keras
import tensorflow as tf
from keras import layers

from models.base import AnomalyModel, Family, ScorePair
from models.config import ConfigError
from models.layers import (
    OUTPUT_DTYPE,
    GradientSearch,
    conv_act,
    conv_block,
    image_output,
    magnify_block,
    multi_kernel_block,
    residual_block,
    rrdb,
)
from models.losses import hinge_discriminator_loss, hinge_generator_loss
from models.schedule import SinglePhaseSchedule

# The paper's training order (§2.1-2.2, docs/fidelity.md §4): each module learns from the ones before it, frozen.
STAGES = ("cae", "dgan", "ddgan")

PRESETS = {
    # §2.3-2.4: 16 residual blocks (DGAN), 24 RRDBs of three dense blocks (DDGAN); widths are ESRGAN's.
    # §2.2's inference-time search of the CAE code: the paper gives no count; 30 Adam steps of 0.02 are a
    # cost choice (docs/fidelity.md §3). quick and tiny have none (no search_steps: off).
    "paper": {
        "image_size": 128,
        "channels": 1,
        "cae_filters": [32, 64, 128, 256, 256],
        "cae_code_channels": 64,
        "degrade_factor": 2,
        "dgan_width": 64,
        "dgan_blocks": 16,
        "ddgan_width": 64,
        "ddgan_growth": 32,
        "ddgan_dense_convs": 4,
        "ddgan_rrdbs": 24,
        "discriminator_filters": [64, 128, 256, 512],
        "dgan_discriminator_kernels": [3, 5],
        "ddgan_discriminator_kernels": [3, 7],
        "search_steps": 30,
        "search_lr": 0.02,
    },
    # Tuned on the phantom: the CAE carries the detection (module 1 scores best, as in the paper's Fig. 9),
    # so it keeps its width; the GANs are slim so 30 epochs fit minutes on two CPU cores.
    "quick": {
        "image_size": 64,
        "channels": 1,
        "cae_filters": [32, 64, 128, 128],
        "cae_code_channels": 32,
        "degrade_factor": 2,
        "dgan_width": 8,
        "dgan_blocks": 4,
        "ddgan_width": 8,
        "ddgan_growth": 8,
        "ddgan_dense_convs": 2,
        "ddgan_rrdbs": 1,
        "discriminator_filters": [8, 16, 32],
        "dgan_discriminator_kernels": [3, 5],
        "ddgan_discriminator_kernels": [3, 7],
    },
    "tiny": {
        "image_size": 32,
        "channels": 1,
        "cae_filters": [4, 8],
        "cae_code_channels": 4,
        "degrade_factor": 2,
        "dgan_width": 4,
        "dgan_blocks": 2,
        "ddgan_width": 4,
        "ddgan_growth": 4,
        "ddgan_dense_convs": 2,
        "ddgan_rrdbs": 1,
        "discriminator_filters": [4, 8],
        "dgan_discriminator_kernels": [3, 5],
        "ddgan_discriminator_kernels": [3, 7],
    },
}

_PAPER_TRAINING = {"lr": 1e-4, "beta_1": 0.9, "beta_2": 0.999, "lambda_recon": 50.0, "lambda_en": 1.0, "lambda_adv": 1.0}
TRAINING = {
    # §4.2: Adam 1e-4 (0.9, 0.999), no weight decay, λ_recon 50, λ_en 1, λ_adv 1; 10/20/50 epochs; batch 64.
    # §2.1-2.2 (docs/fidelity.md §4): CAE, then DGAN, then DDGAN, `epochs` epochs each; the DGAN on unpaired
    # data (no degraded target per image); the score is the reconstruction error, L1 as in training.
    "paper": {"preset": "paper", "epochs": 50, "batch_size": 64, **_PAPER_TRAINING, "min_updates": 0,
              "training_order": "sequential", "dgan_paired": False, "score": "cae_d_gan"},
    # quick: 10x the paper's lr so 30 epochs suffice (12 steps each on the phantom); the GANs stay stable at it.
    "quick": {"preset": "quick", "epochs": 30, "batch_size": 32, **_PAPER_TRAINING, "lr": 1e-3,
              "min_updates": 360},  # = 30 epochs x 12 steps, the phantom's quick schedule (see scale_to_data)
    "smoke": {"preset": "tiny", "epochs": 1, "batch_size": 16, **_PAPER_TRAINING, "min_updates": 0},
}

TRAINING_COMMON = {
    # quick and smoke: all modules on every batch (training_order "joint"), the DGAN paired with degrade(x).
    # Per-module score: the largest per-pixel-standardised reconstruction error (evaluation.scoring:
    # error_zmax), chosen on the phantom; `paper` scores the paper's L1 reconstruction error (variant
    # `cae_d_gan`). The cascade score is the mean of the three standardised module scores.
    "score": "error_zmax",
}



def validate_architecture(config):
    """Raise ConfigError when the image size cannot be halved as often as the networks need."""
    factor = config["degrade_factor"]
    if factor < 2 or factor & (factor - 1):
        raise ConfigError(f"degrade_factor {factor} must be a power of two (2, 4, ...): the GANs magnify in x2 steps.")
    for part, stride in (
        ("the autoencoder", 2 ** len(config["cae_filters"])),
        ("the degradation", factor),
        ("the discriminators", 2 ** len(config["discriminator_filters"])),
    ):
        if config["image_size"] % stride:
            raise ConfigError(
                f"image_size {config['image_size']} must be a multiple of {stride} for {part} of CAE-D-GAN; "
                "pick e.g. 32, 64, 128 or 256."
            )


def _image_input(config, name="image"):
    return keras.Input((config["image_size"], config["image_size"], config["channels"]), name=name)


def build_degrader(config):
    """x -> degrade(x): what a 1/factor-resolution view keeps, back at full size (no weights)."""
    images = _image_input(config)
    factor = config["degrade_factor"]
    low = layers.AveragePooling2D(factor, name="downsample", dtype=OUTPUT_DTYPE)(images)
    degraded = layers.UpSampling2D(factor, interpolation="bilinear", name="upsample", dtype=OUTPUT_DTYPE)(low)
    return keras.Model(images, degraded, name="degrader")


def build_cae_encoder(config):
    """Module 1 encoder (§2.3, Fig. 3): strided convs down to a small spatial code (the bottleneck).

    A 1x1 conv squeezes the last feature map to `cae_code_channels`: a code that keeps where
    things are (so normal anatomy is rebuilt sharply) but too few numbers to copy a lesion.
    """
    x = images = _image_input(config)
    for index, filters in enumerate(config["cae_filters"]):
        x = conv_block(x, filters, f"enc{index}", batch_norm=False)
    code = layers.Conv2D(config["cae_code_channels"], 1, name="code", dtype=OUTPUT_DTYPE)(x)
    return keras.Model(images, code, name="cae_encoder")


def build_cae_decoder(config):
    """Module 1 decoder: 1x1 conv out of the bottleneck, transposed convs back up, tanh image in [-1, 1]."""
    filters = config["cae_filters"]
    base = config["image_size"] // 2 ** len(filters)
    code = keras.Input((base, base, config["cae_code_channels"]), name="code")
    x = conv_act(code, filters[-1], "bottleneck", kernel_size=1)
    for index, width in enumerate(reversed(filters[:-1])):
        x = layers.Conv2DTranspose(width, 4, strides=2, padding="same", name=f"dec{index}_deconv")(x)
        x = layers.LeakyReLU(0.2, name=f"dec{index}_act")(x)
    return keras.Model(code, image_output(x, config["channels"]), name="cae_decoder")


def _build_generator(config, width, trunk, name):
    """The generator skeleton both GANs share (§2.3.1, §2.4.1), differing only in their trunk.

    Input part (3x3 conv + activation, strided to the degraded resolution), trunk with a long
    skip around it, image magnification back to full size, output conv with tanh.
    """
    images = _image_input(config)
    factor = config["degrade_factor"]
    features = conv_act(images, width, "input", strides=factor)
    x = trunk(features)
    x = layers.Conv2D(width, 3, padding="same", name="trunk_conv")(x)
    x = layers.Add(name="long_skip")([features, x])
    for step in range(factor.bit_length() - 1):
        x = magnify_block(x, width, f"magnify{step}")
    output = layers.Conv2D(config["channels"], 3, padding="same", activation="tanh", name="output", dtype=OUTPUT_DTYPE)(x)
    return keras.Model(images, output, name=name)


def build_dgan_generator(config):
    """Module 2 generator: `dgan_blocks` residual blocks (16 in the paper)."""

    def trunk(x):
        for index in range(config["dgan_blocks"]):
            x = residual_block(x, f"res{index}")
        return x

    return _build_generator(config, config["dgan_width"], trunk, "dgan_generator")


def build_ddgan_generator(config):
    """Module 3 generator: `ddgan_rrdbs` residual-in-residual dense blocks (24 in the paper)."""

    def trunk(x):
        for index in range(config["ddgan_rrdbs"]):
            x = rrdb(x, config["ddgan_growth"], config["ddgan_dense_convs"], f"rrdb{index}")
        return x

    return _build_generator(config, config["ddgan_width"], trunk, "ddgan_generator")


def build_discriminator(config, kernel_sizes, name):
    """Image -> patch logits: strided multi-kernel blocks (§2.3.2, §2.4.2). No BatchNorm: batches are all real or all fake."""
    x = images = _image_input(config)
    for index, filters in enumerate(config["discriminator_filters"]):
        x = multi_kernel_block(x, filters, kernel_sizes, f"block{index}")
    logits = layers.Conv2D(1, 3, padding="same", name="logits", dtype=OUTPUT_DTYPE)(x)
    return keras.Model(images, logits, name=name)


def reconstruction_l1(references, reconstructions):
    """Per image mean |x − x̂| on [0, 1] intensities: L_P (§3.3), the error the CAE is trained and searched on."""
    difference = tf.cast(references, tf.float32) - tf.cast(reconstructions, tf.float32)
    return tf.reduce_mean(tf.abs(difference), axis=[1, 2, 3]) / 2.0


@keras.saving.register_keras_serializable(package="bigan_ad")
class ReconstructionL1(layers.Layer):
    """(references, reconstructions) -> `reconstruction_l1`: the term of the paper's score (variant `cae_d_gan`).

    A layer, not a raw TensorFlow op, so the functional detector can call it on symbolic images.
    """

    def call(self, references, reconstructions):
        return reconstruction_l1(references, reconstructions)

    def compute_output_shape(self, references_shape, reconstructions_shape):
        return (references_shape[0],)


@keras.saving.register_keras_serializable(package="bigan_ad")
class CodeSearch(GradientSearch):
    """Images x -> D(z_T): `steps` Adam steps on the CAE code z from z_0 = E(x), minimising L1(x, D(z)).

    §2.2: "During the inference stage, backpropagation is used to iteratively determine the feature
    representation of the test image's hidden space." The encoder's code is the start, so the
    search refines the amortised guess rather than fitting from nothing, and a fixed, small number
    of steps bounds both the cost and how far the code can move towards an anomaly. Batched; each
    image's code and Adam moments are its own (the decoder has no BatchNorm), so an image scores
    the same alone and in a batch.
    """

    networks = ("encoder", "decoder")

    def __init__(self, encoder, decoder, steps, learning_rate, **kwargs):
        super().__init__(steps, learning_rate, **kwargs)
        self.encoder, self.decoder = encoder, decoder

    def search(self, images, steps=None):
        """The code after `steps` Adam steps (default: the layer's own count), per image."""
        images = tf.cast(images, tf.float32)
        start = tf.cast(self.encoder(images, training=False), tf.float32)
        return self.descend(lambda code: reconstruction_l1(images, self.decoder(code, training=False)), start, steps)

    def call(self, images, training=False):
        return tf.cast(self.decoder(self.search(images), training=False), tf.float32)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


def _trackers(names):
    return {name: keras.metrics.Mean(name=name) for name in names}


class ConvAutoencoder(keras.Model):
    """Module 1: encoder + decoder trained on the pixel loss L_P = L1(x, x̂) (§3.3)."""

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.trackers = _trackers(["pixel_loss"])
        self.built = True  # the functional sub-networks are built already

    def call(self, images, training=False):
        return self.decoder(self.encoder(images, training=training), training=training)

    def compile(self, optimizer):
        super().compile()
        self.pixel_optimizer = optimizer
        if not optimizer.built:  # eagerly, so checkpoints restore slots before step 1
            optimizer.build(self.trainable_variables)

    def get_compile_config(self):
        return None  # optimizers are rebuilt by CAEDGAN.configure; a saved model carries weights only

    @property
    def metrics(self):
        return list(self.trackers.values())

    def update(self, images):
        """One Adam step on L_P; returns the reconstruction it computed (before the step)."""
        with tf.GradientTape() as tape:
            reconstruction = self(images, training=True)
            loss = tf.reduce_mean(tf.abs(images - reconstruction))
        AnomalyModel.apply_gradients(self.pixel_optimizer, tape, loss, self.trainable_variables)
        self.trackers["pixel_loss"].update_state(loss)
        return reconstruction

    def train_step(self, data):
        """Module 1 fitted alone (tests/test_distribution.py checks replica gradients with it); CAEDGAN calls `update`."""
        images, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        self.update(images)
        return {name: tracker.result() for name, tracker in self.trackers.items()}


class CascadeGAN(keras.Model):
    """Modules 2 and 3: a generator G that maps `inputs` towards `targets`, judged by a discriminator D.

    L_G = λ_recon·L1(target, G(input)) + λ_en·L1(E(target), E(G(input))) + λ_adv·(−D(G(input)))
    (§3.1); L_D = hinge (§3.2), real = `reals`, fake = G(inputs). E is the CAE encoder, frozen here
    (it is module 1's), so L_en asks G's output to be what the autoencoder considers the same image
    as the target. D sees single images, so its signal is unpaired by construction; a paired GAN's
    targets are its reals (the DDGAN: x; quick's DGAN: degrade(x)), the paper's unpaired DGAN takes
    its own input as the target of eq. (1)-(2) and degraded normals as reals.
    """

    def __init__(self, generator, discriminator, encoder, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.encoder = encoder
        self.trackers = _trackers(["g_loss", "recon_loss", "en_loss", "adv_loss", "d_loss", "d_real", "d_fake"])
        self.built = True

    def call(self, inputs, training=False):
        return self.generator(inputs, training=training)

    def compile(self, generator_optimizer, discriminator_optimizer, lambda_recon, lambda_en, lambda_adv):
        super().compile()
        self.generator_optimizer = generator_optimizer
        self.discriminator_optimizer = discriminator_optimizer
        self.generator_loss_weights = {"recon_loss": lambda_recon, "en_loss": lambda_en, "adv_loss": lambda_adv}
        for optimizer, network in ((generator_optimizer, self.generator), (discriminator_optimizer, self.discriminator)):
            if not optimizer.built:
                optimizer.build(network.trainable_variables)

    def get_compile_config(self):
        return None

    @property
    def metrics(self):
        return list(self.trackers.values())

    def update(self, inputs, targets, reals=None):
        """One simultaneous G and D step from the same forward pass; returns G(inputs) (before the step).

        `reals`: what D learns as real; None = `targets` (a paired GAN).
        """
        reals = targets if reals is None else reals
        with tf.GradientTape(persistent=True) as tape:
            generated = self.generator(inputs, training=True)
            real_logits = self.discriminator(reals, training=True)
            fake_logits = self.discriminator(generated, training=True)
            terms = {
                "recon_loss": tf.reduce_mean(tf.abs(targets - generated)),
                "en_loss": tf.reduce_mean(tf.abs(self.encoder(targets) - self.encoder(generated))),
                "adv_loss": hinge_generator_loss(fake_logits),
            }
            g_loss = tf.add_n([self.generator_loss_weights[name] * value for name, value in terms.items()])
            d_loss = hinge_discriminator_loss(real_logits, fake_logits)
        AnomalyModel.apply_gradients(self.generator_optimizer, tape, g_loss, self.generator.trainable_variables)
        AnomalyModel.apply_gradients(self.discriminator_optimizer, tape, d_loss, self.discriminator.trainable_variables)
        del tape
        logged = {**terms, "g_loss": g_loss, "d_loss": d_loss,
                  "d_real": tf.reduce_mean(real_logits), "d_fake": tf.reduce_mean(fake_logits)}
        for name, value in logged.items():
            self.trackers[name].update_state(value)
        return generated


class StageSchedule(keras.callbacks.Callback):
    """The paper's order: `epochs` epochs of each module of STAGES in turn, via CAEDGAN.set_stage."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs
        self.total_epochs = epochs * len(STAGES)

    def phase(self, epoch):
        return STAGES[epoch // self.epochs]

    def representative_epochs(self):
        return {stage: index * self.epochs for index, stage in enumerate(STAGES)} if self.epochs else {}

    def on_epoch_begin(self, epoch, logs=None):
        self.model.set_stage(self.phase(epoch))


@keras.saving.register_keras_serializable(package="bigan_ad")
class CAEDGAN(AnomalyModel):
    """The three modules in series; `train_step` runs module 1, 2 then 3 on every batch, or one stage.

    Each module is trained on its own loss with its own optimizers; the images passed down the
    cascade are constants for the next module (stop_gradient), as in a pipeline of separately
    trained networks, so no module's loss moves another module's weights. Under the paper's
    sequential order (`set_stage`, from StageSchedule) a stage trains one module only, on the
    outputs of the modules before it run in inference mode.
    """

    # The console's epoch line (training.callbacks.ProgressLine): each module's own loss and the GANs'
    # discriminator losses; the other ten logs are in history.json and TensorBoard.
    progress_logs = ("m1_pixel_loss", "m2_g_loss", "m2_d_loss", "m3_g_loss", "m3_d_loss")
    # The paper's score (§2.2: "the data reconstruction error serves as an anomaly score"), the L1 error
    # it trains on; the default under --profile paper.
    score_variants = {"cae_d_gan": {"l1": 1.0}}

    def __init__(self, config, **kwargs):
        validate_architecture(config)
        super().__init__(config, **kwargs)

    def build_networks(self):
        self.degrader = build_degrader(self.config)
        self.cae = ConvAutoencoder(build_cae_encoder(self.config), build_cae_decoder(self.config), name="cae")
        kernels = {name: self.config[f"{name}_discriminator_kernels"] for name in ("dgan", "ddgan")}
        self.dgan = CascadeGAN(
            build_dgan_generator(self.config),
            build_discriminator(self.config, kernels["dgan"], "dgan_discriminator"),
            self.cae.encoder,
            name="dgan",
        )
        self.ddgan = CascadeGAN(
            build_ddgan_generator(self.config),
            build_discriminator(self.config, kernels["ddgan"], "ddgan_discriminator"),
            self.cae.encoder,
            name="ddgan",
        )
        steps = self.config.get("search_steps", 0)
        self.code_search = CodeSearch(self.cae.encoder, self.cae.decoder, steps, self.config["search_lr"],
                                      name="code_search", dtype="float32") if steps else None
        self.reconstruction_l1 = ReconstructionL1(name="reconstruction_l1", dtype="float32")
        self.stage = None  # None: the joint step; else the one module of STAGES this epoch trains
        self.dgan_paired = True
        self._train_functions = {}

    @property
    def modules(self):
        """Log prefix -> module, in cascade order."""
        return {"m1": self.cae, "m2": self.dgan, "m3": self.ddgan}

    def reconstruct(self, images):
        """Module 1's x̂1: D(E(x)), or with `search_steps` D of the searched code (§2.2's inference)."""
        return self.code_search(images) if self.code_search else self.cae.decoder(self.cae.encoder(images))

    def score_pairs(self, images):
        """Module name -> (reference, reconstruction, {"l1": their L1 error}), images [N, H, W, C] in [-1, 1].

        Module 1 compares x with the CAE output, module 2 the degraded x with DGAN's degraded
        image (blurring removes the noise and fine texture no reconstruction can reproduce),
        module 3 x with DDGAN's restoration; with the code search, the searched x̂1 feeds the whole
        cascade. Built from the functional sub-networks and registered layers only, so it works on a
        symbolic keras.Input and inside an exported model. Global MSE/SSIM of these pairs separate
        the phantom poorly (AUROC ~0.6-0.7: mis-fitted skull edges dominate); the maximum of the
        blurred |error| standardised per pixel on validation normals does (~0.85).
        """
        reconstruction = self.reconstruct(images)
        degraded = self.dgan.generator(reconstruction)
        restored = self.ddgan.generator(degraded)
        pairs = {
            "module_1": (images, reconstruction),
            "module_2": (self.degrader(images), degraded),
            "module_3": (images, restored),
        }
        return {name: ScorePair(*pair, {"l1": self.reconstruction_l1(*pair)}) for name, pair in pairs.items()}

    def configure(self, run_config):
        """Adam optimizers (one per network that learns), the loss weights of `run_config` (§4.2) and the DGAN's pairing."""
        super().compile()
        weights = {name: run_config[name] for name in ("lambda_recon", "lambda_en", "lambda_adv")}
        self.cae.compile(self.adam(run_config, self.cae.trainable_variables))
        for gan in (self.dgan, self.ddgan):
            gan.compile(self.adam(run_config, gan.generator.trainable_variables),
                        self.adam(run_config, gan.discriminator.trainable_variables), **weights)
        self.dgan_paired = run_config.get("dgan_paired", True)

    def checkpoint_items(self):
        """Every network and optimizer training needs to continue, by name, for tf.train.Checkpoint."""
        return {
            "cae_encoder": self.cae.encoder,
            "cae_decoder": self.cae.decoder,
            "cae_optimizer": self.cae.pixel_optimizer,
            **{
                f"{prefix}_{part}": item
                for prefix, gan in (("dgan", self.dgan), ("ddgan", self.ddgan))
                for part, item in (
                    ("generator", gan.generator),
                    ("discriminator", gan.discriminator),
                    ("generator_optimizer", gan.generator_optimizer),
                    ("discriminator_optimizer", gan.discriminator_optimizer),
                )
            },
        }

    def make_schedule(self, run_config):
        """quick/smoke: one phase, every module on every batch; paper: `epochs` epochs per module in STAGES order."""
        if run_config.get("training_order", "joint") == "sequential":
            return StageSchedule(run_config["epochs"])
        return SinglePhaseSchedule(run_config["epochs"], "cascade")

    def set_stage(self, stage):
        """Train only `stage` (one of STAGES; None: all), reusing the step compiled for it: one trace per stage."""
        if self.train_function is not None:
            self._train_functions[self.stage] = self.train_function
        self.stage = stage
        self.train_function = self._train_functions.get(stage)
        if self.train_function is None:
            self.make_train_function()

    def finish_training(self, normals):
        """Nothing to re-estimate: no network of the cascade has BatchNorm (super-resolution style)."""

    @property
    def metrics(self):
        return [tracker for module in self.modules.values() for tracker in module.metrics]

    def train_step(self, data):
        """The modules that learn this step (all, or the stage's) update; the ones before a stage run frozen.

        DGAN: paired, it learns degrade(x) as its target; unpaired (the paper's), its target in
        L_recon and L_en is its own input and degrade(x) is only what its discriminator sees as real.
        """
        images, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        learning = STAGES if self.stage is None else (self.stage,)
        reconstruction = self.cae.update(images) if "cae" in learning else self.cae(images)
        if "dgan" in learning:
            inputs = tf.stop_gradient(reconstruction)
            targets, reals = (self.degrader(images), None) if self.dgan_paired else (inputs, self.degrader(images))
            degraded = self.dgan.update(inputs, targets, reals)
        elif "ddgan" in learning:
            degraded = self.dgan(reconstruction)
        if "ddgan" in learning:
            self.ddgan.update(tf.stop_gradient(degraded), images)
        return {
            f"{prefix}_{name}": tracker.result()
            for (prefix, module), stage in zip(self.modules.items(), STAGES) if stage in learning
            for name, tracker in module.trackers.items()
        }


FAMILY = Family(CAEDGAN, PRESETS, TRAINING, TRAINING_COMMON, validate_architecture)
