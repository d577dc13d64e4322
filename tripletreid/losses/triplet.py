"""Pairwise distances and the batch-hard triplet loss family, with the in-batch monitoring values.

A loss takes the pairwise distance matrix of a batch, the identity of each row, the margin and a
stateless seed (for the losses that sample), and returns one value per anchor whose mean is what
is minimised. Losses register by name in `tripletreid.losses.LOSSES`.
"""
import tensorflow as tf

from tripletreid.metrics import METRICS


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
    """Turn `d(a,p) - d(a,n)` into a loss: softplus (`soft`), hinge at a float, or as is
    (`none`)."""
    if margin == 'soft':
        return tf.nn.softplus(diff)
    if margin == 'none':
        return diff
    return tf.maximum(diff + float(margin), 0.0)


def batch_hard(dists, pids, margin, seed=None):
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


def _per_anchor_mean(values, mask):
    """Mean of `values` over the `mask`ed entries of each anchor (row); 0 where none."""
    axes = list(range(1, len(values.shape)))
    count = tf.reduce_sum(tf.cast(mask, values.dtype), axis=axes)
    total = tf.reduce_sum(tf.where(mask, values, tf.zeros_like(values)), axis=axes)
    return total / tf.maximum(count, 1.0)


def _all_triplets(dists, pids, margin):
    """Loss of every triplet [anchor, positive, negative] and which of them are valid."""
    positive, negative = identity_masks(pids)
    losses = apply_margin(tf.expand_dims(dists, 2) - tf.expand_dims(dists, 1), margin)
    valid = tf.logical_and(tf.expand_dims(positive, 2), tf.expand_dims(negative, 1))
    return losses, valid


def batch_all(dists, pids, margin, seed=None):
    """Every valid triplet (Hermans et al. 2017, eq. 4): each anchor's mean triplet loss.

    In a PK batch every anchor has the same number of triplets, so the mean over anchors is
    the mean over all triplets of the batch.
    """
    losses, valid = _all_triplets(dists, pids, margin)
    return _per_anchor_mean(losses, valid)


def batch_all_nonzero(dists, pids, margin, seed=None):
    """`batch_all` averaged over the triplets with a non-zero loss only (the `BA!=0` variant).

    Returned per anchor, scaled so that their mean is (sum of all triplet losses) / (number of
    non-zero ones): easy triplets no longer dilute the gradient of the hard ones.
    """
    losses, valid = _all_triplets(dists, pids, margin)
    active = tf.logical_and(valid, losses > 1e-5)
    total = tf.reduce_sum(tf.where(active, losses, tf.zeros_like(losses)), axis=[1, 2])
    anchors = tf.cast(tf.shape(dists)[0], dists.dtype)
    return total * anchors / tf.maximum(tf.reduce_sum(tf.cast(active, dists.dtype)), 1.0)


def batch_sample(dists, pids, margin, seed):
    """One sampled triplet per anchor: a positive drawn with probability proportional to
    exp(distance), a negative with probability proportional to exp(-distance).

    `seed` (a stateless seed, shape [2]) makes the draw a function of the training step.
    """
    positive, negative = identity_masks(pids)
    has_positive = tf.reduce_any(positive, axis=1, keepdims=True)
    pos_logits = tf.where(positive, dists, float('-inf'))
    pos_logits = tf.where(has_positive, pos_logits, tf.zeros_like(dists))  # avoid all -inf
    neg_logits = tf.where(negative, -dists, float('-inf'))
    pos_seed, neg_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    pos = tf.random.stateless_categorical(tf.stop_gradient(pos_logits), 1, pos_seed)[:, 0]
    neg = tf.random.stateless_categorical(tf.stop_gradient(neg_logits), 1, neg_seed)[:, 0]
    d_ap = tf.where(has_positive[:, 0], tf.gather(dists, pos, batch_dims=1), 0.0)
    return apply_margin(d_ap - tf.gather(dists, neg, batch_dims=1), margin)


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
