"""`direct_normalize`: the `direct` head with an L2-normalised embedding."""
import keras

from heads import direct


def head(features, embedding_dim):
    return keras.layers.UnitNormalization(name='emb_normalized')(
        direct.head(features, embedding_dim))
