"""Training on several devices (`mirrored`) or hosts (`multi_worker`) with `tf.distribute`.

The PK batch stays the global batch: each replica gets whole identities, and the losses see
the embeddings of every replica (`gather`), so N devices compute the loss of one device with
the same batch. Only the chief (worker 0) writes files.
"""
import json
import os

import keras
import tensorflow as tf

from tripletreid.errors import InputError

def split_cpu(count):
    """Make the CPU `count` logical devices, to run `mirrored` without GPUs (as the tests do).

    Must come before TensorFlow first uses a device.
    """
    cpu = tf.config.list_physical_devices('CPU')[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * count)


def create_strategy(kind):
    """The strategy of `--distribution`: the default one (one device), mirrored over this
    host's GPUs (else its logical CPUs), or multi-worker as the TF_CONFIG variable says."""
    if kind == 'mirrored':
        devices = tf.config.list_logical_devices('GPU') or tf.config.list_logical_devices('CPU')
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if kind == 'multi_worker':
        _check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def _check_tf_config():
    text = os.environ.get('TF_CONFIG')
    if not text:
        raise InputError('--distribution multi_worker needs the TF_CONFIG environment variable '
                         '(the cluster and this worker\'s task; see the README)')
    try:
        config = json.loads(text)
        config['cluster'], config['task']['type'], config['task']['index']
    except (ValueError, KeyError, TypeError):
        raise InputError('TF_CONFIG must be JSON with "cluster" and "task": {"type", "index"}; '
                         f'found {text!r}') from None


def is_chief(strategy):
    """Whether this process writes the files: always, except on workers other than the
    chief (task `chief`, or `worker` 0 in a cluster without one)."""
    resolver = getattr(strategy, 'cluster_resolver', None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == 'chief':
        return True
    has_chief = 'chief' in resolver.cluster_spec().as_dict()
    return resolver.task_type == 'worker' and resolver.task_id == 0 and not has_chief


def gather(tensor):
    """`tensor` of every replica (equal shapes), concatenated in replica order; on one
    replica, `tensor` itself.

    Each replica pads its part with zeros to the whole and all replicas sum: the sum's gradient
    is the sum of the replicas' gradients, so each part gets the gradient of every replica's
    loss. (`all_gather` would do the same, but fails under MultiWorkerMirroredStrategy with
    one device per worker: "destinations can not be empty".)
    """
    context = tf.distribute.get_replica_context()
    count = context.num_replicas_in_sync
    if count == 1:
        return tensor
    rows = tf.shape(tensor)[0]
    before = tf.cast(context.replica_id_in_sync_group, tf.int32) * rows
    padding = [[before, (count - 1) * rows - before]] + [[0, 0]] * (len(tensor.shape) - 1)
    return context.all_reduce(tf.distribute.ReduceOp.SUM, tf.pad(tensor, padding))


def anyone(strategy, flag):
    """Whether `flag` is set in any worker, so that all stop at the same step."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return flag
    count = strategy.run(lambda: tf.constant(float(flag)))
    return bool(strategy.reduce(tf.distribute.ReduceOp.SUM, count, axis=None) > 0)


def synchronize_batch_norm(model):
    """Batch norm over the global batch instead of each replica's part (Keras's own
    `synchronized` mode, which all-reduces the moments across replicas)."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True
