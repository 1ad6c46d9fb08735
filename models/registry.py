"""Model name -> its Family (models.base): class, architecture presets, run profiles, shared settings, check.

Every model of models/names.py is registered; models.base says what each model class implements.
"""

from checks import CHANNELS
from models import anogan, autoencoders, bigan, cae_d_gan, draem, floors, ganomaly, improved_bigan, patchcore, vae, vq_vae
from models.config import ConfigError
from models.names import FLOOR_NAMES, MODEL_NAMES  # noqa: F401 (FLOOR_NAMES: re-exported for the callers)

FAMILIES = {
    "improved_bigan": improved_bigan.FAMILY,
    "bigan": bigan.BIGAN_FAMILY,
    "egbad": bigan.EGBAD_FAMILY,
    "efficient_gan": bigan.EFFICIENT_GAN_FAMILY,
    "fcae": autoencoders.FCAE_FAMILY,
    "cae": autoencoders.CAE_FAMILY,
    "vae": vae.VAE_FAMILY,
    "beta_vae": vae.BETA_VAE_FAMILY,
    "cvae": vae.CVAE_FAMILY,
    "vq_vae": vq_vae.VQ_VAE_FAMILY,
    "ganomaly": ganomaly.GANOMALY_FAMILY,
    "skip_ganomaly": ganomaly.SKIP_GANOMALY_FAMILY,
    "anogan": anogan.ANOGAN_FAMILY,
    "cae_d_gan": cae_d_gan.FAMILY,
    "draem": draem.FAMILY,
    "patchcore": patchcore.FAMILY,
    "pca": floors.PCA_FAMILY,
    "knn": floors.KNN_FAMILY,
}
assert set(FAMILIES) == set(MODEL_NAMES), "every model name has a family"


class ModelNotAvailableError(ValueError):
    """An unknown model name; str() is the user message."""


def check_model_name(name):
    if name not in FAMILIES:
        raise ModelNotAvailableError(f"Unknown model {name!r}; choose one of: {', '.join(MODEL_NAMES)}.")


def family(name):
    check_model_name(name)
    return FAMILIES[name]


def architecture(name, preset, **overrides):
    """A copy of a model's architecture preset with explicit settings (e.g. image_size, channels) applied, validated."""
    presets = family(name).presets
    if preset not in presets:
        raise ConfigError(f"Unknown preset {preset!r} for {name}; choose one of {sorted(presets)}.")
    config = dict(presets[preset])
    config.update({key: value for key, value in overrides.items() if value is not None})
    if config["channels"] not in CHANNELS:
        raise ConfigError(f"channels must be 1 (grayscale) or 3 (RGB), got {config['channels']!r}.")
    family(name).validate_architecture(config)
    return config


def paper_score(name):
    """The score variant a model's own paper uses (its `--profile paper` default), or None if it sets none."""
    return family(name).training["paper"].get("score")


def build_model(name, architecture_config):
    return family(name).model_class(architecture_config, name=name)
