"""Building blocks shared by every model family (one place, no copies)."""

import keras
from keras import layers

# Every sub-network's output layer computes in float32 whatever the global dtype policy, so that
# under --mixed-precision (bfloat16 inside the networks) losses, scores and exports stay float32.
OUTPUT_DTYPE = "float32"


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
        policy = self.dtype_policy  # inner layers follow this layer's policy, also when reloaded under another
        self.pool = layers.GlobalAveragePooling2D(keepdims=True, dtype=policy)
        self.squeeze = layers.Dense(max(1, channels // self.ratio), activation="relu", dtype=policy)
        self.excite = layers.Dense(channels, activation="sigmoid", dtype=policy)
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


# --- CAE-D-GAN generator and discriminator blocks (super-resolution style: no BatchNorm) ---
RESIDUAL_SCALE = 0.2  # ESRGAN's residual scaling: keeps very deep RRDB stacks stable without BatchNorm


def conv_act(x, filters, name, kernel_size=3, strides=1):
    """3x3 conv -> LeakyReLU(0.2): the unit every CAE-D-GAN generator part is built from."""
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", name=f"{name}_conv")(x)
    return layers.LeakyReLU(0.2, name=f"{name}_act")(x)


def residual_block(x, name):
    """conv -> act -> conv, added back to the input (SRResNet residual block, CAE-D-GAN §2.3.1)."""
    filters = x.shape[-1]
    residual = conv_act(x, filters, f"{name}_a")
    residual = layers.Conv2D(filters, 3, padding="same", name=f"{name}_b_conv")(residual)
    return layers.Add(name=f"{name}_add")([x, residual])


def dense_block(x, growth, convs, name):
    """Residual dense block (ESRGAN): each conv sees all earlier features; a fusion conv, scaled, added back."""
    filters = x.shape[-1]
    features = [x]
    for index in range(convs):
        inputs = features[0] if index == 0 else layers.Concatenate(name=f"{name}_cat{index}")(features)
        features.append(conv_act(inputs, growth, f"{name}_grow{index}"))
    fused = layers.Conv2D(filters, 3, padding="same", name=f"{name}_fuse")(
        layers.Concatenate(name=f"{name}_cat{convs}")(features)
    )
    return layers.Add(name=f"{name}_add")([x, layers.Rescaling(RESIDUAL_SCALE, name=f"{name}_scale")(fused)])


def rrdb(x, growth, convs, name):
    """Residual-in-residual dense block: three dense blocks, their sum scaled and added back (CAE-D-GAN §2.4.1)."""
    y = x
    for index in range(3):
        y = dense_block(y, growth, convs, f"{name}_dense{index}")
    return layers.Add(name=f"{name}_add")([x, layers.Rescaling(RESIDUAL_SCALE, name=f"{name}_scale")(y)])


def magnify_block(x, filters, name):
    """x2 image magnification: nearest up-sampling then conv (ESRGAN), free of checkerboard artefacts."""
    x = layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_up")(x)
    return conv_act(x, filters, name)


def multi_kernel_block(x, filters, kernel_sizes, name, strides=2):
    """Parallel convs with different kernel sizes fused by an element-wise sum (CAE-D-GAN Fig. 5 and 7).

    Small kernels see texture, large ones shape; the sum keeps both views at the same cost as one branch.
    """
    branches = [
        layers.Conv2D(filters, size, strides=strides, padding="same", name=f"{name}_k{size}")(x)
        for size in kernel_sizes
    ]
    fused = layers.Add(name=f"{name}_sum")(branches) if len(branches) > 1 else branches[0]
    return layers.LeakyReLU(0.2, name=f"{name}_act")(fused)
