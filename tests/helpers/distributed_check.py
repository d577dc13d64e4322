"""One training step on 2 mirrored CPU devices against one device.

Run by tests/test_distribution.py in its own process (the CPU must be split before TensorFlow
starts). One SGD step of rate 1e6 from the same weights turns each variable's change into
a million times its gradient (so large that the weights do not round it away). Prints JSON:

`synchronized` (--sync_batch_norm: batch norm over the global batch): per loss, the largest
loss difference, and per variable the largest gradient difference relative to the gradient's
largest entry, against one device on the whole batch.

`fused` (train.py's default: `fuse`, no synchronisation): each replica normalises its half
with that half's statistics, so the reference is one device running the model on each half
separately and mining the concatenated features (as `make_train_step` gathers them). The same
differences, and those of the batch norms' moving statistics after the step: each replica's
copy against the reference's update from that replica's half (`replica_<i>`), what the
variable reads and a checkpoint stores against replica 0's half (`read`, `checkpoint`), and
for contrast what it reads against the mean of the two halves' updates (`read_to_mean`). Also
what ran: the batch norms' classes, and the FusedBatchNormV3 ops of the traced step.
"""
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import keras
import numpy as np
import tensorflow as tf

from tripletreid import distribution, training
from tripletreid.fused_batch_norm import fuse
from tripletreid.losses import LOSSES
from tripletreid.losses.identity import IdentityLosses
from tripletreid.losses.triplet import cdist
from tripletreid.model import build_model, training_model

RATE = 1e6
REPLICAS = 2


def build(strategy, fused):
    """(model, identity losses, SGD) made under `strategy` from seed 0: the same weights
    whatever the strategy. `fused`: train.py's fused batch norms; else synchronised ones."""
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_model('lunet', 'bnneck', 256)  # lunet's width: no linear layer
        if fused:
            model = fuse(model)
        else:
            distribution.synchronize_batch_norm(model)
        identity = IdentityLosses(4, 256, id_weight=1.0, smoothing=0.1)
        optimizer = keras.optimizers.SGD(RATE)
        optimizer.build(model.trainable_variables + identity.classifier_variables)
    return model, identity, optimizer


def batch_norms(model):
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization)]


def moving_variables(model):
    return [v for layer in batch_norms(model) for v in (layer.moving_mean, layer.moving_variance)]


def gradients(variables, before):
    return {v.path: (b - v.numpy()) / RATE for v, b in zip(variables, before)}


def rows(replica, size):
    part = size // REPLICAS
    return slice(replica * part, (replica + 1) * part)


def one_step(strategy, images, labels, loss, fused=False):
    """(per-anchor losses, {variable: gradient}, model, (step function, its batch)) of one
    step under `strategy`."""
    model, identity, optimizer = build(strategy, fused)
    variables = model.trainable_variables + identity.classifier_variables
    before = [v.numpy() for v in variables]
    step = training.make_train_step(model, optimizer, loss, identity=identity, strategy=strategy)
    replicas = strategy.num_replicas_in_sync

    def share(context):
        part = len(labels) // replicas
        own = slice(context.replica_id_in_sync_group * part,
                    (context.replica_id_in_sync_group + 1) * part)
        return images[own], labels[own], np.arange(len(labels))[own]
    batch = strategy.experimental_distribute_values_from_function(share)
    values = step(*batch)
    return values['losses'].numpy(), gradients(variables, before), model, (step, batch)


def halves_step(images, labels, loss):
    """One device doing what `mirrored` does with unsynchronised batch norms: the model on each
    half apart (its own batch statistics), the loss of the concatenated features, one SGD step.

    Returns (per-anchor losses, {variable: gradient}, [moving statistics after the half's
    update, one list per half], their initial values): the moving statistics restart from
    their initial values before each half, as each replica's copy does."""
    model, identity, optimizer = build(tf.distribute.get_strategy(), fused=True)
    features_model = training_model(model)
    variables = model.trainable_variables + identity.classifier_variables
    before = [v.numpy() for v in variables]
    moving = moving_variables(model)
    initial = [v.numpy() for v in moving]
    updated, outputs = [], []
    with tf.GradientTape() as tape:
        for replica in range(REPLICAS):
            for variable, value in zip(moving, initial):
                variable.assign(value)
            outputs.append(features_model(images[rows(replica, len(images))], training=True))
            updated.append([v.numpy() for v in moving])
        features, embeddings = (tf.concat([o[i] for o in outputs], 0) for i in (0, 1))
        losses = LOSSES[loss](cdist(features, features), labels, 'soft', None)
        total = tf.reduce_mean(losses) + identity.weighted_sum(
            identity(features, embeddings, labels))
    optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
    return losses.numpy(), gradients(variables, before), updated, initial


def relative(single, mirrored):
    """The differences of one step's losses and gradients, relative to their largest entry."""
    differences = {name: np.abs(g - mirrored[1][name]).max() for name, g in single[1].items()}
    largest = max(np.abs(g).max() for g in single[1].values())
    return {
        'loss': float(np.abs(single[0] - mirrored[0]).max() / np.abs(single[0]).max()),
        'gradient': float(max(differences.values()) / largest),
        'gradient_by_variable': {
            name: float(difference / np.abs(single[1][name]).max())
            for name, difference in differences.items() if np.abs(single[1][name]).max()},
    }


def update_difference(got, expected, initial):
    """How far the updates `got - initial` of the moving statistics are from `expected -
    initial`: per variable, the largest difference relative to the expected update's largest
    entry; the largest over the variables."""
    return float(max(np.abs(g - e).max() / np.abs(e - i).max()
                     for g, e, i in zip(got, expected, initial)))


def checkpointed(variables):
    """The values a training checkpoint stores for `variables` (saved and read back)."""
    with tempfile.TemporaryDirectory() as folder:
        prefix = tf.train.Checkpoint(moving=variables).write(os.path.join(folder, 'ckpt'))
        return [tf.train.load_variable(prefix, f'moving/{i}/.ATTRIBUTES/VARIABLE_VALUE')
                for i in range(len(variables))]


def fused_op_counts(step, batch):
    """{op type: count} of the batch-norm kernels in the traced step's graph and functions."""
    graph = step.get_concrete_function(*batch).graph.as_graph_def()
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    return {kind: sum(n.op == kind for n in nodes)
            for kind in ('FusedBatchNormV3', 'FusedBatchNormGradV3')}


def fused_report(strategy, images, labels, loss):
    single = halves_step(images, labels, loss)
    *mirrored, model, (step, batch) = one_step(strategy, images, labels, loss, fused=True)
    moving = moving_variables(model)
    copies = [[strategy.experimental_local_results(v.value)[i].numpy() for v in moving]
              for i in range(REPLICAS)]
    halves, initial = single[2:]
    mean = [(a + b) / 2 for a, b in zip(*halves)]
    layers = batch_norms(model)
    return {
        **relative(single, mirrored),
        'moving': {
            **{f'replica_{i}': update_difference(copies[i], halves[i], initial)
               for i in range(REPLICAS)},
            'read': update_difference([v.numpy() for v in moving], halves[0], initial),
            'checkpoint': update_difference(checkpointed(moving), halves[0], initial),
            'read_to_mean': update_difference([v.numpy() for v in moving], mean, initial),
        },
        'layers': {name: sum(type(layer).__name__ == name for layer in layers)
                   for name in {type(layer).__name__ for layer in layers}},
        'synchronized': sum(layer.synchronized for layer in layers),
        'ops': fused_op_counts(step, batch),
    }


def main():
    distribution.split_cpu(REPLICAS)
    images = np.random.default_rng(0).uniform(0, 255, (8, 32, 16, 3)).astype(np.float32)
    labels = np.repeat(np.arange(4), 2).astype(np.int32)
    mirrored = distribution.create_strategy('mirrored')
    report = {'replicas': mirrored.num_replicas_in_sync, 'synchronized': {}}
    for loss in ('batch_hard', 'batch_all'):
        single = one_step(tf.distribute.get_strategy(), images, labels, loss)
        report['synchronized'][loss] = relative(single, one_step(mirrored, images, labels, loss))
    report['fused'] = fused_report(mirrored, images, labels, 'batch_hard')
    print(json.dumps(report))


if __name__ == '__main__':
    main()
