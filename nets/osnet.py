"""OSNet, the omni-scale network of Zhou et al. (ICCV 2019, "Omni-Scale Feature Learning for
Person Re-Identification"), built from the paper's description: small enough to train from
scratch on a CPU, designed for re-ID.

Each residual bottleneck sees its input at four scales at once: T = 4 streams of 1, 2, 3 and 4
"Lite 3x3" layers (a 1x1 convolution, then a depthwise 3x3: receptive fields of 3, 5, 7 and 9),
mixed by a unified aggregation gate, one gate shared by the four streams that weighs each
stream's channels from that stream's global average (FC, ReLU, FC at 1/16 of the channels,
sigmoid). Layout (Table 1 of the paper, for width 1.0): conv1 7x7/2 (64), max pool 3x3/2; three
stages of two bottlenecks (256, 384, 512 channels), the first two followed by a transition
(1x1 convolution, 2x2 average pool/2); conv5 1x1 (512); global average pool; FC 512 with batch
norm and ReLU, the 512-D feature. `osnet_x0_75`, `osnet_x0_5` and `osnet_x0_25` scale every
width but the feature's by their multiplier. Designed for 256x128 input; works down to 32x16,
the smallest size the four halvings leave a pixel of.

Input preprocessing is lunet's (x / 255 - 0.5): these nets train from scratch here, and the
batch norm after conv1 absorbs a fixed scale and offset of the input. Batch norms use PyTorch's
defaults, as the authors' code (momentum 0.1, i.e. Keras' 0.9, epsilon 1e-5).
"""
import functools

import keras
from keras import layers

from nets.layers import preprocess

CHANNELS = (64, 256, 384, 512)  # conv1 and the three stages at width 1.0
FEATURE_DIM = 512  # the final FC's, at every width
BLOCKS_PER_STAGE = 2
STREAMS = 4  # T: stream t has t Lite 3x3 layers
BOTTLENECK_REDUCTION = 4  # a bottleneck's streams run at 1/4 of its output channels
GATE_REDUCTION = 16
BATCH_NORM = dict(momentum=0.9, epsilon=1e-5)
# Keras counts a depthwise kernel [3, 3, C, 1] as fan-in 9C; its true fan-in (and Keras'
# fan-out) is 9, what He initialisation is meant for.
DEPTHWISE_INIT = keras.initializers.VarianceScaling(2.0, 'fan_out', 'truncated_normal')


def batch_norm(x, name, activation=True):
    x = layers.BatchNormalization(**BATCH_NORM, name=name + '.bn')(x)
    return layers.ReLU(name=name + '.relu')(x) if activation else x


def conv_bn(x, filters, kernel, name, stride=1, activation=True):
    x = layers.Conv2D(filters, kernel, stride, padding='same', use_bias=False,
                      kernel_initializer='he_normal', name=name)(x)
    return batch_norm(x, name, activation)


def lite_3x3(x, filters, name):
    """Lite 3x3: a linear 1x1 convolution, then a depthwise 3x3 with batch norm and ReLU."""
    x = layers.Conv2D(filters, 1, use_bias=False, kernel_initializer='he_normal',
                      name=name + '.pointwise')(x)
    x = layers.DepthwiseConv2D(3, padding='same', use_bias=False,
                               depthwise_initializer=DEPTHWISE_INIT, name=name)(x)
    return batch_norm(x, name)


def aggregation_gate(channels, name):
    """The unified aggregation gate of a bottleneck: a function of a stream (and its name) to
    that stream with each channel scaled by a weight in (0, 1) computed from the stream's own
    global average. Its layers are shared by all the streams it is applied to."""
    pool = layers.GlobalAveragePooling2D(keepdims=True, name=name + '.pool')
    squeeze = layers.Dense(channels // GATE_REDUCTION, activation='relu', name=name + '.fc1')
    excite = layers.Dense(channels, activation='sigmoid', name=name + '.fc2')

    def gate(stream, stream_name):
        return layers.Multiply(name=stream_name + '.gated')([stream, excite(squeeze(pool(stream)))])
    return gate


def omni_scale_bottleneck(x, filters, name):
    """1x1 down to filters/4, the T gated streams summed, linear 1x1 up to `filters`, plus the
    shortcut (a linear 1x1 projection where the widths differ), ReLU."""
    middle = filters // BOTTLENECK_REDUCTION
    reduced = conv_bn(x, middle, 1, name + '.conv1')
    gate = aggregation_gate(middle, name + '.gate')
    streams = []
    for t in range(1, STREAMS + 1):
        stream = reduced
        for i in range(1, t + 1):
            stream = lite_3x3(stream, middle, f'{name}.stream{t}.lite{i}')
        streams.append(gate(stream, f'{name}.stream{t}'))
    y = conv_bn(layers.Add(name=name + '.aggregate')(streams), filters, 1, name + '.conv3',
                activation=False)
    shortcut = x if x.shape[-1] == filters else conv_bn(x, filters, 1, name + '.downsample',
                                                        activation=False)
    return layers.ReLU(name=name + '.relu')(layers.Add(name=name + '.add')([shortcut, y]))


def stage(x, filters, name, transition):
    for b in range(1, BLOCKS_PER_STAGE + 1):
        x = omni_scale_bottleneck(x, filters, f'{name}.block{b}')
    if transition:
        x = conv_bn(x, filters, 1, name + '.transition')
        x = layers.AveragePooling2D(2, name=name + '.transition.pool')(x)
    return x


def build(width, name):
    """The backbone at `width` (a multiplier of the channels): raw RGB images in [0, 255] to
    the 512-D feature."""
    channels = [round(c * width) for c in CHANNELS]
    images = keras.Input((None, None, 3), name='images')
    x = preprocess(images, mean=(0.5, 0.5, 0.5), scale=1 / 255)
    x = conv_bn(x, channels[0], 7, 'conv1', stride=2)
    x = layers.MaxPooling2D(3, 2, padding='same', name='pool1')(x)
    for i, filters in enumerate(channels[1:], start=2):
        x = stage(x, filters, f'conv{i}', transition=i < 4)
    x = conv_bn(x, channels[3], 1, 'conv5')
    x = layers.GlobalAveragePooling2D(name='pool')(x)
    # No bias before a batch norm (its shift is the bias).
    x = layers.Dense(FEATURE_DIM, use_bias=False, kernel_initializer='he_normal', name='fc')(x)
    return keras.Model(images, batch_norm(x, 'fc'), name=name)


osnet_x1_0 = functools.partial(build, 1.0, 'osnet_x1_0')
osnet_x0_75 = functools.partial(build, 0.75, 'osnet_x0_75')
osnet_x0_5 = functools.partial(build, 0.5, 'osnet_x0_5')
osnet_x0_25 = functools.partial(build, 0.25, 'osnet_x0_25')
