"""The error every model family raises for an impossible architecture or run setting, and the check they share."""


class ConfigError(ValueError):
    """An impossible setting (unknown preset/profile, image size the network cannot halve); str() is the user message."""


def validate_conv_architecture(config):
    """A network that halves the image once per entry of config["filters"] needs an image size it can halve that often."""
    stride = 2 ** len(config["filters"])
    if config["image_size"] % stride:
        raise ConfigError(
            f"image_size {config['image_size']} must be a multiple of {stride} for {len(config['filters'])} "
            "down-sampling stages; pick e.g. 32, 64, 128 or 256."
        )
