"""ResNet v1 in TF-slim's layout (`resnet_v1_50`, `resnet_v1_101`), as the official code used.

Unlike Keras Applications' ResNet50, slim puts each block's stride in the *last* unit, inside
the 3x3 convolution, and pads stride-2 convolutions explicitly. Layer names follow slim's
variable scopes with '.' for '/', so TF-slim ImageNet checkpoints map onto them by name.
"""
import keras
from keras import layers

from nets.layers import preprocess

# The ImageNet RGB means the official code subtracts.
RGB_MEAN = (123.68, 116.78, 103.94)
BLOCK_UNITS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
BLOCK_STRIDES = (2, 2, 2, 1)  # the third is the "last stride" (before block4)
BATCH_NORM = dict(momentum=0.9, epsilon=1e-5)  # the official arg scope's decay of 0.9


def conv_bn(x, filters, kernel, stride, name, activation=True):
    """slim's conv2d(+batch norm, +ReLU); `conv2d_same` padding when strided."""
    if stride > 1 and kernel > 1:
        pad = kernel - 1
        x = layers.ZeroPadding2D(((pad // 2, pad - pad // 2),) * 2, name=name + '.pad')(x)
        padding = 'valid'
    else:
        padding = 'same'
    x = layers.Conv2D(filters, kernel, stride, padding=padding, use_bias=False,
                      kernel_initializer='he_normal', name=name)(x)
    x = layers.BatchNormalization(**BATCH_NORM, name=name + '.BatchNorm')(x)
    return layers.ReLU(name=name + '.relu')(x) if activation else x


def bottleneck(x, depth, stride, name):
    """slim's `bottleneck` v1 unit: 1x1, strided 3x3, 1x1 (x4 depth), plus the shortcut."""
    name += '.bottleneck_v1'
    if x.shape[-1] == depth:
        shortcut = x if stride == 1 else layers.MaxPooling2D(1, stride, name=name + '.shortcut')(x)
    else:
        shortcut = conv_bn(x, depth, 1, stride, name + '.shortcut', activation=False)
    residual = conv_bn(x, depth // 4, 1, 1, name + '.conv1')
    residual = conv_bn(residual, depth // 4, 3, stride, name + '.conv2')
    residual = conv_bn(residual, depth, 1, 1, name + '.conv3', activation=False)
    return layers.ReLU(name=name + '.relu')(layers.Add(name=name + '.add')([shortcut, residual]))


def build(depth, last_stride=2):
    """The backbone: raw RGB images in [0, 255] of any size to the 2048-D global average pool.

    `last_stride` 1 keeps block4 at block3's resolution (output stride 16 instead of 32), as
    the Bag-of-Tricks baseline does; the weights are the same, so ImageNet checkpoints fit.
    """
    strides = BLOCK_STRIDES[:2] + (last_stride,) + BLOCK_STRIDES[3:]
    images = keras.Input((None, None, 3), name='images')
    x = preprocess(images, mean=RGB_MEAN)
    x = conv_bn(x, 64, 7, 2, 'conv1')
    x = layers.MaxPooling2D(3, 2, padding='same', name='pool1')(x)
    for b, (units, stride) in enumerate(zip(BLOCK_UNITS[depth], strides), start=1):
        for u in range(1, units + 1):
            x = bottleneck(x, 256 * 2 ** (b - 1), stride if u == units else 1,
                           f'block{b}.unit_{u}')
    x = layers.GlobalAveragePooling2D(name='pool5')(x)
    return keras.Model(images, x, name=f'resnet_v1_{depth}')


def resnet_v1_50(last_stride=2):
    return build(50, last_stride)


def resnet_v1_101(last_stride=2):
    return build(101, last_stride)
