"""A small LuNet-style network that trains from scratch in minutes on a CPU.

After the LuNet of Hermans et al. (2017, appendix): residual blocks with leaky ReLU, max-pool
downsampling, and no ImageNet pre-training; narrower than the paper's so that tests and the
demo run on two CPU cores. Input: RGB in [0, 255] of any size (designed for 128x64 and below).
"""
import keras
from keras import layers

from nets.layers import preprocess

WIDTHS = (32, 64, 128, 256)


def conv_bn(x, filters, kernel, name, activation=True):
    x = layers.Conv2D(filters, kernel, padding='same', use_bias=False,
                      kernel_initializer='he_normal', name=name)(x)
    x = layers.BatchNormalization(name=name + '.bn')(x)
    return layers.LeakyReLU(0.3, name=name + '.act')(x) if activation else x


def residual(x, filters, name):
    """Bottleneck block (1x1 in, 3x3, 1x1 out) with a projected shortcut when widths differ."""
    shortcut = x if x.shape[-1] == filters else conv_bn(x, filters, 1, name + '.proj', False)
    y = conv_bn(x, filters // 2, 1, name + '.a')
    y = conv_bn(y, filters // 2, 3, name + '.b')
    y = conv_bn(y, filters, 1, name + '.c', activation=False)
    return layers.LeakyReLU(0.3, name=name + '.act')(layers.Add(name=name + '.add')([shortcut, y]))


def build():
    """The backbone: raw RGB images in [0, 255] to a 256-D global average pool."""
    images = keras.Input((None, None, 3), name='images')
    x = preprocess(images, mean=(0.5, 0.5, 0.5), scale=1 / 255)
    x = conv_bn(x, WIDTHS[0], 3, 'stem')
    for i, width in enumerate(WIDTHS, start=1):
        x = residual(x, width, f'stage{i}')
        x = layers.MaxPooling2D(3, 2, padding='same', name=f'stage{i}.pool')(x)
    x = layers.GlobalAveragePooling2D(name='pool')(x)
    return keras.Model(images, x, name='lunet')
