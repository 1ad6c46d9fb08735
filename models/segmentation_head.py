"""DRAEM's discriminative head, for any model that reconstructs: learn to segment synthetic anomalies.

A model with the head trains on (x̃, mask, x) batches (data.synthesis): its reconstruction network restores x
from the corrupted x̃, and a U-Net (models.layers.segmentation_unet) reads concat(x̃, x̂) and predicts the mask
(one logit per pixel, focal loss: models.losses.focal_loss). At inference the predicted anomaly probability is
the module's own map (models.base.ScorePair.anomaly_map), and two image terms become score variants: `draem`,
DRAEM's score (the maximum of the map averaged over a 21×21 window at 256 px, scaled with the input: 5×5 at
64) and `map_mean`, the map's mean, for findings spread over the image. `draem` (models.draem) is built on it,
and so is `improved_bigan --synthetic-anomalies`.
"""

import keras
import tensorflow as tf
from keras import layers

from data.synthesis import synthesize, synthetic_batches
from models.base import ScorePair
from models.layers import OUTPUT_DTYPE, segmentation_unet
from models.losses import focal_loss

PAPER_WINDOW, PAPER_SIZE = 21, 256  # DRAEM's average filter over the map, at its input size
MAP_VARIANTS = {"draem": {"draem": 1.0}, "map_mean": {"map_mean": 1.0}}
# A model trained on synthetic anomalies is scored by the map's mean unless told otherwise: chosen on the four dev
# sets (seeds 0-2) as the variant with the largest worst-case margin over the floor (docs/defaults.md).
MAP_SCORE = "map_mean"


def window_size(image_size):
    """DRAEM's 21-pixel average window at 256 px, scaled to `image_size` (odd, at least 3)."""
    return max(3, 2 * round((PAPER_WINDOW * image_size / PAPER_SIZE - 1) / 2) + 1)


@keras.saving.register_keras_serializable(package="bigan_ad")
class MapScores(layers.Layer):
    """Per-pixel logits [N, S, S] -> (anomaly probability map, {"draem": max of its `window`-mean, "map_mean"})."""

    def __init__(self, window, **kwargs):
        super().__init__(**kwargs)
        self.window = int(window)

    def call(self, logits):
        probability = tf.sigmoid(tf.cast(logits, tf.float32))
        local = tf.nn.avg_pool2d(probability[..., None], self.window, 1, "SAME")[..., 0]
        return probability, {"draem": tf.reduce_max(local, axis=[1, 2]), "map_mean": tf.reduce_mean(probability, axis=[1, 2])}

    def get_config(self):
        return {**super().get_config(), "window": self.window}


class SegmentationHead:
    """Mixin for an AnomalyModel that reconstructs: the discriminative U-Net, its loss, its map and its batches.

    The model calls `build_head()` in build_networks (architecture key `unet_filters`), lists "seed" in SETTINGS,
    adds `self.discriminative` to its checkpoint and to the variables its optimizer trains, adds `head_loss`
    to its loss, and scores with `head_pair`.
    """

    def build_head(self):
        size, channels = self.config["image_size"], self.config["channels"]
        self.discriminative = segmentation_unet(size, 2 * channels, self.config["unet_filters"], name="discriminative")
        self.map_scores = MapScores(window_size(size), name="map_scores", dtype=OUTPUT_DTYPE)

    def training_data(self, dataset):
        """The training normals with synthetic anomalies: (x̃, mask, x) batches (data.synthesis), endless, so one
        iterator serves every epoch (the trainer reads steps_per_epoch batches an epoch)."""
        return synthetic_batches(dataset.repeat(), self.settings["seed"])

    def synthetic_triple(self, data, step):
        """(x̃, mask, x) as training_data gives it; plain images (a direct train_step call) are corrupted here,
        seeded by the run's seed and the optimizer `step`."""
        if isinstance(data, (tuple, list)) and len(data) == 3:
            return data
        seed = tf.stack([tf.constant(self.settings.get("seed", 0), tf.int64), tf.cast(step, tf.int64)])
        return synthesize(data, seed)

    def head_logits(self, corrupted, reconstruction, training=False):
        """Per-pixel anomaly logits [B, S, S] from the input and its reconstruction."""
        joint = keras.ops.concatenate([keras.ops.cast(corrupted, reconstruction.dtype), reconstruction], axis=-1)
        return self.discriminative(joint, training=training)[..., 0]

    def head_loss(self, corrupted, reconstruction, masks):
        """The focal loss of the head's logits against the synthetic masks (training mode)."""
        logits = self.head_logits(corrupted, reconstruction, training=True)
        return focal_loss(tf.cast(masks, tf.float32), tf.cast(logits, tf.float32))

    def head_pair(self, images, reconstruction, terms=None):
        """The ScorePair of a module with the head: its reconstruction, its terms and DRAEM's map terms, its map."""
        probability, map_terms = self.map_scores(self.head_logits(images, reconstruction))
        return ScorePair(images, reconstruction, {**(terms or {}), **map_terms}, probability)
