"""How the embeddings of an image's test-time views ([views, N, D]) become one ([N, D])."""
import numpy as np


def mean(embs):
    return np.mean(embs, axis=0)


def normalized_mean(embs):
    """The mean, scaled to unit length (for heads trained on normalised embeddings)."""
    embs = mean(embs)
    return embs / np.linalg.norm(embs, axis=1, keepdims=True)


AGGREGATORS = {
    'mean': mean,
    'normalized_mean': normalized_mean,
}
