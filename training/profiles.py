"""Run profiles: `paper` (the paper's schedule), `quick` (minutes on a laptop CPU), `smoke` (seconds).

A run's settings are: the data/evaluation settings shared by every model (COMMON, DATA), the
model family's TRAINING[profile] and TRAINING_COMMON, then explicit command-line overrides. They
resolve to one plain dict, written verbatim to config.json; nothing else decides a run's settings.
"""

import math

from checks import MAX_PIXELS_PER_STEP, xla_problem
from data.protocols import default_protocol, source_paper
from models.base import score_variants
from models.config import ConfigError
from models.names import FLOOR_NAMES
from models.registry import FAMILIES, architecture, family
from models.segmentation_head import MAP_SCORE
from training.domains import domain_defaults
from training.names import OVERRIDABLE, PROFILE_NAMES, flag_problem, score_problem

COMMON = {
    "validation_fraction": 0.1,
    "test_fraction": 0.2,  # Improved BiGAN §IV-B: normals split 80/20
    "threshold_quantile": 0.95,
    "image_every": 5,
    "xla": "auto",  # Keras' default: XLA-compile train steps on a GPU, not on a CPU
    "mixed_precision": False,  # bfloat16 compute, float32 weights and outputs (no loss scaling needed)
    "strategy": "default",  # tf.distribute: default (one device), mirrored (local GPUs), multi_worker (TF_CONFIG)
    "phantom_draw": "test",  # `dev` for tuning; every reported number uses `test`
    "deterministic": True,  # TensorFlow op determinism: the same command gives the same numbers
    "augment": True,  # the Improved BiGAN's §IV-B geometric augmentation of the training normals (data.pipeline)
}
# Phantom size per profile: the smoke profile must run in seconds.
DATA = {
    "paper": {"phantom_normals": 500, "phantom_abnormals": 150},
    "quick": {"phantom_normals": 500, "phantom_abnormals": 150},
    "smoke": {"phantom_normals": 40, "phantom_abnormals": 12},
}

_EPOCH_KEYS = ("epochs", "epochs_recon", "epochs_adv")
_ARCHITECTURE_KEYS = ("image_size", "latent_dim", "channels", "backbone", "synthetic_anomalies")


def resolve_config(model, dataset, profile, seed=0, category=None, protocol=None, **overrides):
    """Profile defaults, then explicit overrides; architecture resolved from the profile's preset;
    the dataset's default protocol (for this profile) unless one is given.

    A profile's preset may depend on whose experiment the dataset belongs to (a dict keyed by
    data.protocols.source_paper): GANomaly's `paper` input is CAE-D-GAN Table 2's 256×256 on the
    chest X-rays, and the Improved BiGAN's 128×128 (§IV-B) on its datasets. config.json records the name chosen.

    An override the model has no use for (e.g. --epochs-adv for a single-phase model) is an error,
    not silently ignored.
    """
    if profile not in PROFILE_NAMES:
        raise ConfigError(f"Unknown profile {profile!r}; choose one of {list(PROFILE_NAMES)}.")
    models = family(model)
    config = {"model": model, "dataset": dataset, "category": category, "profile": profile, "seed": seed,
              "protocol": protocol or default_protocol(dataset, profile)}
    config.update(COMMON)
    config.update(DATA[profile])
    config.update(models.training_common)
    config.update(models.training[profile])
    if isinstance(config["preset"], dict):
        config["preset"] = config["preset"][source_paper(dataset)]
    preset = dict(models.presets[config["preset"]])
    # Trained on synthetic anomalies, a model is scored by its predicted map (MAP_SCORE) unless told otherwise,
    # and its training normals are not shifted or zoomed (as models.draem: the corruptions are the augmentation).
    synthetic = bool(overrides.get("synthetic_anomalies"))
    if synthetic:
        config.update({"score": MAP_SCORE, "augment": False, **models.synthetic_training.get(profile, {})})
    # A floor takes only the domain's input settings (its preset's): it keeps its own score.
    domain = {key: value for key, value in domain_defaults(dataset, profile).items()
              if (key in preset or key in config and model not in FLOOR_NAMES)
              and (key != "score" or value in score_variant_names(model)
                   and models.model_class.takes_domain_score and not synthetic)}
    config.update({key: value for key, value in domain.items() if key not in preset})
    config["domain_defaults"] = domain  # what the dataset's domain changed (config.json shows it)
    given = {key: value for key, value in overrides.items() if value is not None and key in OVERRIDABLE}
    for key in given:
        if key not in config and key not in preset:
            raise ConfigError(flag_problem(model, key))
    config.update({key: value for key, value in given.items() if key not in _ARCHITECTURE_KEYS})
    if any(key in given for key in _EPOCH_KEYS) and "min_updates" not in given:
        config["min_updates"] = 0  # explicit epochs are taken as given
    config["architecture"] = architecture(
        model, config["preset"], **{**{key: value for key, value in domain.items() if key in preset},
                                    **{key: given[key] for key in _ARCHITECTURE_KEYS if key in given}}
    )
    pixels = config["batch_size"] * config["architecture"]["image_size"] ** 2
    if pixels > MAX_PIXELS_PER_STEP:
        raise ConfigError(
            f"--batch-size {config['batch_size']} of {config['architecture']['image_size']} px images is {pixels:,} "
            f"pixels a step, more than the {MAX_PIXELS_PER_STEP:,} (64 images of 256 px) memory is sized for; "
            "lower --batch-size or --image-size.")
    xla = xla_problem(config["xla"], config["deterministic"])
    if xla:
        raise ConfigError(xla)
    if config["score"] not in score_variant_names(model, config["architecture"]):
        raise ConfigError(score_problem(model, config["score"], synthetic))
    return config


def score_variant_names(model, architecture=None):
    """The score variants a model supports (evaluation.scoring's common ones and the family's own), for its
    `architecture` when given (an option may add some: --synthetic-anomalies)."""
    return sorted(score_variants(FAMILIES[model].model_class, architecture))


def scale_to_data(config, train_size):
    """Raise the epoch counts so that training makes at least `min_updates` optimizer steps.

    Schedules are counted in epochs, so a small set would get few updates (41 normals at batch 32:
    2 steps an epoch); every phase is stretched by the same whole factor, keeping its proportions.
    Returns a new config with the scaled epochs, `steps_per_epoch` and `epoch_scale` recorded.
    """
    steps = math.ceil(train_size / config["batch_size"])
    keys = [key for key in _EPOCH_KEYS if key in config]
    updates = steps * sum(config[key] for key in keys)
    factor = max(1, math.ceil(config.get("min_updates", 0) / updates)) if updates else 1
    return {**config, **{key: config[key] * factor for key in keys}, "steps_per_epoch": steps, "epoch_scale": factor}


def applicable_overrides(model, dataset, profile, overrides):
    """The overrides `model` has a use for (its run settings and architecture); resolve_config refuses the rest."""
    config = resolve_config(model, dataset, profile)
    return {key: value for key, value in overrides.items() if key in config or key in config["architecture"]}
