"""The official TF1 training step, rebuilt with tf-slim in a TF1 graph of its own.

It reproduces what the official code (VisualComputingInstitute/triplet-reid, `train.py`) runs
each iteration, so that ours can be run beside it step for step: the backbone in training mode
(`nets/resnet_v1_50.py`, `nets/mobilenet_v1_1_224.py`: their preprocessing and arg scopes), the
`fc1024` head, the pairwise distances and the batch-hard loss, TF1's Adam (epsilon 1e-8) on the
mean loss with the paper's learning-rate decay, and the batch-norm updates (the UPDATE_OPS) as
control dependencies of the train op. Batches are fed rather than read by the official input
pipeline; `official_image` is its loading of one image.

Left out because they cannot change a step: MobileNet's ImageNet logits and their dropout (the
loss does not reach them, so TF1's Adam skips their variables) and the monitoring values.

The loss is written here from the paper's formula rather than taken from the official `loss.py`
(whose closest negative goes through `map_fn` and `boolean_mask`): the same values and gradient.
"""
import functools
import warnings

import tensorflow as tf
from helpers import slim_reference as ref  # also makes tf-slim importable on today's TF

slim = ref.slim
tf1 = tf.compat.v1
# TF 1.x's `tf.nn.fused_batch_norm`, which slim's batch norm ran in training and inference,
# raised every epsilon to at least this (a cuDNN limit); today's TensorFlow does not.
TF1_MIN_EPSILON = 1.001e-5
RESNET_UNITS = (3, 4, 6, 3)  # resnet_v1_50's units per block


def resnet(images, units=RESNET_UNITS, min_epsilon=0.0):
    """The official `resnet_v1_50.endpoints` in training: ImageNet mean subtracted, slim's
    ResNet v1 with batch-norm decay 0.9, the mean over block4. Fewer `units` per block give a
    small ResNet with every kind of unit, which trains in a fraction of the time."""
    images = images - tf.constant(ref.RGB_MEAN, shape=(1, 1, 1, 3))
    blocks = [ref.resnet_v1.resnet_v1_block(f'block{i}', base_depth=depth, num_units=n,
                                            stride=stride)
              for i, (depth, n, stride) in enumerate(
                  zip((64, 128, 256, 512), units, (2, 2, 2, 1)), start=1)]
    scope = ref.resnet_v1.resnet_arg_scope(batch_norm_decay=0.9, weight_decay=0.0,
                                           batch_norm_epsilon=max(1e-5, min_epsilon))
    with slim.arg_scope(scope):
        _, endpoints = ref.resnet_v1.resnet_v1(images, blocks, None, is_training=True,
                                               scope='resnet_v1_50')
    return tf.reduce_mean(endpoints['resnet_v1_50/block4'], [1, 2])


def mobilenet(images, min_epsilon=0.0):
    """The official `mobilenet_v1_1_224.endpoints` in training: slim's MobileNet v1 layers on
    images / 255 with the official arg scope (batch-norm decay 0.9, epsilon 1e-3, ReLU6), the
    mean over the last layer."""
    batch_norm = {'is_training': True, 'center': True, 'scale': True, 'decay': 0.9,
                  'epsilon': max(1e-3, min_epsilon)}
    with tf1.variable_scope('MobilenetV1'), \
            slim.arg_scope([slim.conv2d, slim.separable_conv2d], padding='SAME',
                           activation_fn=tf.nn.relu6, normalizer_fn=slim.batch_norm), \
            slim.arg_scope([slim.batch_norm], **batch_norm):
        net = slim.conv2d(images / 255.0, 32, [3, 3], stride=2, scope='Conv2d_0')
        for i, (stride, depth) in enumerate(ref.MOBILENET_SEPARABLE, start=1):
            net = slim.separable_conv2d(net, None, [3, 3], depth_multiplier=1, stride=stride,
                                        scope=f'Conv2d_{i}_depthwise')
            net = slim.conv2d(net, depth, [1, 1], scope=f'Conv2d_{i}_pointwise')
    return tf.reduce_mean(net, [1, 2])


# The official backbones by the name of ours; the small ResNet has resnet_v1_50's scope.
BACKBONES = {
    'resnet_v1_50': resnet,
    'small_resnet': functools.partial(resnet, units=ref.SMALL_UNITS),
    'mobilenet_v1_1_224': mobilenet,
}


def head(features, embedding_dim, min_epsilon=0.0):
    """The official `fc1024` head in training, under `tf.name_scope('head')` as train.py builds
    it: slim.fully_connected 1024 with batch norm (decay 0.9, epsilon 1e-5, gamma) and ReLU,
    then the linear embedding `emb`."""
    batch_norm = {'decay': 0.9, 'epsilon': max(1e-5, min_epsilon), 'scale': True,
                  'is_training': True, 'updates_collections': tf1.GraphKeys.UPDATE_OPS}
    with tf1.name_scope('head'):
        hidden = slim.fully_connected(features, 1024, normalizer_fn=slim.batch_norm,
                                      normalizer_params=batch_norm)
        return slim.fully_connected(hidden, embedding_dim, activation_fn=None, scope='emb')


def cdist(a, b, metric):
    """The official pairwise distances: euclidean with 1e-12 under the root, or squared."""
    squares = tf.reduce_sum(tf.square(a[:, None] - b[None]), axis=-1)
    if metric == 'sqeuclidean':
        return squares
    if metric == 'euclidean':
        return tf.sqrt(squares + 1e-12)
    raise ValueError(f'metric {metric!r} is not rebuilt here')


def batch_hard(dists, pids, margin):
    """Eq. 5 of the paper per anchor a: margin(max_p D(a, p) - min_n D(a, n)), p over a's other
    images, n over the other identities' images; `margin` a float (hinge), 'soft' (softplus)
    or 'none'."""
    same = tf.equal(pids[:, None], pids[None])
    positive = tf.logical_and(same, tf.logical_not(tf.eye(tf.shape(pids)[0], dtype=tf.bool)))
    hardest_positive = tf.reduce_max(tf.where(positive, dists, float('-inf')), axis=1)
    hardest_negative = tf.reduce_min(tf.where(same, float('inf'), dists), axis=1)
    diff = hardest_positive - hardest_negative
    if margin == 'soft':
        return tf.nn.softplus(diff)
    if margin == 'none':
        return diff
    return tf.maximum(diff + float(margin), 0.0)


def paper_learning_rate(global_step, initial, decay_start, iterations):
    """The official schedule: constant, then exponential decay to 0.001x at `iterations`;
    constant when `decay_start` is not in [0, iterations)."""
    if not 0 <= decay_start < iterations:
        return initial
    return tf1.train.exponential_decay(initial, tf.maximum(0, global_step - decay_start),
                                       iterations - decay_start, 0.001)


def official_image(path, size):
    """The official `common.fid_to_image`: the JPEG decoded, then TF1's `resize_images`
    (bilinear without half-pixel centres) to `size`, as float32 in [0, 255]."""
    image = tf.image.decode_jpeg(tf.io.read_file(path), channels=3)
    return tf1.image.resize_images(image, size)


class OfficialTraining:
    """The official training graph and a session on it (closed on leaving a `with` block).

    `backbone` names an entry of `BACKBONES`; `learning_rate`, `decay_start` and `iterations`
    are the flags of the paper's schedule. `min_epsilon` raises every batch-norm epsilon as
    TF 1.x did (`TF1_MIN_EPSILON`); by default they are the official code's.
    """

    def __init__(self, backbone, embedding_dim, margin='soft', metric='euclidean',
                 learning_rate=3e-4, decay_start=15000, iterations=25000, min_epsilon=0.0):
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.images = tf1.placeholder(tf.float32, (None, None, None, 3))
            self.pids = tf1.placeholder(tf.int32, (None,))
            with warnings.catch_warnings():
                warnings.filterwarnings('ignore', '`layer.apply` is deprecated')  # tf-slim's
                features = BACKBONES[backbone](self.images, min_epsilon=min_epsilon)
            self.embeddings = head(features, embedding_dim, min_epsilon)
            self.losses = batch_hard(cdist(self.embeddings, self.embeddings, metric), self.pids,
                                     margin)
            self.model_names = {v.op.name for v in tf1.global_variables()}
            global_step = tf1.Variable(0, name='global_step', trainable=False)
            optimizer = tf1.train.AdamOptimizer(
                paper_learning_rate(global_step, learning_rate, decay_start, iterations),
                epsilon=1e-8)
            with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
                self.train_op = optimizer.minimize(tf.reduce_mean(self.losses), global_step)
            self.variables = {v.op.name: v for v in tf1.global_variables()}
            # Grappler's default rewrites, as our tf.function gets them: without them
            # MobileNet's gradients round differently.
            self.session = tf1.Session()
            self.session.run(tf1.global_variables_initializer())

    def load(self, values):
        """Set variables from `values` ({official name: array}): every variable of the network
        (an unknown or a missing name is an error), optionally the optimizer's."""
        unknown, missing = set(values) - set(self.variables), self.model_names - set(values)
        if unknown or missing:
            raise KeyError(f'not in the official graph: {sorted(unknown)}; '
                           f'not given: {sorted(missing)}')
        with self.graph.as_default():  # where the variables' initial values can be fed
            variables = [self.variables[name] for name in values]
            self.session.run([variable.initializer for variable in variables],
                             {variable.initial_value: value
                              for variable, value in zip(variables, values.values())})

    def step(self, images, pids):
        """One training iteration on a batch: the losses of its anchors, before the update."""
        _, losses = self.session.run([self.train_op, self.losses],
                                     {self.images: images, self.pids: pids})
        return losses

    def outputs(self, images, pids):
        """The embeddings and losses of a batch in training mode, without training."""
        return self.session.run([self.embeddings, self.losses],
                                {self.images: images, self.pids: pids})

    def state(self):
        """Every variable by its official name: the network's, Adam's slots (`<name>/Adam`,
        `<name>/Adam_1`) and powers (`beta1_power`, `beta2_power`), and `global_step`."""
        return self.session.run(self.variables)

    def __enter__(self):
        return self

    def __exit__(self, *exception):
        self.session.close()
