"""Classical "floor" detectors, PCA and k-nearest normals: what a deep model must beat to be worth training.

Both learn from the flattened training normals in one pass (no epochs, no optimizer): the trainer
calls `fit_normals(dataset)` with the un-augmented training normals and their schedule has 0
epochs. After fitting, their inference is ordinary Keras layers with fixed non-trainable weights,
so the detector built on them saves to model.keras (safe_mode) and exports to a SavedModel like
any deep model's.

- `pca`: a linear autoencoder x -> (x − μ) Wᵀ W + μ, W the principal axes keeping `pca_variance`
  of the normals' variance; scored by its reconstruction error.
- `knn`: a memory bank of the normals; the score is the mean RMS distance to the k nearest
  normals, the "reconstruction" (for error maps) the mean of those k normals.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import layers
from sklearn.decomposition import PCA

from models.base import Family, FittedModel, ScorePair
from models.config import ConfigError

# Only data-independent settings: the number of PCA components and the bank size come from the data.
PRESETS = {
    "paper": {"image_size": 128, "channels": 1},
    "quick": {"image_size": 64, "channels": 1},
    "tiny": {"image_size": 32, "channels": 1},
}
# batch_size is the inference batch (fitting reads the normals batch by batch too).
TRAINING = {
    "paper": {"preset": "paper", "batch_size": 32},
    "quick": {"preset": "quick", "batch_size": 32},
    "smoke": {"preset": "tiny", "batch_size": 16},
}


def validate_architecture(config):
    """Nothing to check: any image size and either channel count (models.registry checks it) flatten alike."""


class NormalsFloor(FittedModel):
    """What both floors share: settings taken from the run config, no epochs, one fit on flattened normals.

    Subclasses name their run settings in SETTINGS and implement `_fit(normals)` (normals: float32
    [N, pixels] in [-1, 1]), which creates the fitted layers; `checkpoint_items` returns those layers.
    """

    def build_networks(self):
        self.fitted = {}
        size, channels = self.config["image_size"], self.config["channels"]
        self.flatten = layers.Flatten(dtype="float32", name="flatten")
        self.to_image = layers.Reshape((size, size, channels), dtype="float32", name="to_image")

    def checkpoint_items(self):
        return dict(self.fitted)

    def fit_normals(self, dataset):
        """Fit on a batched dataset of [B, S, S, C] training normals in [-1, 1] (read once, whole)."""
        batches = [np.asarray(batch, np.float32).reshape(len(batch), -1) for batch in dataset]
        if not batches:
            raise ConfigError(f"{self.name} needs at least one training normal.")
        normals = np.concatenate(batches)
        self.require_finite(normals)  # the kNN would otherwise fit NaN distances silently
        self._fit(normals)


def _fixed_dense(weights, bias, name):
    """A Dense layer holding given weights, frozen (float32 whatever the global dtype policy)."""
    dense = layers.Dense(weights.shape[1], trainable=False, dtype="float32", name=name)
    dense.build((None, weights.shape[0]))
    dense.set_weights([weights.astype(np.float32), bias.astype(np.float32)])
    return dense


@keras.saving.register_keras_serializable(package="bigan_ad")
class PCAFloor(NormalsFloor):
    """Linear autoencoder from the normals' principal axes: encode = (x − μ) Wᵀ, decode = z W + μ."""

    SETTINGS = ("pca_variance",)

    def _fit(self, normals):
        variance = self.settings["pca_variance"]
        if not 0.0 < variance <= 1.0:
            raise ConfigError(f"pca_variance must be in (0, 1], got {variance}.")
        # sklearn takes a fraction < 1 as variance to keep, and an integer as a component count.
        pca = PCA(n_components=variance if variance < 1.0 else min(normals.shape)).fit(normals)
        axes, mean = pca.components_, pca.mean_
        self.encoder = _fixed_dense(axes.T, -mean @ axes.T, "pca_encode")
        self.decoder = _fixed_dense(axes, mean, "pca_decode")
        self.fitted = {"encoder": self.encoder, "decoder": self.decoder}

    def score_pairs(self, images):
        """One module: the image against its projection onto the normals' principal subspace."""
        return {"pca": ScorePair(images, self.to_image(self.decoder(self.encoder(self.flatten(images)))))}


@keras.saving.register_keras_serializable(package="bigan_ad")
class NearestNormals(layers.Layer):
    """Flattened images [N, P] -> (mean RMS distance to the k nearest normals [N], mean of those normals [N, P]).

    The bank of normals is a non-trainable weight whose shape (bank_size, pixels) is in the
    config, so a saved model rebuilds it before loading the values. Neighbours are found with
    pairwise squared distances by matmul and tf.math.top_k (in the graph, so the SavedModel scores
    images); their distances are then recomputed directly, exact in float32.
    """

    def __init__(self, bank_size, pixels, k, **kwargs):
        super().__init__(**kwargs)
        self.bank_size, self.pixels, self.k = bank_size, pixels, k

    def build(self, input_shape=None):
        self.bank = self.add_weight(name="bank", shape=(self.bank_size, self.pixels), initializer="zeros",
                                    trainable=False)
        super().build(input_shape)

    def call(self, flat):
        flat = tf.cast(flat, tf.float32)
        squared = (tf.reduce_sum(tf.square(flat), axis=1, keepdims=True) - 2.0 * tf.matmul(flat, self.bank, transpose_b=True)
                   + tf.reduce_sum(tf.square(self.bank), axis=1)[None])
        _, nearest = tf.math.top_k(-squared, k=self.k)
        neighbours = tf.gather(self.bank, nearest)  # [N, k, P]
        rms = tf.sqrt(tf.reduce_mean(tf.square(flat[:, None] - neighbours), axis=-1))
        return tf.reduce_mean(rms, axis=1), tf.reduce_mean(neighbours, axis=1)

    def get_config(self):
        return {**super().get_config(), "bank_size": self.bank_size, "pixels": self.pixels, "k": self.k}


@keras.saving.register_keras_serializable(package="bigan_ad")
class KNNFloor(NormalsFloor):
    """Memory bank of the training normals; anomalous = far (RMS per pixel) from its k nearest normals."""

    SETTINGS = ("knn_k",)
    score_variants = {"knn": {"knn_distance": 1.0}}

    def _fit(self, normals):
        k = self.settings["knn_k"]
        if k < 1:
            raise ConfigError(f"knn_k must be at least 1, got {k}.")
        self.neighbours = NearestNormals(len(normals), normals.shape[1], min(k, len(normals)), dtype="float32",
                                         name="knn_bank")
        self.neighbours.build((None, normals.shape[1]))
        self.neighbours.bank.assign(normals)
        self.fitted = {"bank": self.neighbours}

    def score_pairs(self, images):
        """One module: the image, the mean of its k nearest normals, and the kNN distance as an extra term."""
        distance, nearest = self.neighbours(self.flatten(images))
        return {"knn": ScorePair(images, self.to_image(nearest), {"knn_distance": distance})}


# "score" names the default score variant (evaluation.scoring).
PCA_FAMILY = Family(PCAFloor, PRESETS, TRAINING, {"score": "mse", "pca_variance": 0.95}, validate_architecture)
KNN_FAMILY = Family(KNNFloor, PRESETS, TRAINING, {"score": "knn", "knn_k": 5}, validate_architecture)
