"""tf.distribute strategies by name (--strategy), and what a multi-worker run does differently."""

import atexit
import functools
import shutil
import tempfile

import tensorflow as tf

from models.config import ConfigError
from training.names import STRATEGIES


@functools.cache
def make_strategy(name):
    """The strategy for `--strategy NAME`; create it before any other TensorFlow work (multi_worker needs that).

    One instance per name and process: two MirroredStrategy instances number their collective
    operations alike, and the second one's all-reduces then fail with a shape mismatch.

    mirrored: one replica per local GPU, or per logical CPU device on a machine without GPUs (tests
    split the CPU in two). multi_worker: the cluster described by the TF_CONFIG environment variable.
    """
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "default":
        return tf.distribute.get_strategy()
    raise ValueError(f"Unknown strategy {name!r}; choose one of {list(STRATEGIES)}.")


def multi_worker(strategy):
    """Whether `strategy` spans several worker processes (a MultiWorkerMirroredStrategy on a TF_CONFIG cluster)."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode()


def is_chief(strategy):
    """Whether this process writes the run folders: always on one machine; on a cluster, the `chief` task, else
    worker 0 (TensorFlow's rule, multi_worker_util.is_chief)."""
    if not multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()


def check_resume(strategy_name, resume):
    """--resume with --strategy multi_worker: ConfigError, before the strategy is made. Only the chief keeps
    checkpoints, and workers resuming at different epochs would wait on each other's collectives for ever."""
    if resume and strategy_name == "multi_worker":
        raise ConfigError("--resume does not work with --strategy multi_worker yet (only the chief keeps "
                          "checkpoints); start a new run without --resume.")


def worker_out(strategy, out):
    """The --out this process writes to: `out` on the chief; on every other worker a temporary folder, removed
    when the process exits. Every worker runs the same program (the collectives need each one), but only the
    chief's run folders are kept, so workers never race for the same run directory or report."""
    if is_chief(strategy):
        return out
    resolver = strategy.cluster_resolver
    temporary = tempfile.mkdtemp(prefix=f"bigan-ad-{resolver.task_type}{resolver.task_id}-")
    atexit.register(shutil.rmtree, temporary, ignore_errors=True)
    print(f"{resolver.task_type} {resolver.task_id}: not the chief, so this worker writes into {temporary} "
          "(removed at exit); the chief writes the run folders.")
    return temporary


def with_multi_worker_logs(model):
    """Let Keras' fit reduce `model`'s scalar logs across workers.

    Under a multi-worker strategy Keras 3 (3.15) reduces every log with strategy.reduce("MEAN", v, axis=0),
    which fails on the scalar losses every train step returns ("Invalid reduction dimension 0 for input with 0
    dimensions"; tensorflow/tensorflow#72388). Scalars are returned as [1] vectors instead, which that
    reduction averages over the workers into scalars again. A no-op on one worker.
    """
    if not multi_worker(model.distribute_strategy):
        return model
    step = model.train_step

    def train_step(data):
        return {name: tf.reshape(value, [1]) if value.shape.rank == 0 else value for name, value in step(data).items()}

    model.train_step = train_step
    return model
