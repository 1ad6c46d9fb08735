"""Run profile and tf.distribute strategy names, kept free of TensorFlow so the command line can offer
them before importing it (training/profiles.py and training/distribution.py use them)."""

PROFILE_NAMES = ("paper", "quick", "smoke")
STRATEGIES = ("default", "mirrored", "multi_worker")
# Every score variant any model has (evaluation/scoring.py's common ones and the families' own), so --score can
# refuse a name that does not exist before TensorFlow is imported; tests/test_cli.py keeps the two in step.
SCORE_NAMES = ("paper", "mse_ssim", "mse", "error_zmax", "latent", "feature", "zenati_fm", "zenati_ce", "skip_ganomaly", "anogan",
               "knn", "kl", "elbo", "quantization", "cae_d_gan", "patch_max", "patch_reweighted", "patch_mean", "patch_top")
