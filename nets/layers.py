"""Pieces the backbones share."""
import numpy as np
from keras import initializers, layers


def preprocess(images, mean=(0.0, 0.0, 0.0), scale=1.0, bgr=False):
    """Map raw RGB images in [0, 255] to what a backbone was trained on.

    `(x[..., ::-1] if bgr else x) * scale - mean`, built from core Keras layers only, so that
    every model takes the same input and an exported model loads with plain Keras.
    """
    if bgr:  # a fixed 1x1 convolution that reverses the channels, exactly
        images = layers.Conv2D(3, 1, use_bias=False, trainable=False, name='rgb_to_bgr',
                               kernel_initializer=initializers.Constant(
                                   np.eye(3)[::-1].reshape(1, 1, 3, 3)))(images)
    return layers.Rescaling(scale, offset=[-float(m) for m in mean], name='preprocess')(images)
