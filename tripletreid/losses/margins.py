"""Margin-based softmax logits of the identity loss: ArcFace and CosFace (`--id_loss`).

Both L2-normalise the features and the classifier's weight of each identity, so that a logit is
s cos(theta), theta the angle between a feature and an identity's weight, and give the true
identity's logit a margin the feature must win by: CosFace (Wang et al., CVPR 2018)
s (cos(theta) - m), ArcFace (Deng et al., CVPR 2019) s cos(theta + m). The classifier learns
directions only, and the features are pulled together by angle, the measure the unit-length
embeddings of `evaluate.py --normalize` are compared by.
"""
import math

import tensorflow as tf


def cosines(embeddings, kernel):
    """[B, identities] cosines of the angles between each embedding and each identity's weight
    (a column of `kernel`)."""
    return tf.linalg.matmul(tf.math.l2_normalize(embeddings, axis=1),
                            tf.math.l2_normalize(kernel, axis=0))


def cosface_logits(embeddings, kernel, labels, scale, margin):
    """s (cos(theta) - m) for the true identity, s cos(theta) for the others."""
    cos = cosines(embeddings, kernel)
    return scale * (cos - margin * tf.one_hot(labels, tf.shape(cos)[1], dtype=cos.dtype))


def arcface_logits(embeddings, kernel, labels, scale, margin):
    """s cos(theta + m) for the true identity, s cos(theta) for the others.

    Past theta = pi - m, cos(theta + m) would rise again and reward the feature for turning
    further from its identity; there, as the reference code does (insightface,
    recognition/arcface_torch/losses.py, `easy_margin` off: `torch.where(target_logit >
    cos(pi - m), cos(theta + m), target_logit - sin(pi - m) * m)`), the target logit is
    cos(theta) - m sin(m), still falling as theta grows.
    """
    cos = cosines(embeddings, kernel)
    target = tf.gather(cos, labels, batch_dims=1)
    # The floor keeps the gradient of sin(theta) finite where a feature meets its identity's
    # direction exactly (sin(theta) = 0); it moves the value by at most 1e-6.
    sine = tf.sqrt(tf.maximum(1.0 - tf.square(target), 1e-12))
    shifted = tf.where(target > math.cos(math.pi - margin),
                       target * math.cos(margin) - sine * math.sin(margin),
                       target - margin * math.sin(margin))
    is_target = tf.one_hot(labels, tf.shape(cos)[1], on_value=True, off_value=False)
    return scale * tf.where(is_target, shifted[:, None], cos)
