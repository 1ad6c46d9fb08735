"""The error every model family raises for an impossible architecture or run setting."""


class ConfigError(ValueError):
    """An impossible setting (unknown preset/profile, image size the network cannot halve); str() is the user message."""
