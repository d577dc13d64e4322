"""`direct`: a linear embedding layer on the backbone's features, as the official head."""
import keras


def head(features, embedding_dim):
    return keras.layers.Dense(embedding_dim, kernel_initializer='orthogonal', name='emb')(features)
