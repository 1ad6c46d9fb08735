"""Building blocks shared by every model family (one place, no copies)."""

import keras
import numpy as np
import tensorflow as tf
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


def deconv_block(x, filters, name):
    """Transposed conv (x2) -> BatchNorm -> LeakyReLU(0.2): the decoder/generator up-sampling unit."""
    x = layers.Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=False, name=f"{name}_deconv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.LeakyReLU(0.2, name=f"{name}_act")(x)


def conv_encoder(config, outputs, condition_units=0, name="encoder"):
    """Image [S, S, C] (and an optional condition vector) -> one Dense output per entry of `outputs`.

    Strided conv blocks over config["filters"], flattened; a condition, when given, joins the
    flattened features (a conditional VAE's q(z | x, c)). `outputs` maps output names to units,
    e.g. {"code": 64} for an autoencoder or {"mean": 64, "log_variance": 64} for a VAE.
    """
    size, channels = config["image_size"], config["channels"]
    images = keras.Input((size, size, channels), name="image")
    x = images
    for index, filters in enumerate(config["filters"]):
        x = conv_block(x, filters, f"enc{index}")
    x = layers.Flatten(name="features")(x)
    inputs = [images]
    if condition_units:
        inputs.append(keras.Input((condition_units,), name="condition"))
        x = layers.Concatenate(name="features_condition")([x, inputs[1]])
    results = [layers.Dense(units, name=output, dtype=OUTPUT_DTYPE)(x) for output, units in outputs.items()]
    return keras.Model(inputs if condition_units else images, results if len(results) > 1 else results[0], name=name)


def conv_decoder(config, code_units, condition_units=0, name="decoder"):
    """Code vector (and an optional condition) -> image in [-1, 1]: the mirror of `conv_encoder`.

    Dense to the bottleneck, transposed-conv blocks back up, tanh output (images are scaled to [-1, 1]).
    """
    filters = config["filters"]
    base = config["image_size"] // 2 ** len(filters)
    code = keras.Input((code_units,), name="code")
    inputs, x = [code], code
    if condition_units:
        inputs.append(keras.Input((condition_units,), name="condition"))
        x = layers.Concatenate(name="code_condition")(inputs)
    x = layers.Dense(base * base * filters[-1], use_bias=False, name="project")(x)
    x = layers.Reshape((base, base, filters[-1]), name="bottleneck")(x)
    x = layers.BatchNormalization(name="project_bn")(x)
    x = layers.LeakyReLU(0.2, name="project_act")(x)
    for index, width in enumerate(reversed(filters[:-1])):
        x = deconv_block(x, width, f"up{index}")
    images = image_output(x, config["channels"])
    return keras.Model(inputs if condition_units else code, images, name=name)


def image_output(x, channels):
    """The last x2 transposed conv to the image's channels, tanh: every decoder ends here."""
    return layers.Conv2DTranspose(channels, 4, strides=2, padding="same", activation="tanh", name="image",
                                  dtype=OUTPUT_DTYPE)(x)


def pair_discriminator(config, features=False):
    """(x, z) -> logit: the BiGAN discriminator of image-latent pairs (Improved BiGAN and the plain BiGAN family).

    Flattened strided-conv image features concatenated with the processed latent code, a joint
    dense layer, then the logit. No BatchNorm: batches hold only real or only fake pairs, which
    BatchNorm would leak. With `features`, the network also returns the joint layer's activations
    (float32), the f_D(x, z) of Zenati et al.'s feature-matching anomaly score.
    """
    size, channels = config["image_size"], config["channels"]
    images = keras.Input((size, size, channels), name="image")
    latent = keras.Input((config["latent_dim"],), name="latent")
    x = images
    for index, filters in enumerate(config["discriminator_filters"]):
        x = conv_block(x, filters, f"disc{index}", batch_norm=False)
    x = layers.Flatten(name="image_features")(x)
    z = layers.Dense(config["latent_units"], name="latent_dense")(latent)
    z = layers.LeakyReLU(0.2, name="latent_act")(z)
    joint = layers.Concatenate(name="joint")([layers.Dropout(config["dropout"])(x), layers.Dropout(config["dropout"])(z)])
    joint = layers.Dense(config["joint_units"], name="joint_dense")(joint)
    features_out = layers.LeakyReLU(0.2, name="joint_act")(joint)
    joint = layers.Dropout(config["dropout"], name="joint_dropout")(features_out)
    logit = layers.Dense(1, name="logit", dtype=OUTPUT_DTYPE)(joint)
    if not features:
        return keras.Model([images, latent], logit, name="discriminator")
    features_out = layers.Activation("linear", name="features", dtype=OUTPUT_DTYPE)(features_out)  # float32 under bf16
    return keras.Model([images, latent], [logit, features_out], name="discriminator")


def up_block(x, filters, name, se_ratio=8):
    """Transposed conv (x2) then an SE-refined 3x3 conv added back residually (Improved BiGAN Fig. 3).

    The residual Add keeps the up-sampled features flowing while the attention branch refines them.
    """
    x = deconv_block(x, filters, name)
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


# --- GAN baselines (GANomaly, Skip-GANomaly, AnoGAN): a discriminator that also returns its features ---
def feature_discriminator(config, name="discriminator"):
    """Image -> (logit, features): DCGAN-style strided conv blocks over config["discriminator_filters"].

    `features` is the last block's map, the f(·) of GANomaly's feature matching, Skip-GANomaly's latent
    loss and AnoGAN's discrimination loss; the logit is a Dense over it, flattened. No BatchNorm: each
    batch holds only real or only fake images, which BatchNorm would leak, and AnoGAN and Skip-GANomaly
    run this network at test time, where none then needs inference-mode statistics.
    """
    size, channels = config["image_size"], config["channels"]
    images = keras.Input((size, size, channels), name="image")
    x = images
    for index, filters in enumerate(config["discriminator_filters"]):
        x = conv_block(x, filters, f"disc{index}", batch_norm=False)
    features = layers.Activation("linear", name="features", dtype=OUTPUT_DTYPE)(x)  # float32 under mixed precision
    logit = layers.Dense(1, name="logit", dtype=OUTPUT_DTYPE)(layers.Flatten(name="flatten")(x))
    return keras.Model(images, [logit, features], name=name)


ADAM_BETAS, ADAM_EPSILON = (0.9, 0.999), 1e-8  # a test-time search's Adam: Adam's own defaults


def adam_search(loss, start, steps, learning_rate):
    """`start` after `steps` Adam steps on `loss` (start-shaped tensor -> one loss per image), batched.

    The per-image losses are summed: each depends on its own image's code only, so the gradient,
    and Adam's per-element moments, are per image, and an image ends where it would alone. A
    tf.while_loop of fixed length with a GradientTape in its body: bounded cost, and it traces into
    an exported graph.
    """
    beta_1, beta_2 = ADAM_BETAS

    def step(index, z, first, second):
        with tf.GradientTape() as tape:
            tape.watch(z)
            total = tf.reduce_sum(loss(z))
        gradient = tape.gradient(total, z)
        first = beta_1 * first + (1.0 - beta_1) * gradient
        second = beta_2 * second + (1.0 - beta_2) * tf.square(gradient)
        t = tf.cast(index + 1, tf.float32)
        update = (first / (1.0 - beta_1**t)) / (tf.sqrt(second / (1.0 - beta_2**t)) + ADAM_EPSILON)
        return index + 1, z - learning_rate * update, first, second

    _, latent, _, _ = tf.while_loop(lambda index, *_: index < steps, step,
                                    (tf.constant(0), start, tf.zeros_like(start), tf.zeros_like(start)),
                                    maximum_iterations=steps)
    return latent


class GradientSearch(layers.Layer):
    """Base of the layers that refine a code at test time by `adam_search` through networks they hold.

    Inside a functional detector such a layer is the only node that calls its networks, so it
    carries them in its config (`networks`: the constructor arguments that are networks) and
    model.keras reloads them with it. No weights of its own; no Lambda.
    """

    networks = ()

    def __init__(self, steps, learning_rate, **kwargs):
        super().__init__(**kwargs)
        self.steps, self.learning_rate = int(steps), float(learning_rate)
        self.built = True  # the networks are built

    def descend(self, loss, start, steps=None):
        """`start` after this layer's `steps` (or `steps`) Adam steps on `loss`."""
        return adam_search(loss, start, self.steps if steps is None else steps, self.learning_rate)

    def get_config(self):
        return {**super().get_config(), "steps": self.steps, "learning_rate": self.learning_rate,
                **{name: keras.saving.serialize_keras_object(getattr(self, name)) for name in self.networks}}

    @classmethod
    def from_config(cls, config):
        networks = {name: keras.saving.deserialize_keras_object(config.pop(name)) for name in cls.networks}
        return cls(**networks, **config)


def gaussian_smooth(maps, sigma):
    """[N, H, W] maps -> Gaussian-smoothed (separable, taps to 2σ each side, SAME): error maps and predicted
    anomaly maps alike (evaluation.scoring, models.patchcore).

    The batch is moved to the channel axis of one depthwise convolution (as models.losses.ssim does): a
    one-channel conv2d over N images took 15 ms an image at 224 px and σ = 4 on two CPU cores, this takes 1 ms.
    """
    radius = max(1, round(2 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = tf.constant(taps / taps.sum(), tf.float32)
    maps = tf.convert_to_tensor(maps, tf.float32)
    count = tf.shape(maps)[0]
    stacked = tf.transpose(maps, [1, 2, 0])[None]  # [1, H, W, N]
    for shape in ((-1, 1, 1, 1), (1, -1, 1, 1)):  # vertical, then horizontal
        stacked = tf.nn.depthwise_conv2d(stacked, tf.tile(tf.reshape(taps, shape), [1, 1, count, 1]), [1, 1, 1, 1], "SAME")
    return tf.transpose(stacked[0], [2, 0, 1])


def double_conv(x, filters, name):
    """(Conv 3×3 -> BatchNorm -> ReLU) twice at one resolution: the unit of U-Nets and of DRAEM's networks."""
    for index in range(2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{index}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{index}")(x)
        x = layers.ReLU(name=f"{name}_act{index}")(x)
    return x


def upsample_conv(x, filters, name):
    """Bilinear x2 -> Conv 3×3 -> BatchNorm -> ReLU: up-sampling without a transposed conv's checkerboard."""
    x = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_up")(x)
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_act")(x)


def segmentation_unet(image_size, in_channels, filters, name="segmentation"):
    """[S, S, in_channels] -> [S, S, 1] per-pixel anomaly logit (float32): a U-Net (Ronneberger et al. 2015).

    One `double_conv` per entry of `filters` on the way down (max-pooling between them), then back up with
    `upsample_conv`, the skip from the same resolution concatenated, and a `double_conv`; a 1×1 conv gives
    the logit. DRAEM's discriminative network (models.draem) and any segmentation head of issue 27.
    """
    inputs = keras.Input((image_size, image_size, in_channels), name="input")
    x, skips = inputs, []
    for index, width in enumerate(filters):
        if index:
            x = layers.MaxPooling2D(2, name=f"down{index}_pool")(x)
        x = double_conv(x, width, f"down{index}")
        skips.append(x)
    for index, width in reversed(list(enumerate(filters[:-1]))):
        x = upsample_conv(x, width, f"up{index}")
        x = layers.Concatenate(name=f"up{index}_skip")([x, skips[index]])
        x = double_conv(x, width, f"up{index}")
    logit = layers.Conv2D(1, 1, name="logit", dtype=OUTPUT_DTYPE)(x)
    return keras.Model(inputs, logit, name=name)
