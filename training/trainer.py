"""Build, compile and fit a model from a resolved config, with checkpoints and resume."""

import keras

from models.registry import build_model
from training.callbacks import EpochHistory, StopOnNonFinite, TensorBoardLogger
from training.checkpoints import CheckpointEveryEpoch, TrainingCheckpoint
from training.losses import ReconstructionLoss, build_perceptual_extractor
from training.schedule import TwoPhaseSchedule


def compiled_model(config):
    """The model with its optimizers (Adam, shared lr) and reconstruction loss; raises PerceptualWeightsError."""
    architecture = config["architecture"]
    model = build_model(config["model"], architecture)
    extractor = build_perceptual_extractor(config["perceptual_weights"], architecture["image_size"])

    def adam():
        return keras.optimizers.Adam(config["lr"], beta_1=config["beta_1"], beta_2=config["beta_2"])

    model.compile(
        reconstruction_optimizer=adam(),
        discriminator_optimizer=adam(),
        reconstruction_loss=ReconstructionLoss(extractor),
        adversarial_weight=config["adversarial_weight"],
        reconstruction_repeats=config["reconstruction_repeats"],
    )
    return model


def fit(model, train_ds, preview, config, run_dir, verbose=1):
    """Train (or continue training) in `run_dir`; returns the per-epoch history records.

    The latest checkpoint in run_dir/checkpoints is restored first, so an interrupted run
    resumes in the right phase and epoch, losing at most the epoch that was running.
    """
    schedule = TwoPhaseSchedule(config["epochs_recon"], config["epochs_adv"], config["discriminator_every"])
    checkpoint = TrainingCheckpoint(model, run_dir / "checkpoints")
    start_epoch = checkpoint.restore_latest()
    history = EpochHistory(run_dir / "history.json", schedule, start_epoch)
    if start_epoch < schedule.total_epochs:
        model.fit(
            train_ds,
            epochs=schedule.total_epochs,
            initial_epoch=start_epoch,
            shuffle=False,  # the tf.data pipeline shuffles
            verbose=verbose,
            callbacks=[
                schedule,
                StopOnNonFinite(run_dir / "checkpoints"),
                history,
                TensorBoardLogger(run_dir / "tensorboard", schedule, preview, config["image_every"]),
                CheckpointEveryEpoch(checkpoint),  # last: an epoch is checkpointed only once fully logged
            ],
        )
    return history.records
