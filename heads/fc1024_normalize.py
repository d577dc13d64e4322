"""`fc1024_normalize`: the `fc1024` head with an L2-normalised embedding."""
import keras

from heads import fc1024


def head(features, embedding_dim):
    return keras.layers.UnitNormalization(name='emb_normalized')(
        fc1024.head(features, embedding_dim))
