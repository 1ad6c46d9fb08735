"""Every model name of SPEC §2 and the channel counts models read, kept free of TensorFlow so the command line
can list them before importing it.

models/registry.py maps the implemented ones to their families.
"""

FLOOR_NAMES = ("pca", "knn")
# In the order of the papers' tables, then the classical floors.
MODEL_NAMES = (
    "improved_bigan", "bigan", "ganomaly", "skip_ganomaly", "anogan", "egbad", "efficient_gan",
    "fcae", "cae", "vae", "beta_vae", "cvae", "vq_vae", "cae_d_gan", *FLOOR_NAMES,
)
# Image channels of every model's input and output: 1 = grayscale (the papers', every preset's default), 3 = RGB.
CHANNELS = (1, 3)
