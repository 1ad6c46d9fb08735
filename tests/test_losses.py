"""Losses: SSIM equals tf.image.ssim, the perceptual term's loading paths and their failure message."""

import urllib.error

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.losses import PerceptualWeightsError, ReconstructionLoss, build_perceptual_extractor, ssim


@pytest.mark.parametrize(("size", "channels"), [(16, 1), (32, 1), (64, 1), (32, 3)])
def test_ssim_equals_tf_image_ssim_on_zero_one_images(size, channels):
    """tf.image.ssim of an RGB image is the mean of its channels' SSIMs."""
    rng = np.random.default_rng(size)
    images = rng.uniform(-1, 1, (5, size, size, channels)).astype("float32")
    noisy = np.clip(images + rng.normal(0, 0.3, images.shape), -1, 1).astype("float32")
    expected = tf.image.ssim((images + 1) / 2, (noisy + 1) / 2, max_val=1.0, filter_size=min(11, size))
    np.testing.assert_allclose(ssim(images, noisy), expected, atol=1e-5)


def test_perceptual_weights_from_a_local_file(tmp_path, fixed_batch):
    """The PATH option, with a randomly initialised VGG16 standing in for the ImageNet file."""
    path = tmp_path / "vgg16_notop.weights.h5"
    keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3)).save_weights(path)
    extractor = build_perceptual_extractor(str(path), 32)
    assert not extractor.trainable
    terms = ReconstructionLoss(extractor)(fixed_batch, fixed_batch * 0.5)
    assert float(terms["perceptual"]) > 0
    expected = 0.5 * terms["mse"] + 0.2 * terms["mae"] + 0.2 * terms["perceptual"] + 0.1 * terms["ssim_loss"]
    np.testing.assert_allclose(float(terms["total"]), float(expected), rtol=1e-6)


@pytest.mark.parametrize("channels", [1, 3])
def test_the_perceptual_term_feeds_vgg16_three_channels_repeating_only_grey(channels, fixed_batch):
    seen = []
    loss = ReconstructionLoss(lambda rgb, training: seen.append(rgb) or rgb)
    images = np.concatenate([fixed_batch, -fixed_batch, fixed_batch * 0.5], axis=-1)[..., :channels]
    loss(images, images * 0.5)
    bgr = keras.applications.vgg16.preprocess_input((images + 1.0) * 127.5 if channels == 3 else
                                                    np.repeat((images + 1.0) * 127.5, 3, axis=-1))
    np.testing.assert_allclose(seen[0], bgr, atol=1e-4)


def test_unreachable_imagenet_weights_stop_with_advice(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(keras.src.utils.file_utils, "get_file", offline)
    with pytest.raises(PerceptualWeightsError, match="--perceptual-weights none"):
        build_perceptual_extractor("imagenet", 32)


def test_missing_weights_file_names_the_options():
    with pytest.raises(PerceptualWeightsError, match="PATH"):
        build_perceptual_extractor("/nonexistent/vgg16.h5", 32)
