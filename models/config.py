"""Architecture presets per model: plain dicts so they land verbatim in config.json.

`paper` follows the Improved BiGAN paper where it speaks (128x128 grayscale, SE attention,
residual generator, image-latent discriminator); widths and depths are ours (the paper gives
none) and are recorded in the README's design decisions. `tiny` exists for tests.
"""



class ConfigError(ValueError):
    """An impossible setting (unknown preset/profile, image size the network cannot halve); str() is the user message."""


IMPROVED_BIGAN_PRESETS = {
    "paper": {
        "image_size": 128,
        "channels": 1,
        "latent_dim": 128,
        "filters": [32, 64, 128, 256, 512],
        "discriminator_filters": [32, 64, 128, 256],
        "latent_units": 256,
        "joint_units": 512,
        "se_ratio": 8,
        "dropout": 0.2,
    },
    "quick": {
        "image_size": 64,
        "channels": 1,
        "latent_dim": 64,
        "filters": [16, 32, 64, 128],
        "discriminator_filters": [16, 32, 64],
        "latent_units": 128,
        "joint_units": 128,
        "se_ratio": 4,
        "dropout": 0.2,
    },
    "tiny": {
        "image_size": 32,
        "channels": 1,
        "latent_dim": 8,
        "filters": [4, 8],
        "discriminator_filters": [4, 8],
        "latent_units": 8,
        "joint_units": 8,
        "se_ratio": 2,
        "dropout": 0.0,
    },
}


def model_config(preset, **overrides):
    """A copy of an architecture preset with explicit settings (e.g. image_size) applied."""
    if preset not in IMPROVED_BIGAN_PRESETS:
        raise ConfigError(f"Unknown preset {preset!r}; choose one of {sorted(IMPROVED_BIGAN_PRESETS)}.")
    config = dict(IMPROVED_BIGAN_PRESETS[preset])
    config.update({key: value for key, value in overrides.items() if value is not None})
    stride = 2 ** len(config["filters"])
    if config["image_size"] % stride:
        raise ConfigError(
            f"image_size {config['image_size']} must be a multiple of {stride} for {len(config['filters'])} "
            "down-sampling stages; pick e.g. 32, 64, 128 or 256."
        )
    return config
