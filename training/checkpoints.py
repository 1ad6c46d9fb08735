"""Per-epoch checkpoints of everything training needs to continue: networks, optimizers, epoch."""

import math

import keras
import tensorflow as tf


class TrainingCheckpoint:
    """tf.train.Checkpoint over a model's checkpoint_items() (networks, optimizers) and the finished-epoch count."""

    def __init__(self, items, directory, max_to_keep=2):
        self.epochs_done = tf.Variable(0, dtype=tf.int64, trainable=False)
        checkpoint = tf.train.Checkpoint(**items, epochs_done=self.epochs_done)
        self.manager = tf.train.CheckpointManager(checkpoint, str(directory), max_to_keep=max_to_keep)

    def save(self, epochs_done):
        self.epochs_done.assign(epochs_done)
        return self.manager.save(checkpoint_number=epochs_done)

    def restore_latest(self):
        """Restore the newest checkpoint if any; returns the number of epochs it had finished."""
        if self.manager.latest_checkpoint is None:
            return 0
        self.manager.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
        return int(self.epochs_done.numpy())


class CheckpointEveryEpoch(keras.callbacks.Callback):
    """Save after every epoch whose losses are all finite, so a divergence never overwrites a good state."""

    def __init__(self, checkpoint):
        super().__init__()
        self.checkpoint = checkpoint

    def on_epoch_end(self, epoch, logs=None):
        if all(math.isfinite(float(value)) for value in (logs or {}).values()):
            self.checkpoint.save(epoch + 1)
