"""Per-domain `quick` defaults and the recommended model of each domain, chosen on the real development sets.

Every dataset belongs to one domain (brain, chest, industrial, plant, folder, phantom). Under
`--profile quick` a domain may change settings that the dev sets showed to matter (the score
variant, the image size, the colour channels); `paper` keeps the papers' settings and `smoke` the
tests'. Explicit command-line flags always win. What each default was chosen on, and the
runner-up, is in docs/defaults.md. Kept free of TensorFlow so --help can name the recommendations.
"""

DOMAIN_OF_DATASET = {
    "phantom": "phantom", "brain_mri": "brain", "mvtec_ad": "industrial", "plant_village": "plant",
    "chest_xray_1": "chest", "chest_xray_2": "chest", "chest_xray_3": "chest", "folder": "folder",
}
# Settings that are part of a model's architecture preset (the rest are run settings).
ARCHITECTURE_SETTINGS = ("image_size", "channels")
# domain -> settings for every model of the domain; a setting a model has no use for is not applied.
# Floors take only the architecture settings: they keep their own score, and are compared at the same input.
QUICK_DEFAULTS = {
    "chest": {"score": "paper"},
}
# domain -> (model, why), the model the README recommends there (docs/defaults.md has the dev numbers).
RECOMMENDED = {
    "chest": ("cae", "dev: chest_xray14_dev"),
}


def domain_of(dataset):
    return DOMAIN_OF_DATASET.get(dataset, "folder")


def domain_defaults(dataset, profile, is_floor):
    """The settings `dataset`'s domain changes under `profile` (only `quick` has any)."""
    if profile != "quick":
        return {}
    defaults = QUICK_DEFAULTS.get(domain_of(dataset), {})
    return {key: value for key, value in defaults.items() if not is_floor or key in ARCHITECTURE_SETTINGS}


def recommendation_lines():
    """One line per domain with a recommended model, for --help."""
    return [f"{domain}: {model} ({why})" for domain, (model, why) in RECOMMENDED.items()]
