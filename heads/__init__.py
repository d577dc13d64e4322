"""Embedding heads by name, as `--head_name` chooses them.

A head maps the backbone's feature tensor to the embedding (Keras functional layers). A new
head is one new file plus one line here.
"""
from heads import bnneck, direct, direct_normalize, fc1024, fc1024_normalize

HEADS = {
    'bnneck': bnneck.head,
    'direct': direct.head,
    'direct_normalize': direct_normalize.head,
    'fc1024': fc1024.head,
    'fc1024_normalize': fc1024_normalize.head,
}
