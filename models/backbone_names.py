"""The pretrained backbones' names and the check of a --backbone/--backbone-weights pair, kept free of TensorFlow so the
command line can refuse a bad name or weights path before importing it (models/backbones.py builds them)."""

import os

DEFAULT_BACKBONE = "efficientnet_lite0"
BACKBONES = (DEFAULT_BACKBONE, "resnet50", "efficientnetb0", "convnext_tiny")


def check_backbone_weights(name, weights):
    """Raise ValueError with one sentence for an unknown backbone, or for weights that are neither "imagenet", None nor a file."""
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone {name!r}; choose from {', '.join(BACKBONES)}.")
    if weights is None or weights == "imagenet":
        return
    if not os.path.exists(weights):
        raise ValueError(f"The backbone weights file {weights} does not exist.")
    if not os.path.isfile(weights):
        raise ValueError(f"The backbone weights path {weights} is not a file.")
