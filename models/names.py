"""Every model name, and --model's parsing, kept free of TensorFlow so the command line can check them before
importing it (checks.CHANNELS are the channel counts models read).

models/registry.py maps each to its family.
"""

FLOOR_NAMES = ("pca", "knn")
# In the order of the papers' tables, then the synthetic-anomaly detector, the detectors on pretrained features, then
# the classical floors.
MODEL_NAMES = (
    "improved_bigan", "bigan", "ganomaly", "skip_ganomaly", "anogan", "egbad", "efficient_gan",
    "fcae", "cae", "vae", "beta_vae", "cvae", "vq_vae", "cae_d_gan", "draem", "patchcore", *FLOOR_NAMES,
)


def model_list(value):
    """--model's names ('all' = every model); raises ValueError with the sentence for an empty, unknown or repeated name."""
    if value.strip() == "all":
        return list(MODEL_NAMES)
    names = [name.strip() for name in value.split(",")]
    if not any(names):
        raise ValueError(f"--model needs a model name; choose from all, {', '.join(MODEL_NAMES)}.")
    unknown = [name for name in names if name not in MODEL_NAMES]
    if unknown:
        raise ValueError(f"Unknown model {unknown[0]!r} in --model {value!r}; choose from all, {', '.join(MODEL_NAMES)}.")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"--model names {repeated[0]} twice; each model runs once per seed.")
    return names
