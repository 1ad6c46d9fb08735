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
# domain -> settings for every model of the domain; a setting a model has no use for is not applied.
# Floors take only the settings of their architecture preset: they keep their own score, on the same input.
# Chosen on the dev sets (docs/defaults.md); phantom, brain, industrial and folder keep the quick profile's own.
QUICK_DEFAULTS = {
    # mse_ssim: the paper's two terms with MSE on [-1, 1] pixels, which is what `paper` meant when these were chosen.
    "chest": {"score": "mse_ssim"},
    "plant": {"channels": 3, "score": "mse_ssim"},
}
# domain -> (model, flags beyond the domain's defaults, what chose it). Where no deep model beat the floors
# on the dev set, the floor is what we recommend, and says so.
# Where a model trained on synthetic anomalies (draem) won on the dev set, it is the recommendation (issue 27).
# patchcore uses ImageNet features; the others learn from the normals alone.
RECOMMENDED = {
    "brain": ("fcae", "", "brain_mri_kaggle, seeds 0-2; patchcore 0.811 a close second"),
    "chest": ("draem", "", "chest_xray14_dev, seeds 0-2: 0.759 against cae 0.745, within a seed's std; learns from "
                           "the normals alone"),
    "industrial": ("patchcore", "", "magnetic_tile, seeds 0-2: 0.922 against the best floor 0.684; ImageNet features"),
    "plant": ("draem", "", "plant_pepper_dev, seeds 0-2, colour: 0.944 against patchcore 0.933 (ImageNet features), "
                           "within a seed's std; learns from the normals alone"),
}


def domain_of(dataset):
    return DOMAIN_OF_DATASET.get(dataset, "folder")


def domain_defaults(dataset, profile):
    """The settings `dataset`'s domain changes under `profile` (only `quick` has any)."""
    return dict(QUICK_DEFAULTS.get(domain_of(dataset), {})) if profile == "quick" else {}


def recommendation_lines():
    """One line per domain with a recommended model, for --help."""
    return [f"{domain}: {' '.join(filter(None, (model, flags)))} ({why})" for domain, (model, flags, why) in RECOMMENDED.items()]
