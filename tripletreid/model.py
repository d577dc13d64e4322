"""The embedding network: a backbone from `nets/` followed by a head from `heads/`."""
import functools
import os

import keras

from heads import HEADS, bnneck
from nets import BUILDS_WITH_WEIGHTS, NETS, check_last_stride
from tripletreid import slim_checkpoint
from tripletreid.errors import InputError
from tripletreid.keras_weights import build_with_own_loader, load_keras_weights


def build_backbone(name, initial_checkpoint=None, last_stride=2):
    """The backbone `name`, with weights from `initial_checkpoint` if given.

    That is a local Keras `.h5` file, or a TF1 checkpoint (slim's ImageNet files) by its prefix.
    """
    build = NETS[name]
    check_last_stride(name, last_stride)
    if last_stride != 2:
        build = functools.partial(build, last_stride=last_stride)
    if initial_checkpoint and slim_checkpoint.is_tf_checkpoint(initial_checkpoint):
        return slim_checkpoint.load_backbone(build(), initial_checkpoint)
    if initial_checkpoint and not os.path.isfile(initial_checkpoint):
        raise InputError(f'--initial_checkpoint {initial_checkpoint}: no such file')
    if name in BUILDS_WITH_WEIGHTS:
        return build_with_own_loader(build, name, initial_checkpoint)
    backbone = build()
    if initial_checkpoint:
        load_keras_weights(backbone, initial_checkpoint)
    return backbone


def build_model(model_name, head_name, embedding_dim, initial_checkpoint=None, last_stride=2):
    """Raw RGB images in [0, 255] of any size to `embedding_dim`-D embeddings."""
    backbone = build_backbone(model_name, initial_checkpoint, last_stride)
    images = keras.Input((None, None, 3), name='images')
    embeddings = HEADS[head_name](backbone(images), embedding_dim)
    return keras.Model(images, embeddings, name=f'{model_name}_{head_name}')


def training_model(model):
    """A function of (images, training) giving the feature the metric losses train and the
    embedding.

    They are one tensor, except after a BNNeck (`heads/bnneck.py`), where the metric losses
    take the feature before its batch norm and the embedding (for the identity classifier and
    for retrieval) is the one after it. The layers are shared: training through this function
    trains `model`.
    """
    if bnneck.NAME not in [layer.name for layer in model.layers]:
        def same(images, training=False):
            embeddings = model(images, training=training)
            return embeddings, embeddings
        return same
    neck = model.get_layer(bnneck.NAME)
    return keras.Model(model.input, [neck.input, model.output], name=f'{model.name}_training')
