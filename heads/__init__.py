"""Embedding heads by name, as `--head_name` chooses them.

A head maps the backbone's feature tensor to the embedding (Keras functional layers). A new
head is one new file plus one line here.
"""
from tripletreid.registry import Registry

HEADS = Registry({
    'bnneck': 'heads.bnneck:head',
    'direct': 'heads.direct:head',
    'direct_normalize': 'heads.direct_normalize:head',
    'fc1024': 'heads.fc1024:head',
    'fc1024_normalize': 'heads.fc1024_normalize:head',
})
