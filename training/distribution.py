"""tf.distribute strategies by name (--strategy) and the gradient share each replica contributes."""

import functools

import tensorflow as tf

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


def replica_gradients(tape, loss, variables):
    """Gradients of this replica's share of `loss`.

    Keras optimizers sum gradients over replicas, while every loss here is a mean over the
    replica's own slice of the global batch; dividing by the replica count makes the summed
    gradient the gradient of the global-batch mean, the same update as on one device.
    """
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    gradients = tape.gradient(loss, variables)
    return gradients if replicas == 1 else [None if g is None else g / replicas for g in gradients]
