"""The embedding network: a backbone from `nets/` followed by a head from `heads/`."""
import keras

from heads import HEADS
from nets import build_backbone


def build_model(model_name, head_name, embedding_dim, initial_checkpoint=None, last_stride=2):
    """Raw RGB images in [0, 255] of any size to `embedding_dim`-D embeddings."""
    backbone = build_backbone(model_name, initial_checkpoint, last_stride)
    images = keras.Input((None, None, 3), name='images')
    embeddings = HEADS[head_name](backbone(images), embedding_dim)
    return keras.Model(images, embeddings, name=f'{model_name}_{head_name}')
