"""Batch normalization as one fused kernel forward and one backward, as tf.keras ran it.

Keras 3 builds `BatchNormalization` on TensorFlow from `moments` and element-wise ops: a
dozen passes over each activation and its gradient, about a third of a ResNet-50 training
step on a CPU (BENCHMARKS.md, "Where the time goes"). tf.keras, and the official TF1 code
through slim's `batch_norm`, ran one `FusedBatchNormV3` kernel instead (oneDNN on CPU, cuDNN
on GPU), and so does this layer: in training and in inference, where TensorFlow's graph
optimizer can also fold it into the convolution before it.

Its variables and configuration are Keras' own, so checkpoints and weight files are the same
either way. The networks are built with Keras' layer (what `export.py` saves as a `.keras`
file, loadable by plain Keras); `train.py`, `embed.py` and exported SavedModels swap in this
one with `fuse`.
"""
import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package='triplet_reid')
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` computed by `FusedBatchNormV3` on channels-last 4-D
    input, and on 2-D input (a head's) seen as [N, 1, 1, C], as slim's `batch_norm` fused it;
    the other cases (a mask, renorm, synchronized moments across replicas, other ranks or
    axes) are Keras' own code.

    The moving variance averages the unbiased batch variance the op returns, as TF1 and the
    official code did (tests/test_training_equivalence.py); Keras' own layer averages the
    biased one, n/(n - 1) times smaller for n values per channel.
    """

    def fuses(self, inputs, mask):
        return (mask is None and not self.renorm and not self.synchronized
                and len(inputs.shape) in (2, 4) and self.axis in (-1, len(inputs.shape) - 1))

    def call(self, inputs, training=None, mask=None):
        if not self.fuses(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        if len(inputs.shape) == 2:
            return self.fused(inputs[:, None, None], training)[:, 0, 0]
        return self.fused(inputs, training)

    def fused(self, inputs, training):
        channels = inputs.shape[-1]
        training = bool(training and self.trainable)  # a frozen layer normalizes as in inference
        # float16/bfloat16 activations go in as they are: the op keeps its statistics in
        # float32, which is what Keras' up-cast is for.
        outputs, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=inputs, scale=self.gamma if self.scale else tf.ones([channels]),
            offset=self.beta if self.center else tf.zeros([channels]),
            mean=tf.constant([]) if training else self.moving_mean,
            variance=tf.constant([]) if training else self.moving_variance,
            epsilon=self.epsilon, is_training=training)
        if training:
            self.update_moving_statistics(mean, variance)
        return tf.cast(outputs, self.compute_dtype)

    def update_moving_statistics(self, mean, variance):
        """The moving averages of the op's batch mean and unbiased batch variance (0 where a
        channel has a single value)."""
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum
                                    + variance * (1 - self.momentum))


def fuse(model):
    """`model` with each of its batch norms (nested models included) replaced by a
    `FusedBatchNormalization` with the same configuration and weights.

    Every other layer is shared with `model`, not copied, so the two train the same weights
    and a checkpoint of either restores into the other.
    """
    replaced = []

    def clone(layer):
        if type(layer) is not keras.layers.BatchNormalization:
            return layer
        replaced.append((layer, FusedBatchNormalization.from_config(layer.get_config())))
        return replaced[-1][1]

    fused = keras.models.clone_model(model, clone_function=clone, recursive=True)
    for layer, new in replaced:
        new.set_weights(layer.get_weights())
    return fused
