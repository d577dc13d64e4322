"""Pairwise distances and the batch-hard triplet loss family, with the in-batch monitoring values.

A loss takes the pairwise distance matrix of a batch and the identity of each row and returns one
loss value per anchor (the mean is what is minimised). New losses register in `LOSSES`.
"""
import tensorflow as tf

METRICS = ('euclidean', 'sqeuclidean', 'cityblock')


def cdist(a, b, metric='euclidean'):
    """All distances between the rows of `a` [N, D] and of `b` [M, D], as [N, M].

    `euclidean` adds 1e-12 under the root as the paper's code does: the gradient of sqrt at zero
    is infinite, and an anchor's distance to itself (or to a duplicate image) is exactly zero.
    """
    diffs = tf.expand_dims(a, 1) - tf.expand_dims(b, 0)
    if metric == 'sqeuclidean':
        return tf.reduce_sum(tf.square(diffs), axis=-1)
    if metric == 'euclidean':
        return tf.sqrt(tf.reduce_sum(tf.square(diffs), axis=-1) + 1e-12)
    if metric == 'cityblock':
        return tf.reduce_sum(tf.abs(diffs), axis=-1)
    raise ValueError(f'unknown metric {metric!r}; choose from {", ".join(METRICS)}')


def identity_masks(pids):
    """Boolean [B, B] masks: same identity and not the anchor itself; different identity."""
    same = tf.equal(tf.expand_dims(pids, 1), tf.expand_dims(pids, 0))
    positive = tf.logical_and(same, tf.logical_not(tf.eye(tf.shape(pids)[0], dtype=tf.bool)))
    return positive, tf.logical_not(same)


def apply_margin(diff, margin):
    """Turn `d(a,p) - d(a,n)` into a loss: softplus (`soft`), hinge at a float, or as is (`none`)."""
    if margin == 'soft':
        return tf.nn.softplus(diff)
    if margin == 'none':
        return diff
    return tf.maximum(diff + float(margin), 0.0)


def batch_hard(dists, pids, margin):
    """The hardest positive and hardest negative of each anchor (Hermans et al. 2017, eq. 5).

    An anchor whose identity has a single image in the batch has no positive; its hardest
    positive distance is 0, as in the official code.
    """
    positive, negative = identity_masks(pids)
    zeros = tf.zeros_like(dists)
    furthest_positive = tf.reduce_max(tf.where(positive, dists, zeros), axis=1)
    big = tf.stop_gradient(tf.reduce_max(dists)) + 1.0  # stands in for 'no negative here'
    closest_negative = tf.reduce_min(tf.where(negative, dists, zeros + big), axis=1)
    return apply_margin(furthest_positive - closest_negative, margin)


LOSSES = {
    'batch_hard': batch_hard,
}


def monitoring(dists, pids, k):
    """In-batch retrieval values logged during training.

    Returns top-1 accuracy, precision at `k` (with K images per identity, k = K-1 is the share
    of an anchor's true matches among its k nearest others), and the positive and negative
    distances (flattened). The anchor itself is never among its own neighbours.
    """
    positive, negative = identity_masks(pids)
    size = tf.shape(dists)[0]
    k = tf.minimum(k, size - 1)
    others = tf.where(tf.eye(size, dtype=tf.bool), tf.fill(tf.shape(dists), float('inf')), dists)
    _, nearest = tf.math.top_k(-others, k=k)
    hits = tf.cast(tf.gather(positive, nearest, batch_dims=1), tf.float32)
    return {
        'top1': tf.reduce_mean(hits[:, 0]),
        'prec_at_k': tf.reduce_mean(hits),
        'positive_dists': tf.boolean_mask(dists, positive),
        'negative_dists': tf.boolean_mask(dists, negative),
    }
