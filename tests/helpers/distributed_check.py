"""Loss and gradients of one training step on 2 mirrored CPU devices against one device.

Run by tests/test_distribution.py in its own process (the CPU must be split before TensorFlow
starts). One SGD step of rate 1e6 from the same weights turns each variable's change into
a million times its gradient (so large that the weights do not round it away). Prints JSON:
the largest loss difference, and per variable the largest gradient difference relative to the
gradient's largest entry.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import keras
import numpy as np
import tensorflow as tf

from tripletreid import distribution, training
from tripletreid.losses.identity import IdentityLosses
from tripletreid.model import build_model

RATE = 1e6


def one_step(strategy, images, labels, loss):
    """(per-anchor losses, {variable: gradient}) of one step under `strategy`."""
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_model('lunet', 'bnneck', 256)  # lunet's width: no linear layer
        distribution.synchronize_batch_norm(model)
        identity = IdentityLosses(4, 256, id_weight=1.0, smoothing=0.1)
        optimizer = keras.optimizers.SGD(RATE)
        optimizer.build(model.trainable_variables + identity.classifier_variables)
    variables = model.trainable_variables + identity.classifier_variables
    before = [v.numpy() for v in variables]
    step = training.make_train_step(model, optimizer, loss, identity=identity, strategy=strategy)
    replicas = strategy.num_replicas_in_sync

    def share(context):
        part = len(labels) // replicas
        rows = slice(context.replica_id_in_sync_group * part,
                     (context.replica_id_in_sync_group + 1) * part)
        return images[rows], labels[rows], np.arange(len(labels))[rows]
    batch = strategy.experimental_distribute_values_from_function(share)
    values = step(*batch)
    gradients = {v.path: (b - v.numpy()) / RATE for v, b in zip(variables, before)}
    return values['losses'].numpy(), gradients


def main():
    distribution.split_cpu(2)
    images = np.random.default_rng(0).uniform(0, 255, (8, 32, 16, 3)).astype(np.float32)
    labels = np.repeat(np.arange(4), 2).astype(np.int32)
    report = {}
    for loss in ('batch_hard', 'batch_all'):
        single = one_step(tf.distribute.get_strategy(), images, labels, loss)
        mirrored = one_step(distribution.create_strategy('mirrored'), images, labels, loss)
        differences = {name: np.abs(g - mirrored[1][name]).max()
                       for name, g in single[1].items()}
        largest = max(np.abs(g).max() for g in single[1].values())
        report[loss] = {
            'replicas': 2,
            'loss': float(np.abs(single[0] - mirrored[0]).max() / np.abs(single[0]).max()),
            'gradient': float(max(differences.values()) / largest),
            'gradient_by_variable': {
                name: float(difference / np.abs(single[1][name]).max())
                for name, difference in differences.items() if np.abs(single[1][name]).max()},
        }
    print(json.dumps(report))


if __name__ == '__main__':
    main()
