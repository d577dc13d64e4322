"""What the benchmarks time, shared by the bench scripts: our training step, input pipeline and
the synthetic images they run on, and the PyTorch contenders."""
import contextlib
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib
from benchlib import Contender, Task

SIZES = {'lunet': (128, 64)}  # input size by network; the others 256x128


@contextlib.contextmanager
def demo_images(num_ids=100):
    """A temporary folder of synthetic Market-style 128x64 JPEGs; yields (csv, root)."""
    from data.demo_set import make_demo_dataset
    with tempfile.TemporaryDirectory(prefix='bench_images_') as root:
        make_demo_dataset(root, num_train_ids=num_ids, num_test_ids=2)
        yield os.path.join(root, 'market1501_train.csv'), root


def train_args(csv, image_root, model_name='resnet_v1_50', height=256, width=128,
               batch_p=18, batch_k=4, loading_threads=2):
    """train.py's flags for a bench run: flip and crop augmentation, pre-crop 9/8 the input."""
    from tripletreid import experiment
    flags = experiment.build_train_parser().parse_args([
        '--experiment_root', image_root, '--train_set', csv, '--image_root', image_root,
        '--model_name', model_name, '--batch_p', str(batch_p), '--batch_k', str(batch_k),
        '--net_input_height', str(height), '--net_input_width', str(width),
        '--pre_crop_height', str(height * 9 // 8), '--pre_crop_width', str(width * 9 // 8),
        '--flip_augment', '--crop_augment', '--loading_threads', str(loading_threads),
        '--seed', '0'])
    return experiment.TrainConfig(**vars(flags))


def configure_tensorflow(intra_op=None, inter_op=None):
    """Thread pools: must be set before TensorFlow runs anything."""
    from tripletreid import cli
    cli.quiet_tensorflow()
    import tensorflow as tf
    if intra_op:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)
    if inter_op:
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)


def jit_step(model, optimizer, args):
    """train.py's step with its gradient and update compiled by XLA (`jit_compile=True`); the
    in-batch monitoring (tf.unique, boolean masks: dynamic shapes XLA refuses) stays outside.
    For the official recipe (no BNNeck, no identity losses) only."""
    import tensorflow as tf
    from tripletreid.losses import LOSSES
    from tripletreid.losses.triplet import cdist, monitoring

    @tf.function(jit_compile=True)
    def update(images, labels):
        with tf.GradientTape() as tape:
            embeddings = tf.cast(model(images, training=True), tf.float32)
            dists = cdist(embeddings, embeddings, args.metric)
            losses = LOSSES[args.loss](dists, labels, args.margin, None)
            loss_mean = tf.reduce_mean(losses)
        grads = tape.gradient(loss_mean, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return losses, dists

    @tf.function
    def step(images, labels, rows):
        losses, dists = update(images, labels)
        return dict(monitoring(dists, labels, args.batch_k - 1), losses=losses, rows=rows)

    return step


def cached_loader(paths):
    """`pipeline.load_image` reading from the decoded images held in memory (tf.data cache of
    decoded images, for images of one size): a lookup instead of read + decode."""
    import tensorflow as tf
    decoded = tf.stack([tf.io.decode_image(tf.io.read_file(path), channels=3,
                                           expand_animations=False) for path in paths])
    table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(paths), tf.range(len(paths), dtype=tf.int64)), -1)

    def load_image(path, size):
        return tf.image.resize(tf.gather(decoded, table.lookup(path)), size)

    return load_image


def training_stream(args, data_options=None):
    """The pipeline's endless training batches, with the tf.data options tried (if any):
    `autotune` (map parallelism AUTOTUNE instead of --loading_threads), `private_threads`
    (a private thread pool of that size), `cache_decoded` (decoded images kept in memory).
    Returns the iterator and the number of identities."""
    import numpy as np
    import tensorflow as tf
    from tripletreid import csv_dataset, pipeline, training
    data_options = data_options or {}
    dataset = csv_dataset.read_csv(args.train_set)
    _, labels = np.unique(dataset.pids, return_inverse=True)
    if data_options.get('autotune'):
        args.loading_threads = tf.data.AUTOTUNE
    if data_options.get('cache_decoded'):
        pipeline.load_image = cached_loader(
            [str(p) for p in pipeline.image_paths(dataset.fids, args.image_root)])
    batches = training.training_batches(args, dataset, labels)
    if data_options.get('private_threads'):
        options = tf.data.Options()
        options.threading.private_threadpool_size = data_options['private_threads']
        batches = batches.with_options(options)
    return iter(batches), int(labels.max()) + 1


def training_task(csv, image_root, model_name='resnet_v1_50', height=256, width=128,
                  batch_p=18, batch_k=4, loading_threads=2, jit_compile=False, policy=None,
                  intra_op=None, inter_op=None, data_options=None, keras_bn=False):
    """One step of train.py (`build_training`, `make_train_step`: Adam, batch-hard soft
    margin; `policy` is its --mixed_precision) on the next batch of the pipeline;
    `keras_bn`: with Keras' batch norm instead of the fused one (as before it was adopted)."""
    configure_tensorflow(intra_op, inter_op)
    import tensorflow as tf
    from tripletreid import training
    args = train_args(csv, image_root, model_name, height, width, batch_p, batch_k,
                      loading_threads)
    args.mixed_precision = policy or 'none'
    stream, num_identities = training_stream(args, data_options)
    model, optimizer, identity = training.build_training(args, tf.distribute.get_strategy(),
                                                         num_identities,
                                                         fused_batch_norm=not keras_bn)
    if jit_compile:
        step = jit_step(model, optimizer, args)
    else:
        step = training.make_train_step(model, optimizer, args.loss, args.margin, args.metric,
                                        args.seed, identity)

    def run():
        return step(*next(stream))['losses'].numpy()

    return Task(run, batch_p * batch_k)


# PyTorch as tuned for this machine: NHWC activations; OpenMP threads that sleep instead of
# spinning while they wait (spinning threads fight the other processes of a shared machine);
# freed memory kept by glibc instead of returned to the system (each new large tensor would
# fault its pages in again, which is slow in this VM).
TUNED_TORCH_ENV = {'OMP_WAIT_POLICY': 'PASSIVE', 'MALLOC_MMAP_THRESHOLD_': str(2 ** 32),
                   'MALLOC_TRIM_THRESHOLD_': str(2 ** 32)}
TUNED = ('channels-last (NHWC) tensors, 2 OpenMP threads that sleep while they wait '
         '(OMP_WAIT_POLICY=PASSIVE), glibc keeping freed memory (MALLOC_*_THRESHOLD_=2^32)')

# name: (task keyword arguments, environment, what it does)
TORCH_VARIANTS = {
    'pytorch': ({}, {}, 'PyTorch as peers run it: its defaults, eager, NCHW tensors, batch '
                'norms apart, 2 OpenMP threads with the default wait policy (they spin at '
                'every barrier: on 2 shared vCPUs a ratio against it mostly measures that '
                'spinning)'),
    'pytorch_tuned': (dict(channels_last=True), TUNED_TORCH_ENV,
                      'PyTorch tuned: eager, batch norms apart, ' + TUNED),
}
# Inference only: the batch norms folded into the convolutions (torch_reid.folded).
FOLDED_TORCH_VARIANTS = {
    'pytorch_fx': (dict(channels_last=True, fold='fx'), TUNED_TORCH_ENV,
                   "PyTorch, batch norms folded by torch.fx's fuse, eager, " + TUNED),
    'pytorch_jit_freeze': (dict(channels_last=True, fold='jit_freeze'), TUNED_TORCH_ENV,
                           'PyTorch, traced and frozen by TorchScript (torch.jit.freeze: batch '
                           'norms folded, convolution + ReLU fused), ' + TUNED),
    'pytorch_compile': (dict(channels_last=True, fold='compile'), TUNED_TORCH_ENV,
                        'PyTorch, torch.compile (Inductor, C++ kernels built for this CPU) with '
                        'freezing (batch norms folded, weights prepacked for oneDNN), ' + TUNED),
}


def torch_contenders(options, factory, variants=None, **kwargs):
    """The PyTorch contenders of `variants` (default TORCH_VARIANTS) named in --torch."""
    if options.no_torch or not benchlib.torch_available():
        return []
    return [Contender(name, factory, dict(kwargs, **extra), env, options.warmup, about)
            for name, (extra, env, about) in (variants or TORCH_VARIANTS).items()
            if name in options.torch]
