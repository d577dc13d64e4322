"""MobileNet v1 (width 1.0) in TF-slim's layout, as the official `mobilenet_v1_1_224`.

Layer names follow slim's scopes (`Conv2d_0`, `Conv2d_1_depthwise`, ...) with '.' for '/'.
Preprocessing is the official one: the image divided by 255.
"""
import keras
from keras import layers

from nets.layers import preprocess

# (pointwise filters, stride) of the 13 depthwise-separable layers.
SEPARABLE = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
             (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))
BATCH_NORM = dict(momentum=0.9, epsilon=1e-3)  # the official wrapper's decay of 0.9


def bn_relu6(x, name):
    x = layers.BatchNormalization(**BATCH_NORM, name=name + '.BatchNorm')(x)
    return layers.ReLU(6.0, name=name + '.relu6')(x)


def build():
    """The backbone: raw RGB images in [0, 255] of any size to the 1024-D global average pool."""
    init = keras.initializers.TruncatedNormal(stddev=0.09)
    images = keras.Input((None, None, 3), name='images')
    x = preprocess(images, scale=1 / 255)
    x = layers.Conv2D(32, 3, 2, padding='same', use_bias=False, kernel_initializer=init,
                      name='Conv2d_0')(x)
    x = bn_relu6(x, 'Conv2d_0')
    for i, (filters, stride) in enumerate(SEPARABLE, start=1):
        name = f'Conv2d_{i}_depthwise'
        x = layers.DepthwiseConv2D(3, stride, padding='same', use_bias=False,
                                   depthwise_initializer=init, name=name)(x)
        x = bn_relu6(x, name)
        name = f'Conv2d_{i}_pointwise'
        x = layers.Conv2D(filters, 1, use_bias=False, kernel_initializer=init, name=name)(x)
        x = bn_relu6(x, name)
    x = layers.GlobalAveragePooling2D(name='global_pool')(x)
    return keras.Model(images, x, name='mobilenet_v1_1_224')
