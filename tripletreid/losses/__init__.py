"""Training losses by name, as `--loss` (and `--id_loss`, `--verification_pair`) choose them.

A `LOSSES` loss takes the pairwise distances of a batch, the identity of each row, the margin
and a stateless seed (for the losses that sample), and returns one value per anchor. A new loss
is a function in a new file of this folder plus one line here. `tripletreid.keras_losses` offers
each of them to `model.fit` as a `keras.losses.Loss`.
"""
from tripletreid.registry import Registry

LOSSES = Registry({
    'batch_hard': 'tripletreid.losses.triplet:batch_hard',
    'batch_all': 'tripletreid.losses.triplet:batch_all',
    'batch_all_nonzero': 'tripletreid.losses.triplet:batch_all_nonzero',
    'batch_sample': 'tripletreid.losses.triplet:batch_sample',
    'batch_semi_hard': 'tripletreid.losses.triplet:batch_semi_hard',
})

# The identity classifier's logits, as `--id_loss` chooses them: a function of (embeddings,
# classifier kernel [D, identities], labels, scale, margin).
ID_LOSSES = Registry({
    'softmax': 'tripletreid.losses.identity:linear_logits',
    'arcface': 'tripletreid.losses.margins:arcface_logits',
    'cosface': 'tripletreid.losses.margins:cosface_logits',
})

# What the verification classifier of `--verification_loss_weight` sees of a pair of
# embeddings, as `--verification_pair` chooses it.
PAIR_FEATURES = Registry({
    'product': 'tripletreid.losses.siamese:product',
    'squared_difference': 'tripletreid.losses.siamese:squared_difference',
})
