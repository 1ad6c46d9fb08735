"""Checkpoints of everything training needs to continue: networks, optimizers, epoch."""

import math
import time

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


class PeriodicCheckpoint(keras.callbacks.Callback):
    """Save after epochs whose losses are all finite, so a divergence never overwrites a good state.

    Saving costs at most a tenth of the training time: an epoch is saved when the time since the last
    save is at least `cost_ratio` times what that save took (and always the first and the last epoch).
    Small models are saved every epoch; the paper profile's Improved BiGAN writes 200 MB a save, 4 s
    beside a 1 s phase-1 epoch on two cores, so it is saved about every 40 s instead.
    """

    def __init__(self, checkpoint, total_epochs, cost_ratio=10.0):
        super().__init__()
        self.checkpoint = checkpoint
        self.total_epochs = total_epochs
        self.cost_ratio = cost_ratio
        self.last_save, self.save_seconds = None, 0.0

    def on_epoch_end(self, epoch, logs=None):
        if not all(math.isfinite(float(value)) for value in (logs or {}).values()):
            return
        now = time.monotonic()
        due = self.last_save is None or now - self.last_save >= self.cost_ratio * self.save_seconds
        if due or epoch + 1 == self.total_epochs:
            self.checkpoint.save(epoch + 1)
            self.last_save = time.monotonic()
            self.save_seconds = self.last_save - now
