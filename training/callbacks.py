"""Callbacks that make a run observable and safe: loss history, divergence guard, TensorBoard."""

import json
import math
import pathlib
import time

import cv2
import keras
import numpy as np
import tensorflow as tf


def error_heatmap(error_maps, vmax) -> np.ndarray:
    """Error maps [..., H, W] -> RGB uint8 [..., H, W, 3] with the inferno colour map on the scale [0, vmax]."""
    error_maps = np.asarray(error_maps, dtype=np.float32)
    scaled = np.clip(error_maps / vmax * 255, 0, 255).astype(np.uint8)
    heat = cv2.applyColorMap(scaled.reshape(-1, scaled.shape[-1]), cv2.COLORMAP_INFERNO)
    return cv2.cvtColor(heat, cv2.COLOR_BGR2RGB).reshape(*error_maps.shape, 3)

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


class ProgressLine(keras.callbacks.Callback):
    """One console line per epoch: its number, phase, seconds and the losses the model lists in
    `progress_logs` (every log without it), short enough for an 80-column terminal; history.json and
    TensorBoard keep every log. `live` (a terminal) also counts the epoch's steps on that line.

    Keras' own progress bar prints neither the phase nor a selection, and the cascade's 15 logs made a
    400-character line that a terminal wraps on every update.
    """

    def __init__(self, schedule, live=False):
        super().__init__()
        self.schedule = schedule
        self.live = live
        self.prefix, self.started, self.written = "", 0.0, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.prefix = f"Epoch {epoch + 1}/{self.schedule.total_epochs} {self.schedule.phase(epoch)}"
        self.started, self.written = time.monotonic(), 0

    def on_train_batch_end(self, batch, logs=None):
        if self.live:
            steps = self.params.get("steps")
            text = f"\r{self.prefix} step {batch + 1}" + (f"/{steps}" if steps else "")
            print(text, end="", flush=True)
            self.written = len(text)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        names = [name for name in getattr(self.model, "progress_logs", logs) if name in logs]
        losses = " ".join(f"{name.removesuffix('_loss')} {float(logs[name]):.3g}" for name in names)
        line = f"{self.prefix} {time.monotonic() - self.started:.0f}s: {losses}"
        print(f"\r{line.ljust(self.written)}" if self.written else line, flush=True)


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
                kept = (f"The last good checkpoint is kept in {self.checkpoint_dir}; lower --lr and rerun "
                        "(or --resume to continue from it).") if self.epoch else "No epoch finished; lower --lr and rerun."
                raise TrainingDivergedError(
                    f"Training diverged: {name} became {float(value)} in epoch {self.epoch + 1}, step {batch + 1}. {kept}"
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
        errors = np.mean(np.abs(images - reconstructions), axis=-1)  # over channels, like the error map
        heat = error_heatmap(errors, vmax=float(errors.max()) or 1.0) / 255.0
        strips = [_to_rgb01(images), _to_rgb01(reconstructions), heat]
        return np.concatenate(strips, axis=2).astype("float32")


def _to_rgb01(images):
    """[-1, 1] grayscale [N, H, W, 1] or RGB [N, H, W, 3] -> [0, 1] RGB for tf.summary.image."""
    return np.repeat((np.clip(images, -1.0, 1.0) + 1.0) / 2.0, 3 // images.shape[-1], axis=-1)
