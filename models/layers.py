"""Building blocks shared by every model family (one place, no copies)."""

import keras
from keras import layers


@keras.saving.register_keras_serializable(package="bigan_ad")
class SqueezeExcite(layers.Layer):
    """Squeeze-and-Excitation channel attention (Hu et al. 2018; Improved BiGAN Fig. 1).

    Global average pooling -> dense (channels / ratio, ReLU) -> dense (channels, sigmoid)
    -> multiply: the block re-weights feature channels by their global relevance.
    """

    def __init__(self, ratio=8, **kwargs):
        super().__init__(**kwargs)
        self.ratio = ratio

    def build(self, input_shape):
        channels = input_shape[-1]
        self.pool = layers.GlobalAveragePooling2D(keepdims=True)
        self.squeeze = layers.Dense(max(1, channels // self.ratio), activation="relu")
        self.excite = layers.Dense(channels, activation="sigmoid")
        self.squeeze.build((None, 1, 1, channels))
        self.excite.build((None, 1, 1, max(1, channels // self.ratio)))
        super().build(input_shape)

    def call(self, inputs):
        weights = self.excite(self.squeeze(self.pool(inputs)))
        return inputs * weights

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "ratio": self.ratio}


def conv_block(x, filters, name, strides=2, kernel_size=4, batch_norm=True, attention=False, se_ratio=8):
    """Conv -> (BatchNorm) -> LeakyReLU(0.2) -> (SE): the encoder/discriminator down-sampling unit."""
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=not batch_norm, name=f"{name}_conv")(x)
    if batch_norm:
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.LeakyReLU(0.2, name=f"{name}_act")(x)
    if attention:
        x = SqueezeExcite(se_ratio, name=f"{name}_se")(x)
    return x


def up_block(x, filters, name, se_ratio=8):
    """Transposed conv (x2) then an SE-refined 3x3 conv added back residually (Improved BiGAN Fig. 3).

    The residual Add keeps the up-sampled features flowing while the attention branch refines them.
    """
    x = layers.Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=False, name=f"{name}_deconv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.LeakyReLU(0.2, name=f"{name}_act")(x)
    refined = conv_block(x, filters, f"{name}_refine", strides=1, kernel_size=3, attention=True, se_ratio=se_ratio)
    return layers.Add(name=f"{name}_residual")([x, refined])
