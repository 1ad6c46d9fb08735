"""Build, compile and fit any registered model from a resolved config, with checkpoints and resume."""

import keras
import tensorflow as tf
from tensorflow.python.framework import config as tf_config

from models.base import FittedModel
from models.registry import build_model
from training.callbacks import EpochHistory, ProgressLine, StopOnNonFinite, TensorBoardLogger
from training.checkpoints import PeriodicCheckpoint, TrainingCheckpoint
from training.distribution import with_multi_worker_logs
from training.runs import CHECKPOINT_DIR


def compiled_model(config):
    """The model with its optimizers and losses (model.configure); may raise PerceptualWeightsError.

    Sets Keras' global dtype policy for the networks built here: mixed_bfloat16 with
    config["mixed_precision"], else float32, and TensorFlow's op determinism as the config says
    (so one process can run both kinds in turn).
    """
    keras.config.set_dtype_policy(dtype_policy(config))
    set_determinism(config)
    model = build_model(config["model"], config["architecture"])
    model.configure(config)
    if config["xla"] != "auto":
        model.jit_compile = config["xla"] == "on"
    return model


def set_determinism(config):
    """TensorFlow op determinism on or off for this run (a process-wide switch, so set for every run).

    Keras turns XLA off while it is on (resolve_config refuses --xla on with it).
    """
    if config.get("deterministic", False):
        tf.config.experimental.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()  # TF's counterpart of the public enable (Keras' own tests use it)


def dtype_policy(config):
    """bfloat16 rather than float16: same speed-up on recent GPUs, float32's range, so no loss scaling."""
    return "mixed_bfloat16" if config.get("mixed_precision") else "float32"


def fit(model, train_ds, normals_ds, preview, config, run_dir, verbose=1):
    """Train (or continue training) in `run_dir`; returns the per-epoch history records.

    `verbose`: 0 prints nothing, 2 one line per epoch (ProgressLine), 1 also counts steps on it (a terminal).

    A model that learns in one pass (the classical floors: `fit_normals`) is fitted on
    `normals_ds` (required for them), the un-augmented training normals, and has a 0-epoch
    schedule, so Keras' fit never runs and its history is empty; it keeps no checkpoint, as
    refitting takes seconds (so an unfinished floor run is not resumed: --resume fits a new one).
    The latest checkpoint in run_dir/checkpoints is restored first, so an interrupted run
    resumes in the right phase and epoch, losing at most the epoch that was running. Then
    `model.finish_training(normals_ds)` (the un-augmented training normals) readies the model
    for inference, e.g. re-estimates BatchNorm statistics. The model sees `model.training_data(train_ds)`: the
    batches as given, or with its synthetic anomalies (DRAEM).
    """
    if isinstance(model, FittedModel):
        model.fit_normals(normals_ds)
    batches = model.training_data(train_ds)
    # An endless stream (synthetic anomalies) is read by one iterator, `steps_per_epoch` batches an epoch: Keras
    # then keeps its iterator across epochs instead of building one per epoch (see epoch_steps).
    endless = batches.cardinality() == tf.data.INFINITE_CARDINALITY
    steps_per_epoch = epoch_steps(train_ds, config) if endless else None
    schedule = model.make_schedule(config)
    checkpoint = TrainingCheckpoint(model.checkpoint_items(), run_dir / CHECKPOINT_DIR)
    start_epoch = checkpoint.restore_latest()
    history = EpochHistory(run_dir / "history.json", schedule, start_epoch)
    if start_epoch < schedule.total_epochs:
        with_multi_worker_logs(model).fit(
            batches,
            epochs=schedule.total_epochs,
            initial_epoch=start_epoch,
            steps_per_epoch=steps_per_epoch,
            shuffle=False,  # the tf.data pipeline shuffles
            verbose=0,
            callbacks=[
                schedule,
                *([ProgressLine(schedule, live=verbose == 1)] if verbose else []),
                StopOnNonFinite(run_dir / CHECKPOINT_DIR),
                history,
                TensorBoardLogger(run_dir / "tensorboard", schedule, preview, config["image_every"]),
                PeriodicCheckpoint(checkpoint, schedule.total_epochs),  # last: an epoch is checkpointed only once fully logged
            ],
        )
    model.finish_training(normals_ds)
    return history.records


def epoch_steps(train_ds, config):
    """Batches in one pass over the training normals: the dataset's own count, or the config's (scale_to_data).

    Building a tf.data iterator optimises the whole pipeline's graph; with the synthesis in it that took about a
    second, paid once an epoch, which on a small set stretched to many short epochs (the brain dev set: 178 epochs
    of 9 steps) was a third of the training time.
    """
    count = int(train_ds.cardinality())
    return count if count > 0 else config["steps_per_epoch"]
