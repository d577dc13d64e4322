"""PK batches from any `tf.data.Dataset` of (image, label), for `model.fit` with a triplet loss.

train.py draws its batches from a CSV (`pipeline.PKSampler`); a Keras user has a dataset
instead. The identities of each batch are the PKSampler's (each epoch a seeded permutation of
the identities, P at a time, so every identity appears at most once per epoch); the K images
of an identity are a seeded draw among its images, as the PKSampler draws them.
"""
import numpy as np
import tensorflow as tf

from tripletreid.errors import InputError
from tripletreid.pipeline import PKSampler


def pk_batches(dataset, batch_p, batch_k, seed, map_fn=None):
    """An endless dataset of batches of P*K (image, label): P identities, K elements of each,
    identity-major, the same batches for the same `seed` (and the same global TensorFlow seed,
    if one is set: tf.data's shuffle combines the two).

    The labels are read in one pass first (integers; they need not be 0..n-1), then each
    identity's elements are found in one more pass per identity and kept in memory: let the
    elements be cheap (file names and labels) and decode the images in `map_fn`, a function of
    (element) -> (image, label) applied to the chosen elements only, before batching.
    """
    labels = np.array([int(label) for label in dataset.map(lambda _, label: label)
                       .as_numpy_iterator()])
    if not len(labels):
        raise InputError('pk_batches: the dataset is empty')
    identities, codes = np.unique(labels, return_inverse=True)
    sampler = PKSampler(codes, batch_p, batch_k, seed)  # checks P against the identities
    streams = [_draws(dataset, int(value), int(count), batch_k, seed)
               for value, count in zip(identities, np.bincount(codes))]
    choices = tf.data.Dataset.counter().map(
        lambda step: tf.repeat(tf.cast(sampler.identities(step), tf.int64), batch_k)).unbatch()
    batches = tf.data.Dataset.choose_from_datasets(streams, choices)
    if map_fn is not None:
        batches = batches.map(map_fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return batches.batch(batch_p * batch_k, drop_remainder=True)


def _draws(dataset, label, count, batch_k, seed):
    """Endless groups of K elements of identity `label`: each group the first K of a fresh
    seeded permutation of its `count` elements, each repeated ceil(K / count) times (as
    `PKSampler` does), so an identity with K images or more has no image twice in a batch."""
    repeats = -(-batch_k // count)
    return (dataset.filter(lambda _, element_label: element_label == label).cache()
            .repeat(repeats)
            .shuffle(count * repeats, seed=seed, reshuffle_each_iteration=True)
            .take(batch_k).repeat())
