"""tf.data input pipelines: decode -> grayscale or RGB -> resize -> [-1, 1] -> cache -> shuffle -> batch -> prefetch.

`to_model_input` is the one preprocessing function: training, evaluation and the exported
SavedModel all call it, so a deployed model sees exactly what the evaluated one saw.
"""

import keras
import tensorflow as tf

from checks import CHANNELS
from data.decode import DECODERS, decode_file

AUTOTUNE = tf.data.AUTOTUNE


def to_model_input(images, image_size, channels=1):
    """Float images in [0, 1], [..., H, W, C] with any C in 1..4 -> [..., S, S, channels] in [-1, 1].

    channels 1: colour (and a fourth, alpha, channel) is reduced with tf.image.rgb_to_grayscale on
    the first three channels; 1- and 2-channel images (L, LA) keep their first channel.
    channels 3: RGB(A) keeps its first three channels (alpha dropped); L and LA repeat their first
    channel to 3, so grey and colour files can share one colour model.
    Resizing is bilinear with antialiasing so large scans are not aliased when shrunk to 128x128.
    """
    if channels not in CHANNELS:
        raise ValueError(f"channels must be one of {CHANNELS}, got {channels!r}.")
    images = tf.convert_to_tensor(images, tf.float32)
    stored = images.shape[-1]
    if stored is None:  # decoded files and the SavedModel signature: known only at run time
        picked = tf.cond(tf.shape(images)[-1] >= 3, lambda: _from_colour(images, channels),
                         lambda: _from_grey(images, channels))
        picked = tf.ensure_shape(picked, [None] * (len(images.shape) - 1) + [channels])
    else:
        picked = _from_colour(images, channels) if stored >= 3 else _from_grey(images, channels)
    resized = tf.image.resize(picked, (image_size, image_size), method="bilinear", antialias=True)
    return tf.clip_by_value(resized, 0.0, 1.0) * 2.0 - 1.0


def _from_colour(images, channels):
    return tf.image.rgb_to_grayscale(images[..., :3]) if channels == 1 else images[..., :3]


def _from_grey(images, channels):
    grey = images[..., :1]
    return grey if channels == 1 else tf.concat([grey] * channels, axis=-1)


def build_augmenter(seed):
    """The paper's §IV-B augmentations (translation, flipping, scaling), of the training normals, on the fly.

    The paper enlarged its dataset with synthetic normal and abnormal images instead (docs/design.md,
    "Data"). Out-of-image pixels are filled with -1 (black), the background of MRI slices.
    """
    return keras.Sequential(
        [
            keras.layers.RandomTranslation(0.05, 0.05, fill_mode="constant", fill_value=-1.0, seed=seed),
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomZoom((-0.1, 0.1), fill_mode="constant", fill_value=-1.0, seed=seed),
        ],
        name="augmenter",
    )


def _source_dataset(collection, indices, image_size, channels):
    """Per-image model inputs for the selected indices, decoded in parallel (in-memory arrays are grayscale)."""
    if collection.images is not None:
        arrays = collection.images[indices][..., None]
        ds = tf.data.Dataset.from_tensor_slices(arrays)
        return ds.map(lambda image: to_model_input(tf.cast(image, tf.float32) / 255.0, image_size, channels),
                      num_parallel_calls=AUTOTUNE)
    paths = [collection.ids[index] for index in indices]
    infos = [collection.file_info[index] for index in indices] if collection.file_info else []
    decoders = [info["decoder"] for info in infos] or ["tf"] * len(paths)
    reductions = [info["reduction"] for info in infos] or [1] * len(paths)
    # One decoder for all files (the usual case) keeps the switch, and OpenCV, out of the graph.
    only_decoder = decoders[0] if len(set(decoders)) == 1 else None
    ds = tf.data.Dataset.from_tensor_slices((
        tf.constant(paths, tf.string),
        tf.constant([DECODERS.index(name) for name in decoders], tf.int32),
        tf.constant(reductions, tf.int32),
    ))

    def model_input(path, decoder, reduction):
        return to_model_input(decode_file(path, only_decoder or decoder, reduction), image_size, channels)

    return ds.map(model_input, num_parallel_calls=AUTOTUNE)


def image_dataset(collection, indices, image_size, batch_size, training=False, seed=0, channels=1, augment=True):
    """Batched [B, S, S, channels] images in [-1, 1], in index order unless `training`.

    Training shuffles every epoch and (with `augment`) augments after the cache, so each epoch sees fresh
    augmentations of images decoded only once.
    """
    ds = _source_dataset(collection, indices, image_size, channels).cache()
    if training:
        ds = ds.shuffle(len(indices), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if training and augment:
        augmenter = build_augmenter(seed)
        ds = ds.map(lambda batch: augmenter(batch, training=True), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)
