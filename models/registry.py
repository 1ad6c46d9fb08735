"""Model name -> builder: the only place that lists models."""

from models.improved_bigan import ImprovedBiGAN

# Every model of SPEC §2, in the order of the papers' tables.
MODEL_NAMES = (
    "improved_bigan", "bigan", "ganomaly", "skip_ganomaly", "anogan", "egbad", "efficient_gan",
    "fcae", "cae", "vae", "beta_vae", "cvae", "vq_vae", "cae_d_gan",
)
BUILDERS = {"improved_bigan": ImprovedBiGAN}


class ModelNotAvailableError(ValueError):
    """A known model that is not implemented yet, or an unknown name; str() is the user message."""


def check_model_name(name):
    if name not in MODEL_NAMES:
        raise ModelNotAvailableError(f"Unknown model {name!r}; choose one of: {', '.join(MODEL_NAMES)}.")
    if name not in BUILDERS:
        raise ModelNotAvailableError(
            f"Model {name!r} is not available yet (implemented: {', '.join(BUILDERS)}); it is planned, see SPEC §5."
        )


def build_model(name, architecture):
    check_model_name(name)
    return BUILDERS[name](architecture)
