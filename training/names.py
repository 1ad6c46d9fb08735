"""Run profile and tf.distribute strategy names, the settings a run spec may override and what each model takes,
kept free of TensorFlow so a bad setting is refused before importing it (training/profiles.py, spec.py use them)."""

PROFILE_NAMES = ("paper", "quick", "smoke")
STRATEGIES = ("default", "mirrored", "multi_worker")
# Settings a command-line flag may override (None = keep the profile's value); the run spec (spec.py) carries each.
OVERRIDABLE = (
    "epochs", "epochs_recon", "epochs_adv", "batch_size", "lr", "perceptual_weights", "image_size", "latent_dim", "xla",
    "mixed_precision", "strategy", "score", "phantom_draw", "min_updates", "deterministic", "lr_schedule", "channels",
    "backbone", "backbone_weights", "coreset_ratio", "synthetic_anomalies",
)
# What each model takes, so a flag or score it has no use for is refused before TensorFlow is imported (the
# families in models/registry.py decide it; tests/test_bad_values.py keeps these tables in step with them).
_EVERY_MODEL = ("batch_size", "image_size", "xla", "mixed_precision", "strategy", "score", "phantom_draw",
                "deterministic", "channels")
_TRAINED = ("epochs", "lr", "min_updates")
_LATENT = (*_TRAINED, "latent_dim")
_IMPROVED_BIGAN = ("epochs_recon", "epochs_adv", "lr", "min_updates", "latent_dim", "perceptual_weights", "lr_schedule",
                   "synthetic_anomalies")
MODEL_FLAGS = {model: (*_EVERY_MODEL, *own) for model, own in {
    "improved_bigan": _IMPROVED_BIGAN, "bigan": _LATENT, "ganomaly": _LATENT, "skip_ganomaly": _TRAINED,
    "anogan": _LATENT, "egbad": _LATENT, "efficient_gan": _LATENT, "fcae": _LATENT, "cae": _LATENT, "vae": _LATENT,
    "beta_vae": _LATENT, "cvae": _LATENT, "vq_vae": _TRAINED, "cae_d_gan": _TRAINED,
    "draem": _TRAINED, "patchcore": ("backbone", "backbone_weights", "coreset_ratio"), "pca": (), "knn": (),
}.items()}
_RECONSTRUCTION = ("paper", "mse_ssim", "mse", "error_zmax")
_ZENATI = (*_RECONSTRUCTION, "feature", "zenati_ce", "zenati_fm")
_VAE = (*_RECONSTRUCTION, "elbo", "kl")
MODEL_SCORES = {
    "improved_bigan": (*_RECONSTRUCTION, "latent"), "bigan": _ZENATI, "ganomaly": (*_RECONSTRUCTION, "latent"),
    "skip_ganomaly": (*_RECONSTRUCTION, "skip_ganomaly"), "anogan": (*_RECONSTRUCTION, "anogan"), "egbad": _ZENATI,
    "efficient_gan": _ZENATI, "fcae": _RECONSTRUCTION, "cae": _RECONSTRUCTION, "vae": _VAE, "beta_vae": _VAE,
    "cvae": _VAE, "vq_vae": (*_RECONSTRUCTION, "quantization"), "cae_d_gan": (*_RECONSTRUCTION, "cae_d_gan"),
    "draem": (*_RECONSTRUCTION, "draem", "map_mean"),
    "patchcore": ("error_zmax", "patch_max", "patch_reweighted", "patch_mean", "patch_top"),
    "pca": _RECONSTRUCTION, "knn": (*_RECONSTRUCTION, "knn"),
}
# The map scores a segmentation head trained on synthetic anomalies adds (models.segmentation_head).
SYNTHETIC_SCORES = ("draem", "map_mean")
# Every score variant any model has, so --score can refuse a name that does not exist.
SCORE_NAMES = tuple(dict.fromkeys(name for names in MODEL_SCORES.values() for name in names))


def flag_name(key):
    """The command-line flag that sets the OVERRIDABLE setting `key` (--nondeterministic turns `deterministic` off)."""
    return "--nondeterministic" if key == "deterministic" else "--" + key.replace("_", "-")


def flag_problem(model, key):
    """The sentence refusing a setting `model` has no use for, or None."""
    if key in MODEL_FLAGS[model]:
        return None
    flags = sorted(flag_name(other) for other in OVERRIDABLE if other in MODEL_FLAGS[model])
    return f"{flag_name(key)} does not apply to {model}; the flags it takes are {', '.join(flags)}."


def score_problem(model, score, synthetic_anomalies=False):
    """The sentence refusing a score variant `model` does not have (with --synthetic-anomalies: or its head's), or None."""
    synthetic = synthetic_anomalies and "synthetic_anomalies" in MODEL_FLAGS[model]
    scores = (*MODEL_SCORES[model], *(SYNTHETIC_SCORES if synthetic else ()))
    if score in scores:
        return None
    if score in SYNTHETIC_SCORES and "synthetic_anomalies" in MODEL_FLAGS[model]:
        return f"--score {score} reads the map of a segmentation head; {model} has one with --synthetic-anomalies."
    return f"--score {score} does not apply to {model}; choose one of {sorted(scores)}."
