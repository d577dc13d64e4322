"""Reference networks built with TF-slim in TF1 graph mode, saved as TF1 checkpoints.

They stand in for the files users bring: slim's ImageNet checkpoints (`resnet_v1_50.ckpt`, a V1
file; `mobilenet_v1_1.0_224.ckpt`, a V2 prefix) and the official code's training checkpoints
(`checkpoint-25000`: backbone, head, Adam slots, global_step). They have the variable names of
those files, random weights and random batch-norm statistics (so a wrong mapping shows), and
give the reference embeddings our imported models must reproduce.

Needs `tf-slim` and `tf-keras` (the version of TensorFlow). Two aliases, here only, make
tf-slim 1.1 run on today's TensorFlow: TensorFlow's legacy `layers.normalization` loads
`tf_keras.legacy_tf_layers`, which tf-keras now keeps under `tf_keras.src`; and tf-slim checks
`ops.Tensor`, which TensorFlow has moved to `tf.Tensor`.
"""
import importlib
import sys
import warnings

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import ops

for _name in ('legacy_tf_layers', 'legacy_tf_layers.normalization'):
    sys.modules.setdefault('tf_keras.' + _name, importlib.import_module('tf_keras.src.' + _name))
if not hasattr(ops, 'Tensor'):
    ops.Tensor = tf.Tensor

import tf_slim as slim  # noqa: E402
from tf_slim.nets import resnet_v1  # noqa: E402

from nets import resnet_v1 as our_resnet_v1  # noqa: E402

tf1 = tf.compat.v1
RGB_MEAN = (123.68, 116.78, 103.94)  # the official code's
# slim's MobileNet v1 body after Conv2d_0: (stride, depth) of each depthwise-separable layer.
MOBILENET_SEPARABLE = [(1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512)] + \
    [(1, 512)] * 5 + [(2, 1024), (1, 1024)]
# Units per block of the small ResNets: every kind of unit (1x1 or strided-pool shortcut,
# strided 3x3) and block, in a fraction of the time of the 16 units of ResNet-50.
SMALL_UNITS = (2, 1, 1, 1)


def use_small_resnets(monkeypatch):
    """Make our `resnet_v1_50` and `resnet_v1_101` builders build `SMALL_UNITS` for a test."""
    for depth in (50, 101):
        monkeypatch.setitem(our_resnet_v1.BLOCK_UNITS, depth, SMALL_UNITS)


def resnet(images, scope='resnet_v1_50', units=None, num_classes=None):
    """The official `resnet_v1_50.endpoints` (inference): mean subtraction, slim's ResNet v1,
    the mean over block4. `units` replaces slim's units per block (3, 4, 6, 3) to keep it small.
    """
    images = images - tf.constant(RGB_MEAN, shape=(1, 1, 1, 3))
    with slim.arg_scope(resnet_v1.resnet_arg_scope(batch_norm_decay=0.9, weight_decay=0.0)):
        if units is None:
            _, endpoints = getattr(resnet_v1, scope)(images, num_classes, is_training=False)
        else:
            blocks = [resnet_v1.resnet_v1_block(f'block{i}', base_depth=depth, num_units=n,
                                                stride=stride)
                      for i, (depth, n, stride) in enumerate(
                          zip((64, 128, 256, 512), units, (2, 2, 2, 1)), start=1)]
            _, endpoints = resnet_v1.resnet_v1(images, blocks, num_classes, is_training=False,
                                               scope=scope)
    return tf.reduce_mean(endpoints[scope + '/block4'], [1, 2])


def mobilenet(images, num_classes=1001):
    """The official `mobilenet_v1_1_224.endpoints` (inference): slim's MobileNet v1 on
    images / 255 with the official arg scope, its ImageNet logits, the mean over the last layer.
    """
    batch_norm = dict(is_training=False, center=True, scale=True, decay=0.9, epsilon=0.001)
    with tf1.variable_scope('MobilenetV1'), \
            slim.arg_scope([slim.conv2d, slim.separable_conv2d], padding='SAME',
                           activation_fn=tf.nn.relu6, normalizer_fn=slim.batch_norm), \
            slim.arg_scope([slim.batch_norm], **batch_norm):
        net = slim.conv2d(images / 255.0, 32, [3, 3], stride=2, scope='Conv2d_0')
        for i, (stride, depth) in enumerate(MOBILENET_SEPARABLE, start=1):
            net = slim.separable_conv2d(net, None, [3, 3], depth_multiplier=1, stride=stride,
                                        scope=f'Conv2d_{i}_depthwise')
            net = slim.conv2d(net, depth, [1, 1], scope=f'Conv2d_{i}_pointwise')
        features = tf.reduce_mean(net, [1, 2])
        slim.conv2d(features[:, None, None], num_classes, [1, 1], activation_fn=None,
                    normalizer_fn=None, scope='Logits/Conv2d_1c_1x1')
    return features


def official_head(features, head_name, embedding_dim):
    """The official `fc1024` or `direct` head, built under `tf.name_scope('head')` as train.py."""
    with tf1.name_scope('head'):
        if head_name == 'fc1024':
            features = slim.fully_connected(
                features, 1024, normalizer_fn=slim.batch_norm,
                normalizer_params=dict(decay=0.9, epsilon=1e-5, scale=True, is_training=False))
        return slim.fully_connected(features, embedding_dim, activation_fn=None, scope='emb')


def random_value(name, shape, rng):
    """He-scaled weights, small biases, and batch-norm parameters and statistics far from
    their defaults (gamma 1, beta 0, mean 0, variance 1), all distinct per channel."""
    role = name.split('/')[-1]
    if role in ('weights', 'depthwise_weights'):
        fan_in = np.prod(shape[:-2] if role == 'depthwise_weights' else shape[:-1])
        return rng.normal(0, np.sqrt(2 / fan_in), shape)
    low_high = {'gamma': (0.5, 1.5), 'moving_variance': (0.5, 2.0)}
    if role in low_high:
        return rng.uniform(*low_high[role], shape)
    return rng.normal(0, 0.3, shape)  # beta, moving_mean, biases, optimizer slots


def save_reference(path, build, images, seed=0, v1=False, optimizer=False):
    """Build `build(images)` in a TF1 graph, randomise every variable, save it to `path` with
    `tf.compat.v1.train.Saver` and return the outputs on `images` (floats in [0, 255]).

    `v1`: TF1's old one-file format; `optimizer`: add `global_step` and Adam's slots, as the
    official training checkpoints have them.
    """
    rng = np.random.default_rng(seed)
    with tf.Graph().as_default(), tf1.Session() as sess:
        inputs = tf1.placeholder(tf.float32, (None,) + images.shape[1:])
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', '`layer.apply` is deprecated')  # tf-slim's
            outputs = build(inputs)
        if optimizer:
            tf1.train.AdamOptimizer().minimize(tf.reduce_mean(outputs),
                                               tf1.train.get_or_create_global_step())
        sess.run(tf1.global_variables_initializer())
        for variable in tf1.global_variables():
            if variable.dtype.base_dtype == tf.float32:
                value = random_value(variable.op.name, variable.shape.as_list(), rng)
                sess.run(variable.initializer, {variable.initial_value: value})
        tf1.train.Saver(write_version=tf1.train.SaverDef.V1 if v1 else tf1.train.SaverDef.V2
                        ).save(sess, path, write_meta_graph=False, write_state=False)
        return sess.run(outputs, {inputs: images})


def rewrite_checkpoint(source, path, change):
    """Copy the checkpoint `source` to `path` with `change({name: array})` applied first."""
    reader = tf.train.load_checkpoint(source)
    tensors = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
    change(tensors)
    with tf.Graph().as_default(), tf1.Session() as sess:
        variables = {name: tf1.Variable(value) for name, value in tensors.items()}
        sess.run(tf1.global_variables_initializer())
        tf1.train.Saver(variables).save(sess, path, write_meta_graph=False, write_state=False)


def random_images(count, height, width, centre=127.5, spread=127.5, seed=0):
    """Whole-numbered pixels, uniform in centre +- spread (per channel if `centre` is).

    Near `RGB_MEAN`, ResNet's preprocessed inputs, and so its activations, stay small, so that
    the batch-norm offsets (beta, moving mean) weigh as much in the output as the weights do.
    """
    noise = np.random.default_rng(seed).uniform(-spread, spread, (count, height, width, 3))
    return np.clip(np.round(np.asarray(centre) + noise), 0, 255).astype(np.float32)


def relative_difference(ours, reference):
    """max |ours - reference| over max |reference|: one figure for a whole embedding batch."""
    return float(np.max(np.abs(np.asarray(ours) - reference)) / np.max(np.abs(reference)))
