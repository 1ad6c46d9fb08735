"""tf.data input pipelines: decode -> grayscale -> resize -> [-1, 1] -> cache -> shuffle -> batch -> prefetch.

`to_model_input` is the one preprocessing function: training, evaluation and the exported
SavedModel all call it, so a deployed model sees exactly what the evaluated one saw.
"""

import keras
import tensorflow as tf

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


def decode_file(path):
    """Any JPEG/PNG/BMP/GIF (8- or 16-bit, any mode) -> float [H, W, C] in [0, 1]."""
    return tf.io.decode_image(tf.io.read_file(path), channels=0, dtype=tf.float32, expand_animations=False)


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
    ds = tf.data.Dataset.from_tensor_slices(paths)
    return ds.map(lambda path: to_model_input(decode_file(path), image_size), num_parallel_calls=AUTOTUNE)


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
