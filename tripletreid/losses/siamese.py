"""The verification loss of the identification + verification network (DCE: Zheng et al., "A
Discriminatively Learned CNN Embedding for Person Re-identification", TOMM 2017).

Beside the identity loss, pairs of images go through a small classifier that says whether they
show the same person: the pair's feature is the element-wise product of the two embeddings
(`product`), or, as the paper's "square layer", their squared difference
(`squared_difference`), and a linear layer with bias gives the two logits (different, same),
trained with softmax cross-entropy. The pairs come from the PK batch itself: every image is
the anchor of one positive and one negative pair, so the pairs are balanced and the loss
composes with the triplet losses on the same batch.
"""
import tensorflow as tf

from tripletreid.losses import PAIR_FEATURES
from tripletreid.losses.triplet import identity_masks


def product(first, second):
    """The pair feature `product`: the element-wise product of the two embeddings."""
    return first * second


def squared_difference(first, second):
    """The pair feature `squared_difference`: the paper's square layer, (x - y)^2."""
    return tf.math.squared_difference(first, second)


def verification_pairs(labels, seed):
    """(first, second, same) of 2B pairs of a batch of B images: each image with one other of
    its identity (same = 1) and one of another identity (same = 0), each drawn uniformly from
    the batch with the stateless `seed`, so a step's pairs are a function of (seed, step).
    Every image needs another of its identity (K >= 2)."""
    positive, negative = identity_masks(labels)
    pos_seed, neg_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    uniform = tf.zeros_like(positive, tf.float32)
    pos = tf.random.stateless_categorical(tf.where(positive, uniform, -float('inf')), 1,
                                          pos_seed)[:, 0]
    neg = tf.random.stateless_categorical(tf.where(negative, uniform, -float('inf')), 1,
                                          neg_seed)[:, 0]
    anchors = tf.range(tf.size(labels, out_type=tf.int64), dtype=tf.int64)
    return (tf.concat([anchors, anchors], 0), tf.concat([pos, neg], 0),
            tf.concat([tf.ones_like(anchors), tf.zeros_like(anchors)], 0))


def verification_cross_entropy(embeddings, first, second, same, classifier, pair='product'):
    """Per pair, the softmax cross-entropy of `classifier` (features -> 2 logits: different,
    same) on the pair feature `pair` (a name of `PAIR_FEATURES`) of the two embeddings."""
    features = PAIR_FEATURES[pair](tf.gather(embeddings, first), tf.gather(embeddings, second))
    return tf.nn.sparse_softmax_cross_entropy_with_logits(same, classifier(features))
