"""Precise BatchNorm statistics: re-estimate a network's moving mean/variance as population averages."""

import keras


def precise_batchnorm(network, dataset):
    """Set every BatchNormalization layer's moving statistics to the average over `dataset`'s batches.

    Momentum i / (i + 1) at batch i turns Keras' exponential moving average into the plain mean
    of the per-batch statistics, so each batch counts once and nothing of training's moving
    averages remains. Layers are run in training mode (batch statistics), eagerly, one pass.
    """
    layers = [layer for layer in network.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not layers:
        return
    momenta = [layer.momentum for layer in layers]
    try:
        for index, batch in enumerate(dataset):
            for layer in layers:
                layer.momentum = index / (index + 1)
            network(batch, training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
