"""tf.data input pipelines: decode -> grayscale -> resize -> [-1, 1] -> cache -> shuffle -> batch -> prefetch.

`to_model_input` is the one preprocessing function: training, evaluation and the exported
SavedModel all call it, so a deployed model sees exactly what the evaluated one saw.
"""

import keras
import tensorflow as tf

from data.decode import DECODERS, decode_file

AUTOTUNE = tf.data.AUTOTUNE


def to_model_input(images, image_size):
    """Float images in [0, 1], [..., H, W, C] with any C in 1..4 -> grayscale [..., S, S, 1] in [-1, 1].

    Colour (and a fourth, alpha, channel) is reduced with tf.image.rgb_to_grayscale on the
    first three channels; 1- and 2-channel images (L, LA) keep their first channel. Resizing is
    bilinear with antialiasing so large scans are not aliased when shrunk to 128x128.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    channels = images.shape[-1]
    if channels is None:  # decoded files and the SavedModel signature: known only at run time
        gray = tf.cond(tf.shape(images)[-1] >= 3, lambda: _grayscale(images), lambda: images[..., :1])
        gray = tf.ensure_shape(gray, [None] * (len(images.shape) - 1) + [1])
    else:
        gray = _grayscale(images) if channels >= 3 else images[..., :1]
    resized = tf.image.resize(gray, (image_size, image_size), method="bilinear", antialias=True)
    return tf.clip_by_value(resized, 0.0, 1.0) * 2.0 - 1.0


def _grayscale(images):
    return tf.image.rgb_to_grayscale(images[..., :3])


def build_augmenter(seed):
    """Paper §IV-B augmentation of training normals: translation, flipping, scaling.

    Out-of-image pixels are filled with -1 (black), the background of MRI slices.
    """
    return keras.Sequential(
        [
            keras.layers.RandomTranslation(0.05, 0.05, fill_mode="constant", fill_value=-1.0, seed=seed),
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomZoom((-0.1, 0.1), fill_mode="constant", fill_value=-1.0, seed=seed),
        ],
        name="augmenter",
    )


def _source_dataset(collection, indices, image_size):
    """Per-image model inputs for the selected indices, decoded in parallel."""
    if collection.images is not None:
        arrays = collection.images[indices][..., None]
        ds = tf.data.Dataset.from_tensor_slices(arrays)
        return ds.map(lambda image: to_model_input(tf.cast(image, tf.float32) / 255.0, image_size),
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
        return to_model_input(decode_file(path, only_decoder or decoder, reduction), image_size)

    return ds.map(model_input, num_parallel_calls=AUTOTUNE)


def image_dataset(collection, indices, image_size, batch_size, training=False, seed=0):
    """Batched [B, S, S, 1] images in [-1, 1], in index order unless `training`.

    Training shuffles every epoch and augments after the cache, so each epoch sees fresh
    augmentations of images decoded only once.
    """
    ds = _source_dataset(collection, indices, image_size).cache()
    if training:
        ds = ds.shuffle(len(indices), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if training:
        augmenter = build_augmenter(seed)
        ds = ds.map(lambda batch: augmenter(batch, training=True), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)
