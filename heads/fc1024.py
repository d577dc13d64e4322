"""`fc1024`: the paper's TriNet head.

Dense 1024 without bias, batch norm (momentum 0.9, epsilon 1e-5), ReLU, then a linear
embedding layer with orthogonal initialisation, as slim's fully_connected with batch norm.
"""
from keras import layers


def head(features, embedding_dim):
    x = layers.Dense(1024, use_bias=False, name='fc1024')(features)
    x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name='fc1024.BatchNorm')(x)
    x = layers.ReLU(name='fc1024.relu')(x)
    return layers.Dense(embedding_dim, kernel_initializer='orthogonal', name='emb')(x)
