"""`bnneck`: the BNNeck of the Bag-of-Tricks strong baseline (Luo et al. 2019).

The triplet loss (and center loss) see the feature before a batch norm; the identity
classifier and retrieval use the feature after it. Normalising only for the classifier lets
the two losses pull on differently scaled copies of one feature, which is what made them
combine well. As there, the batch norm has no shift (beta), so the feature is not biased away
from the origin.

The feature is the backbone's pooled vector itself when `embedding_dim` equals its width (2048
for the ResNets: the baseline as published); otherwise a linear layer maps it to
`embedding_dim` first. Training takes the pre-BN feature from the layer named `bnneck`'s input
(`tripletreid.model.training_model`).
"""
import keras

NAME = 'bnneck'


def head(features, embedding_dim):
    if features.shape[-1] != embedding_dim:
        features = keras.layers.Dense(embedding_dim, kernel_initializer='orthogonal',
                                      name='emb')(features)
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, center=False,
                                           name=NAME)(features)
