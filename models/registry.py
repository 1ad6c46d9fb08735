"""Model name -> family (class, architecture presets, training settings) for every implemented model
(models/names.py lists all of them, implemented or planned).

A family module provides PRESETS (architectures: paper / quick / tiny), TRAINING (settings per
run profile, each naming its preset), TRAINING_COMMON, validate_architecture(config) and a
keras.Model class implementing configure / make_schedule / checkpoint_items / score_pairs /
finish_training / train_step, which is all the trainer, the detector and the export rely on;
optionally a class attribute `score_variants` (extra score variants built on its extra terms). The classical floors
(models/floors.py) share one module, so each is registered with a namespace holding those settings;
they learn in one pass (fit_normals) instead of train_step. The autoencoder baselines (autoencoders.py,
vae.py, vq_vae.py), the plain BiGAN family (bigan.py: bigan, egbad, efficient_gan), GANomaly and
Skip-GANomaly (ganomaly.py) and AnoGAN (anogan.py) are registered the same way: one namespace per model.
"""

import types

from models import anogan, autoencoders, bigan, cae_d_gan, floors, ganomaly, improved_bigan, vae, vq_vae
from models.config import ConfigError
from models.names import CHANNELS, FLOOR_NAMES, MODEL_NAMES  # noqa: F401 (FLOOR_NAMES: re-exported for the callers)

FAMILIES = {
    "improved_bigan": types.SimpleNamespace(module=improved_bigan, model_class=improved_bigan.ImprovedBiGAN),
    "bigan": types.SimpleNamespace(module=bigan.BIGAN_FAMILY, model_class=bigan.BiGAN),
    "egbad": types.SimpleNamespace(module=bigan.EGBAD_FAMILY, model_class=bigan.BiGAN),
    "efficient_gan": types.SimpleNamespace(module=bigan.EFFICIENT_GAN_FAMILY, model_class=bigan.BiGAN),
    "fcae": types.SimpleNamespace(module=autoencoders.FCAE_FAMILY, model_class=autoencoders.FCAutoencoder),
    "cae": types.SimpleNamespace(module=autoencoders.CAE_FAMILY, model_class=autoencoders.ConvAutoencoder),
    "vae": types.SimpleNamespace(module=vae.VAE_FAMILY, model_class=vae.VAE),
    "beta_vae": types.SimpleNamespace(module=vae.BETA_VAE_FAMILY, model_class=vae.VAE),
    "cvae": types.SimpleNamespace(module=vae.CVAE_FAMILY, model_class=vae.ConditionalVAE),
    "vq_vae": types.SimpleNamespace(module=vq_vae.VQ_VAE_FAMILY, model_class=vq_vae.VQVAE),
    "ganomaly": types.SimpleNamespace(module=ganomaly.GANOMALY_FAMILY, model_class=ganomaly.GANomaly),
    "skip_ganomaly": types.SimpleNamespace(module=ganomaly.SKIP_GANOMALY_FAMILY, model_class=ganomaly.SkipGANomaly),
    "anogan": types.SimpleNamespace(module=anogan.ANOGAN_FAMILY, model_class=anogan.AnoGAN),
    "cae_d_gan": types.SimpleNamespace(module=cae_d_gan, model_class=cae_d_gan.CAEDGAN),
    "pca": types.SimpleNamespace(module=floors.PCA_FAMILY, model_class=floors.PCAFloor),
    "knn": types.SimpleNamespace(module=floors.KNN_FAMILY, model_class=floors.KNNFloor),
}


class ModelNotAvailableError(ValueError):
    """A known model that is not implemented yet, or an unknown name; str() is the user message."""


def check_model_name(name):
    if name not in MODEL_NAMES:
        raise ModelNotAvailableError(f"Unknown model {name!r}; choose one of: {', '.join(MODEL_NAMES)}.")
    if name not in FAMILIES:
        raise ModelNotAvailableError(
            f"Model {name!r} is not available yet (implemented: {', '.join(FAMILIES)}); it is planned, see SPEC §5."
        )


def family(name):
    check_model_name(name)
    return FAMILIES[name].module


def architecture(name, preset, **overrides):
    """A copy of a model's architecture preset with explicit settings (e.g. image_size, channels) applied, validated."""
    presets = family(name).PRESETS
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
    return family(name).TRAINING["paper"].get("score")


def build_model(name, architecture_config):
    check_model_name(name)
    return FAMILIES[name].model_class(architecture_config, name=name)
