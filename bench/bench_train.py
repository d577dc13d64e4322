#!/usr/bin/env python3
"""Training step images/s, fed from JPEG files: ours (train.py's step and data.pipeline) against
the same step in PyTorch (bench/torch_reid.py), alternated round by round in one run.

    python bench/bench_train.py                        # resnet_v1_50 + fc1024, 256x128, vs PyTorch
    python bench/bench_train.py --model_name lunet     # 128x64, ours alone
    python bench/bench_train.py --keras_bn             # also ours with Keras' batch norm
    python bench/bench_train.py --quick                # smoke test, under a minute

Both read the synthetic Market-style 128x64 JPEGs of data/demo.py from a temporary folder,
resize them to the pre-crop size (9/8 of the input), flip and crop at random (P=18, K=4). A
step is timed from asking for its batch to the loss being back on the host, so a pipeline that
does not keep up shows. Each contender traces/warms up before the rounds (not counted); a
figure is the median over rounds of the images/s of a round, with the min-max, and the ratio
is the median of the per-round ratios. Writes JSON (see --output).

`training_task` is also the contender of bench_options.py: it takes the options tried there
(XLA, thread pools, mixed precision, Keras' batch norm instead of the fused one, tf.data
settings).

PyTorch runs as a peer runs it ('pytorch') and as tuned for this machine ('pytorch_tuned',
see TUNED_TORCH_ENV); it is skipped when torch is not installed.
"""
import argparse
import contextlib
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib  # noqa: E402
from benchlib import Contender, Task  # noqa: E402

SIZES = {'lunet': (128, 64)}  # input size by network; the others 256x128


@contextlib.contextmanager
def demo_images(num_ids=100):
    """A temporary folder of synthetic Market-style 128x64 JPEGs; yields (csv, root)."""
    from data.demo import make_demo_dataset
    with tempfile.TemporaryDirectory(prefix='bench_images_') as root:
        make_demo_dataset(root, num_train_ids=num_ids, num_test_ids=2)
        yield os.path.join(root, 'market1501_train.csv'), root


def train_args(csv, image_root, model_name='resnet_v1_50', height=256, width=128,
               batch_p=18, batch_k=4, loading_threads=2):
    """train.py's flags for a bench run: flip and crop augmentation, pre-crop 9/8 the input."""
    import train
    return train.build_parser().parse_args([
        '--experiment_root', image_root, '--train_set', csv, '--image_root', image_root,
        '--model_name', model_name, '--batch_p', str(batch_p), '--batch_k', str(batch_k),
        '--net_input_height', str(height), '--net_input_width', str(width),
        '--pre_crop_height', str(height * 9 // 8), '--pre_crop_width', str(width * 9 // 8),
        '--flip_augment', '--crop_augment', '--loading_threads', str(loading_threads),
        '--seed', '0'])


def configure_tensorflow(intra_op=None, inter_op=None):
    """Thread pools: must be set before TensorFlow runs anything."""
    import common
    common.quiet_tensorflow()
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
    from loss import LOSSES, cdist, monitoring

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
    """data.pipeline's endless training batches, with the tf.data options tried (if any):
    `autotune` (map parallelism AUTOTUNE instead of --loading_threads), `private_threads`
    (a private thread pool of that size), `cache_decoded` (decoded images kept in memory).
    Returns the iterator and the number of identities."""
    import numpy as np
    import tensorflow as tf
    from data import csv_dataset, pipeline
    data_options = data_options or {}
    dataset = csv_dataset.read_csv(args.train_set)
    _, labels = np.unique(dataset.pids, return_inverse=True)
    if data_options.get('autotune'):
        args.loading_threads = tf.data.AUTOTUNE
    if data_options.get('cache_decoded'):
        pipeline.load_image = cached_loader(
            [str(p) for p in pipeline.image_paths(dataset.fids, args.image_root)])
    batches = pipeline.train_dataset(dataset, args.image_root, args, labels)
    if data_options.get('private_threads'):
        options = tf.data.Options()
        options.threading.private_threadpool_size = data_options['private_threads']
        batches = batches.with_options(options)
    return iter(batches), int(labels.max()) + 1


def training_task(csv, image_root, model_name='resnet_v1_50', height=256, width=128,
                  batch_p=18, batch_k=4, loading_threads=2, jit_compile=False, policy=None,
                  intra_op=None, inter_op=None, data_options=None, keras_bn=False):
    """One step of train.py (`build_training`, `make_train_step`: Adam, batch-hard soft
    margin; `policy` is its --mixed_precision) on the next batch of data.pipeline;
    `keras_bn`: with Keras' batch norm instead of the fused one (as before it was adopted)."""
    configure_tensorflow(intra_op, inter_op)
    import tensorflow as tf
    import train
    args = train_args(csv, image_root, model_name, height, width, batch_p, batch_k,
                      loading_threads)
    args.mixed_precision = policy or 'none'
    stream, num_identities = training_stream(args, data_options)
    model, optimizer, identity = train.build_training(args, tf.distribute.get_strategy(),
                                                      num_identities,
                                                      fused_batch_norm=not keras_bn)
    if jit_compile:
        step = jit_step(model, optimizer, args)
    else:
        step = train.make_train_step(model, optimizer, args, identity)

    def run():
        return step(*next(stream))['losses'].numpy()

    return Task(run, batch_p * batch_k)


# PyTorch as tuned for this machine: NHWC activations; OpenMP threads that sleep instead of
# spinning while they wait (spinning threads fight the other processes of a shared machine);
# freed memory kept by glibc instead of returned to the system (each new large tensor would
# fault its pages in again, which is slow in this VM).
TUNED_TORCH_ENV = {'OMP_WAIT_POLICY': 'PASSIVE', 'MALLOC_MMAP_THRESHOLD_': str(2 ** 32),
                   'MALLOC_TRIM_THRESHOLD_': str(2 ** 32)}


def torch_contenders(options, factory, **kwargs):
    """PyTorch as a peer runs it ('pytorch') and as tuned here ('pytorch_tuned'), as asked."""
    if options.no_torch or not benchlib.torch_available():
        return []
    variants = {'pytorch': ({}, {}),
                'pytorch_tuned': (dict(channels_last=True), TUNED_TORCH_ENV)}
    return [Contender(name, factory, dict(kwargs, **extra), env, warmup=options.warmup)
            for name, (extra, env) in variants.items() if name in options.torch]


def contenders(options, csv, root):
    size = dict(height=options.height, width=options.width, batch_p=options.batch_p,
                batch_k=options.batch_k)
    ours = [Contender('tensorflow', 'bench_train:training_task',
                      dict(csv=csv, image_root=root, model_name=options.model_name, **size),
                      warmup=options.warmup)]
    if options.keras_bn:
        ours.append(Contender('tensorflow_keras_bn', 'bench_train:training_task',
                              dict(ours[0].kwargs, keras_bn=True), warmup=options.warmup))
    return ours + torch_contenders(options, 'torch_reid:training_task', csv=csv,
                                     image_root=root, layout=options.layout, **size)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model_name', default='resnet_v1_50')
    parser.add_argument('--height', type=int, default=None, help='Default: 256 (lunet: 128).')
    parser.add_argument('--width', type=int, default=None, help='Default: 128 (lunet: 64).')
    parser.add_argument('--batch_p', type=int, default=18)
    parser.add_argument('--batch_k', type=int, default=4)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--steps', type=int, default=None,
                        help='Timed steps per contender and round (default: 4; lunet: 30).')
    parser.add_argument('--warmup', type=int, default=2, help='Untimed steps after the first.')
    parser.add_argument('--no_torch', action='store_true',
                        help='Ours alone (also when torch is not installed, or not resnet).')
    parser.add_argument('--torch', nargs='+', default=['pytorch', 'pytorch_tuned'],
                        choices=['pytorch', 'pytorch_tuned'],
                        help='The PyTorch variants: as a peer runs it, as tuned here.')
    parser.add_argument('--keras_bn', action='store_true',
                        help="Also ours with Keras' batch norm instead of the fused one.")
    parser.add_argument('--layout', default='slim', choices=['slim', 'torchvision'],
                        help="The PyTorch ResNet-50's: ours exactly, or torchvision's v1.5.")
    benchlib.add_output_flags(parser, 'train')
    options = parser.parse_args()
    height, width = SIZES.get(options.model_name, (256, 128))
    options.height, options.width = options.height or height, options.width or width
    options.steps = options.steps or (30 if options.model_name == 'lunet' else 4)
    options.no_torch |= options.model_name != 'resnet_v1_50'
    if options.quick:
        options.height, options.width = options.height // 4, options.width // 4
        options.batch_p, options.batch_k, options.rounds, options.steps = 4, 2, 2, 1
        options.warmup, options.torch = 0, options.torch[-1:]
    with demo_images() as (csv, root):
        results = benchlib.alternate(contenders(options, csv, root), options.rounds,
                                     options.steps)
    result = {'model_name': options.model_name, 'input': [options.height, options.width],
              'batch': [options.batch_p, options.batch_k], 'rounds': options.rounds,
              'steps_per_round': options.steps, 'contenders': results}
    if any(name.startswith('pytorch') for name in results):
        result['torch_layout'] = options.layout
    result.update(benchlib.peer_ratios(results))
    name = 'train_' + options.model_name + ('_torchvision' if options.layout != 'slim' else '')
    benchlib.write_results(result, options, name)


if __name__ == '__main__':
    main()
