"""Run profiles: `paper` (the paper's schedule), `quick` (minutes on a laptop CPU), `smoke` (seconds).

A profile plus explicit command-line overrides resolves to one plain dict, written verbatim
to config.json; nothing else decides a run's settings.
"""

from models.config import ConfigError, model_config

COMMON = {
    "beta_1": 0.5,  # DCGAN/BiGAN practice; the paper gives no optimizer settings
    "beta_2": 0.999,
    "adversarial_weight": 0.1,  # reconstruction "prioritized over the adversarial performance" (§III)
    "reconstruction_repeats": 3,  # §III: reconstruction trained 3 times per step in phase 2
    "discriminator_every": 5,  # §III: discriminator trained every 5th epoch
    "validation_fraction": 0.1,
    "test_fraction": 0.2,  # §IV-B: normals split 80/20
    "threshold_quantile": 0.95,
    "image_every": 5,
}

PROFILES = {
    "paper": {
        "preset": "paper", "epochs_recon": 150, "epochs_adv": 500, "batch_size": 32, "lr": 2e-4,
        "perceptual_weights": "imagenet", "phantom_normals": 500, "phantom_abnormals": 150,
    },
    "quick": {
        "preset": "quick", "epochs_recon": 40, "epochs_adv": 10, "batch_size": 32, "lr": 1e-3,
        "perceptual_weights": "none", "phantom_normals": 500, "phantom_abnormals": 150,
    },
    "smoke": {
        "preset": "tiny", "epochs_recon": 1, "epochs_adv": 1, "batch_size": 16, "lr": 1e-3,
        "perceptual_weights": "none", "phantom_normals": 40, "phantom_abnormals": 12,
    },
}

# Settings a command-line flag may override (None = keep the profile's value).
OVERRIDABLE = ("epochs_recon", "epochs_adv", "batch_size", "lr", "perceptual_weights", "image_size", "latent_dim")


def resolve_config(model, dataset, profile, seed=0, category=None, **overrides):
    """Profile defaults, then explicit overrides; architecture resolved from the profile's preset."""
    if profile not in PROFILES:
        raise ConfigError(f"Unknown profile {profile!r}; choose one of {sorted(PROFILES)}.")
    config = {"model": model, "dataset": dataset, "category": category, "profile": profile, "seed": seed}
    config.update(COMMON)
    config.update(PROFILES[profile])
    config.update({key: value for key, value in overrides.items() if value is not None and key in OVERRIDABLE})
    config["architecture"] = model_config(
        config["preset"], image_size=config.pop("image_size", None), latent_dim=config.pop("latent_dim", None)
    )
    return config
