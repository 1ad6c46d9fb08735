"""Callbacks that make a run observable and safe: loss history, divergence guard, TensorBoard."""

import json
import math
import pathlib

import keras
import numpy as np
import tensorflow as tf

from evaluation.plots import error_heatmap


class TrainingDivergedError(RuntimeError):
    """A loss became NaN or infinite; str() is the user message."""


class EpochHistory(keras.callbacks.Callback):
    """One record per finished epoch ({"epoch", "phase", losses...}) kept in history.json.

    The file is written at once (an empty list for a model without epochs), rewritten every
    epoch and reloaded on resume, so loss curves span interruptions.
    """

    def __init__(self, path, schedule, start_epoch=0):
        super().__init__()
        self.path = pathlib.Path(path)
        self.schedule = schedule
        previous = json.loads(self.path.read_text()) if self.path.exists() else []
        self.records = [record for record in previous if record["epoch"] <= start_epoch]
        self._write()

    def on_epoch_end(self, epoch, logs=None):
        record = {"epoch": epoch + 1, "phase": self.schedule.phase(epoch)}
        record.update({name: float(value) for name, value in (logs or {}).items()})
        self.records.append(record)
        self._write()

    def _write(self):
        self.path.write_text(json.dumps(self.records, indent=1))


class StopOnNonFinite(keras.callbacks.Callback):
    """Stop at the first non-finite loss, before the epoch's checkpoint could store bad weights."""

    def __init__(self, checkpoint_dir):
        super().__init__()
        self.checkpoint_dir = checkpoint_dir
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        for name, value in (logs or {}).items():
            if not math.isfinite(float(value)):
                raise TrainingDivergedError(
                    f"Training diverged: {name} became {float(value)} in epoch {self.epoch + 1}, step {batch + 1}. "
                    f"The last good checkpoint is kept in {self.checkpoint_dir}; lower --lr and rerun "
                    "(or --resume to continue from it)."
                )


class TensorBoardLogger(keras.callbacks.Callback):
    """Per-epoch losses grouped by phase, learning rates, and input | reconstruction | error images.

    `preview` is a fixed small batch of images in [-1, 1]; its reconstructions are written every
    `image_every` epochs and at the last epoch.
    """

    def __init__(self, log_dir, schedule, preview, image_every=5):
        super().__init__()
        self.writer = tf.summary.create_file_writer(str(log_dir))
        self.schedule = schedule
        self.preview = preview
        self.image_every = image_every

    def on_epoch_end(self, epoch, logs=None):
        phase = self.schedule.phase(epoch)
        with self.writer.as_default(step=epoch + 1):
            for name, value in (logs or {}).items():
                tf.summary.scalar(f"{phase}/{name}", float(value))
            for name, item in self.model.checkpoint_items().items():
                if isinstance(item, keras.optimizers.Optimizer):
                    tf.summary.scalar(f"learning_rate/{name}", float(keras.ops.convert_to_numpy(item.learning_rate)))
            if (epoch + 1) % self.image_every == 0 or epoch + 1 == self.schedule.total_epochs:
                tf.summary.image("reconstructions", self._panels(), max_outputs=len(self.preview))
        self.writer.flush()

    def _panels(self):
        """Each preview image as one RGB strip: input | reconstruction | |difference| heat map."""
        reconstructions = np.asarray(self.model(self.preview, training=False))
        images = np.asarray(self.preview)
        errors = np.abs(images - reconstructions)[..., 0]
        heat = error_heatmap(errors, vmax=float(errors.max()) or 1.0) / 255.0
        strips = [_to_rgb01(images), _to_rgb01(reconstructions), heat]
        return np.concatenate(strips, axis=2).astype("float32")


def _to_rgb01(images):
    """[-1, 1] grayscale [N, H, W, 1] -> [0, 1] RGB for tf.summary.image."""
    return np.repeat((np.clip(images, -1.0, 1.0) + 1.0) / 2.0, 3, axis=-1)
