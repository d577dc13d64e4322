"""Pairwise distances and the batch-hard triplet loss family, with the in-batch monitoring values.

A loss takes the pairwise distance matrix of a batch, the identity of each row, the margin and a
stateless seed (for the losses that sample), and returns one value per anchor whose mean is what
is minimised. Losses register by name in `tripletreid.losses.LOSSES`; `tripletreid.keras_losses`
wraps the same functions as `keras.losses.Loss` classes for `model.fit`.

The distances and the losses that do not sample are written with `keras.ops`, so they run on
any Keras backend (on TensorFlow they are the same TF ops as before, value for value).
`batch_sample` draws with TensorFlow's stateless sampler, and `monitoring` is train.py's: they
import TensorFlow themselves, so that the others load on another backend without it.
"""
from keras import ops

from tripletreid.metrics import METRICS


def cdist(a, b, metric='euclidean'):
    """All distances between the rows of `a` [N, D] and of `b` [M, D], as [N, M].

    `euclidean` adds 1e-12 under the root as the paper's code does: the gradient of sqrt at zero
    is infinite, and an anchor's distance to itself (or to a duplicate image) is exactly zero.
    """
    diffs = ops.expand_dims(a, 1) - ops.expand_dims(b, 0)
    if metric == 'sqeuclidean':
        return ops.sum(ops.square(diffs), axis=-1)
    if metric == 'euclidean':
        return ops.sqrt(ops.sum(ops.square(diffs), axis=-1) + 1e-12)
    if metric == 'cityblock':
        return ops.sum(ops.abs(diffs), axis=-1)
    raise ValueError(f'unknown metric {metric!r}; choose from {", ".join(METRICS)}')


def identity_masks(pids):
    """Boolean [B, B] masks: same identity and not the anchor itself; different identity."""
    same = ops.equal(ops.expand_dims(pids, 1), ops.expand_dims(pids, 0))
    positive = ops.logical_and(same, ops.logical_not(ops.eye(ops.shape(pids)[0], dtype='bool')))
    return positive, ops.logical_not(same)


def apply_margin(diff, margin):
    """Turn `d(a,p) - d(a,n)` into a loss: softplus (`soft`), hinge at a float, or as is
    (`none`)."""
    if margin == 'soft':
        return ops.softplus(diff)
    if margin == 'none':
        return diff
    return ops.maximum(diff + float(margin), 0.0)


def _beyond_all(dists):
    """A distance larger than every one of the batch: stands in for 'no such negative'."""
    return ops.stop_gradient(ops.max(dists)) + 1.0


def batch_hard(dists, pids, margin, seed=None):
    """The hardest positive and hardest negative of each anchor (Hermans et al. 2017, eq. 5).

    An anchor whose identity has a single image in the batch has no positive; its hardest
    positive distance is 0, as in the official code.
    """
    positive, negative = identity_masks(pids)
    zeros = ops.zeros_like(dists)
    furthest_positive = ops.max(ops.where(positive, dists, zeros), axis=1)
    closest_negative = ops.min(ops.where(negative, dists, zeros + _beyond_all(dists)), axis=1)
    return apply_margin(furthest_positive - closest_negative, margin)


def _per_anchor_mean(values, mask):
    """Mean of `values` over the `mask`ed entries of each anchor (row); 0 where none."""
    axes = tuple(range(1, len(values.shape)))
    count = ops.sum(ops.cast(mask, values.dtype), axis=axes)
    total = ops.sum(ops.where(mask, values, ops.zeros_like(values)), axis=axes)
    return total / ops.maximum(count, 1.0)


def _all_triplets(dists, pids, margin):
    """Loss of every triplet [anchor, positive, negative] and which of them are valid."""
    positive, negative = identity_masks(pids)
    losses = apply_margin(ops.expand_dims(dists, 2) - ops.expand_dims(dists, 1), margin)
    valid = ops.logical_and(ops.expand_dims(positive, 2), ops.expand_dims(negative, 1))
    return losses, valid


def batch_all(dists, pids, margin, seed=None):
    """Every valid triplet (Hermans et al. 2017, eq. 4): each anchor's mean triplet loss.

    In a PK batch every anchor has the same number of triplets, so the mean over anchors is
    the mean over all triplets of the batch.
    """
    losses, valid = _all_triplets(dists, pids, margin)
    return _per_anchor_mean(losses, valid)


def _scaled_to_batch_mean(totals, count):
    """Per-anchor `totals` scaled so that their mean is sum(totals) / `count` (at least 1):
    the mean over the batch's chosen triplets, whichever anchors they belong to."""
    anchors = ops.cast(ops.shape(totals)[0], totals.dtype)
    return totals * anchors / ops.maximum(count, 1.0)


def batch_all_nonzero(dists, pids, margin, seed=None):
    """`batch_all` averaged over the triplets with a non-zero loss only (the `BA!=0` variant).

    Returned per anchor, scaled so that their mean is (sum of all triplet losses) / (number of
    non-zero ones): easy triplets no longer dilute the gradient of the hard ones.
    """
    losses, valid = _all_triplets(dists, pids, margin)
    active = ops.logical_and(valid, losses > 1e-5)
    total = ops.sum(ops.where(active, losses, ops.zeros_like(losses)), axis=(1, 2))
    return _scaled_to_batch_mean(total, ops.sum(ops.cast(active, dists.dtype)))


def batch_semi_hard(dists, pids, margin, seed=None):
    """Every positive pair with its semi-hard negative: the semantics of tensorflow-addons'
    `TripletSemiHardLoss` (after FaceNet, Schroff et al. 2015).

    For anchor a and positive p, the negative is the closest one farther from a than p is
    (d(a,n) > d(a,p), as TFA's code compares: no margin); when no negative is that far, the
    farthest negative. Returned per anchor, scaled so that their mean is the mean over all
    positive pairs of the batch, TFA's normalisation. With TFA's defaults (`margin=1.0`,
    `distance_metric='L_2'`, which TFA computes as the squared distance) this is
    `metric='sqeuclidean'`, margin 1.0.
    """
    positive, negative = identity_masks(pids)
    d_ap, d_an = ops.expand_dims(dists, 2), ops.expand_dims(dists, 1)  # [a, p, 1], [a, 1, n]
    beyond = ops.logical_and(ops.expand_dims(negative, 1), d_an > d_ap)
    semi_hard = ops.min(ops.where(beyond, d_an, _beyond_all(dists)), axis=2)
    farthest = ops.max(ops.where(negative, dists, ops.zeros_like(dists)), axis=1, keepdims=True)
    chosen = ops.where(ops.any(beyond, axis=2), semi_hard, farthest)
    losses = ops.where(positive, apply_margin(dists - chosen, margin), ops.zeros_like(dists))
    return _scaled_to_batch_mean(ops.sum(losses, axis=1), ops.sum(ops.cast(positive, dists.dtype)))


def batch_sample(dists, pids, margin, seed):
    """One sampled triplet per anchor: a positive drawn with probability proportional to
    exp(distance), a negative with probability proportional to exp(-distance).

    `seed` (a stateless seed, shape [2]) makes the draw a function of the training step.
    """
    import tensorflow as tf
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
    import tensorflow as tf
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
