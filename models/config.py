"""The error every model family raises for an impossible architecture or run setting, and the check they share."""


class ConfigError(ValueError):
    """An impossible setting (unknown preset/profile, image size the network cannot halve); str() is the user message."""


def validate_conv_architecture(config):
    """A network that halves the image once per entry of config["filters"] (and of "discriminator_filters", when the
    model has a discriminator) needs an image size it can halve that often."""
    for key in ("filters", "discriminator_filters"):
        stages = len(config.get(key, ()))
        if config["image_size"] % 2 ** stages:
            raise ConfigError(
                f"image_size {config['image_size']} must be a multiple of {2 ** stages} for the {stages} "
                f"down-sampling stages of {key}; pick e.g. 32, 64, 128 or 256."
            )
