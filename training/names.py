"""Run profile and tf.distribute strategy names, kept free of TensorFlow so the command line can offer
them before importing it (training/profiles.py and training/distribution.py use them)."""

PROFILE_NAMES = ("paper", "quick", "smoke")
STRATEGIES = ("default", "mirrored", "multi_worker")
