"""Training losses by name, as `--loss` chooses them.

A loss takes the pairwise distances of a batch, the identity of each row, the margin and a
stateless seed (for the losses that sample), and returns one value per anchor. A new loss is a
function in a new file of this folder plus one line here.
"""
from tripletreid.registry import Registry

LOSSES = Registry({
    'batch_hard': 'tripletreid.losses.triplet:batch_hard',
    'batch_all': 'tripletreid.losses.triplet:batch_all',
    'batch_all_nonzero': 'tripletreid.losses.triplet:batch_all_nonzero',
    'batch_sample': 'tripletreid.losses.triplet:batch_sample',
})
