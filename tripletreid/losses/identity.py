"""The identity-side losses beside the triplet loss: those of the Bag-of-Tricks strong
baseline (ID loss, center loss), its margin-based variants (`tripletreid.losses.margins`) and
DCE's verification loss (`tripletreid.losses.siamese`).

`IdentityLosses` owns what they learn: the identity and verification classifiers (trained with
the network's optimizer) and the identity centers (trained by their own SGD, as Wen et al. and
the baseline do). All are in the training checkpoint and in no exported model: retrieval needs
only the embedding.
"""
import keras
import tensorflow as tf

from tripletreid.losses import ID_LOSSES
from tripletreid.losses.siamese import verification_cross_entropy, verification_pairs

# Folded into the step's seed, so that the verification pairs are not drawn with the very
# random numbers of the sampled triplet loss.
_VERIFICATION_STREAM = 7


def linear_logits(embeddings, kernel, labels, scale, margin):
    """The plain softmax's logits: the embedding times the classifier's weights (`labels`,
    `scale` and `margin` are the margin-based losses')."""
    del labels, scale, margin
    return tf.linalg.matmul(embeddings, kernel)


def identity_cross_entropy(logits, labels, smoothing=0.0):
    """Softmax cross-entropy of each image's identity, per image, with label smoothing.

    The target puts `1 - smoothing` on the true identity and spreads `smoothing` evenly over
    all of them (Szegedy et al. 2016), as the Bag-of-Tricks baseline's ID loss: it keeps the
    classifier from growing its logits without bound on a training set it can memorise.
    """
    classes = tf.shape(logits)[1]
    targets = (tf.one_hot(labels, classes) * (1.0 - smoothing)
               + smoothing / tf.cast(classes, logits.dtype))
    return -tf.reduce_sum(targets * tf.nn.log_softmax(logits), axis=1)


def center_loss(features, labels, centers):
    """Squared euclidean distance of each feature to its identity's center (Wen et al. 2016).

    It pulls each identity together in absolute terms, which the triplet loss (relative
    distances only) does not; the centers are learnt along (`IdentityLosses`).
    """
    return tf.reduce_sum(tf.square(features - tf.gather(centers, labels)), axis=1)


class IdentityLosses(tf.Module):
    """ID loss (label-smoothed cross-entropy of a bias-free classifier on the embedding, its
    logits those of `id_loss`, a name of `ID_LOSSES`, with `scale` and `margin`), center loss
    (on the feature the triplet loss sees) and verification loss (DCE's: on pairs of
    embeddings, their `pair` feature), each with its weight; 0 leaves it out.

    The centers follow the gradient of the unweighted center loss, so they move at
    `center_learning_rate` whatever the weight, as in the baseline's code.
    """

    def __init__(self, num_identities, dim, id_weight=0.0, smoothing=0.0, center_weight=0.0,
                 center_learning_rate=0.5, id_loss='softmax', scale=30.0, margin=0.5,
                 verification_weight=0.0, pair='product'):
        super().__init__(name='identity_losses')
        self.id_weight, self.smoothing = id_weight, smoothing
        self.logits, self.scale, self.margin = ID_LOSSES[id_loss], scale, margin
        self.center_weight = center_weight
        self.verification_weight, self.pair = verification_weight, pair
        self.classifier = self.centers = self.center_optimizer = self.verifier = None
        if verification_weight:  # the paper's 2-way convolution: (different, same), with bias
            self.verifier = keras.layers.Dense(2, name='verifier', dtype='float32')
            self.verifier.build((None, dim))
        if id_weight:
            self.classifier = keras.layers.Dense(
                num_identities, use_bias=False, name='classifier', dtype='float32',
                kernel_initializer=keras.initializers.RandomNormal(stddev=0.001))
            self.classifier.build((None, dim))
        if center_weight:
            self.centers = tf.Variable(
                keras.initializers.RandomNormal(stddev=1.0)((num_identities, dim)),
                name='centers')
            self.center_optimizer = keras.optimizers.SGD(center_learning_rate)
            self.center_optimizer.build([self.centers])

    @property
    def classifier_variables(self):
        """Variables the network's optimizer trains: the classifiers', if any."""
        return [variable for layer in (self.classifier, self.verifier) if layer
                for variable in layer.trainable_variables]

    def __call__(self, features, embeddings, labels, seed=None):
        """{name: mean loss} of the losses in use, unweighted. `seed`, the step's stateless
        seed, draws the verification loss's pairs."""
        parts = {}
        if self.classifier:
            logits = self.logits(embeddings, self.classifier.kernel, labels, self.scale,
                                 self.margin)
            parts['id_loss'] = tf.reduce_mean(identity_cross_entropy(logits, labels,
                                                                     self.smoothing))
        if self.centers is not None:
            parts['center_loss'] = tf.reduce_mean(center_loss(features, labels, self.centers))
        if self.verifier:
            pairs = verification_pairs(
                labels, tf.random.experimental.stateless_fold_in(seed, _VERIFICATION_STREAM))
            parts['verification_loss'] = tf.reduce_mean(verification_cross_entropy(
                embeddings, *pairs, self.verifier, self.pair))
        return parts

    def weighted_sum(self, parts):
        weights = {'id_loss': self.id_weight, 'center_loss': self.center_weight,
                   'verification_loss': self.verification_weight}
        return tf.add_n([weights[name] * value for name, value in parts.items()])

    def update_centers(self, gradient):
        """One SGD step of the centers from the center loss's (unweighted) gradient."""
        gradient = tf.convert_to_tensor(gradient)  # the gather's sparse gradient, made dense
        self.center_optimizer.apply_gradients([(gradient, self.centers)])
