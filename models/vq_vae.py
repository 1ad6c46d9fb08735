"""VQ-VAE (van den Oord et al. 2017), the Improved BiGAN paper's VQ-VAE row.

A conv encoder maps the image to a grid of D-dimensional vectors; each is replaced by its nearest
entry of a learned codebook of K vectors; a transposed-conv decoder rebuilds the image from the
quantised grid. Gradients pass the quantisation unchanged (straight-through estimator). Loss, as
in the paper: reconstruction MSE + ‖sg(z_e) − e‖² (moves the codebook) + β‖z_e − sg(e)‖²
(commitment, β = 0.25). The codebook's perplexity (how many codes are in use) is logged, since
collapse onto a few codes is this model's known failure. Score: the reconstruction error; the
quantisation distance ‖z_e − e‖² is a variant (`--score quantization`).
"""

import keras
from keras import layers, ops

from models.autoencoders import Autoencoder, family
from models.base import ScorePair
from models.config import validate_conv_architecture
from models.layers import OUTPUT_DTYPE, conv_block, deconv_block, image_output


@keras.saving.register_keras_serializable(package="bigan_ad")
class VectorQuantizer(layers.Layer):
    """[..., D] vectors -> their nearest codebook entries [..., D] (the codebook: K × D weights)."""

    def __init__(self, codes, code_dim, **kwargs):
        super().__init__(**kwargs)
        self.codes, self.code_dim = codes, code_dim

    def build(self, input_shape=None):
        self.codebook = self.add_weight(name="codebook", shape=(self.codes, self.code_dim),
                                        initializer=keras.initializers.RandomUniform(-1.0 / self.codes, 1.0 / self.codes))
        super().build(input_shape)

    def nearest(self, vectors):
        """Index of the nearest codebook entry for every vector."""
        flat = ops.reshape(vectors, (-1, self.code_dim))
        distances = (ops.sum(ops.square(flat), axis=1, keepdims=True) - 2.0 * ops.matmul(flat, ops.transpose(self.codebook))
                     + ops.sum(ops.square(self.codebook), axis=1)[None])
        return ops.reshape(ops.argmin(distances, axis=1), ops.shape(vectors)[:-1])

    def lookup(self, indices):
        """The codebook entries at `indices`."""
        return ops.take(self.codebook, indices, axis=0)

    def call(self, vectors):
        return self.lookup(self.nearest(vectors))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "codes": self.codes, "code_dim": self.code_dim}


# Conv widths as the other baselines. One stride-2 stage per filter, so every preset quantises an 8×8 grid: S/16 at
# `paper`'s 128, S/8 at `quick`'s 64, S/4 at `tiny`'s 32 (van den Oord et al.'s 8×8 grid for 32×32 images).
PRESETS = {
    "paper": {"image_size": 128, "channels": 1, "filters": [32, 64, 128, 256], "codes": 512, "code_dim": 64},
    "quick": {"image_size": 64, "channels": 1, "filters": [16, 32, 64], "codes": 128, "code_dim": 32},
    "tiny": {"image_size": 32, "channels": 1, "filters": [4, 8], "codes": 8, "code_dim": 4},
}


@keras.saving.register_keras_serializable(package="bigan_ad")
class VQVAE(Autoencoder):
    """Encoder -> VectorQuantizer -> decoder; trained on reconstruction + codebook + β·commitment."""

    SETTINGS = ("commitment_cost",)
    LOSS_TERMS = ("loss", "reconstruction", "codebook", "commitment", "perplexity")
    progress_logs = ("loss", "perplexity")
    score_variants = {"quantization": {"quantization_error": 1.0}}

    def build_networks(self):
        size, channels, filters = self.config["image_size"], self.config["channels"], self.config["filters"]
        images = keras.Input((size, size, channels), name="image")
        x = images
        for index, width in enumerate(filters):
            x = conv_block(x, width, f"enc{index}")
        vectors = layers.Conv2D(self.config["code_dim"], 1, name="pre_quantization", dtype=OUTPUT_DTYPE)(x)
        self.encoder = keras.Model(images, vectors, name="encoder")
        self.quantizer = VectorQuantizer(self.config["codes"], self.config["code_dim"], dtype="float32", name="quantizer")
        self.quantizer.build((None, self.config["code_dim"]))
        base = size // 2 ** len(filters)
        code = keras.Input((base, base, self.config["code_dim"]), name="code")
        x = conv_block(code, filters[-1], "post_quantization", strides=1, kernel_size=3)
        for index, width in enumerate(reversed(filters[:-1])):
            x = deconv_block(x, width, f"up{index}")
        self.decoder = keras.Model(code, image_output(x, channels), name="decoder")

    def code(self, images, training=False):
        return self.quantizer(self.encoder(images, training=training))

    def checkpoint_items(self):
        return {**super().checkpoint_items(), "quantizer": self.quantizer}

    def loss_terms(self, images):
        vectors = self.encoder(images, training=True)
        indices = self.quantizer.nearest(vectors)  # once: the quantisation and the codebook usage both need them
        quantized = self.quantizer.lookup(indices)
        straight_through = vectors + ops.stop_gradient(quantized - vectors)
        reconstruction = ops.mean(ops.square(images - self.decoder(straight_through, training=True)))
        codebook = ops.mean(ops.square(ops.stop_gradient(vectors) - quantized))
        commitment = ops.mean(ops.square(vectors - ops.stop_gradient(quantized)))
        usage = ops.mean(ops.one_hot(ops.reshape(indices, (-1,)), self.config["codes"]), axis=0)
        perplexity = ops.exp(-ops.sum(usage * ops.log(usage + 1e-10)))
        return {"loss": reconstruction + codebook + self.settings["commitment_cost"] * commitment,
                "reconstruction": reconstruction, "codebook": codebook, "commitment": commitment,
                "perplexity": ops.stop_gradient(perplexity)}

    def score_pairs(self, images):
        """The image against the decoding of its quantised code, with the quantisation distance per image."""
        vectors = self.encoder(images)
        quantized = self.quantizer(vectors)
        distance = ops.mean(ops.square(vectors - quantized), axis=(1, 2, 3))
        return {self.name: ScorePair(images, self.decoder(quantized), {"quantization_error": distance})}


VQ_VAE_FAMILY = family(VQVAE, PRESETS, validate_conv_architecture, commitment_cost=0.25)
