#!/usr/bin/env python3
"""Options for the training step, each measured against the baseline (train.py as it is) in
the same run, alternated round by round, each contender in its own process.

    python bench/bench_options.py                       # resnet_v1_50, 256x128, P=18 K=4
    python bench/bench_options.py --model_name lunet    # 128x64, with the tf.data options
    python bench/bench_options.py --quick              # lunet at 32x16, XLA only

Options (name: what changes):
- xla_jit: the gradient and the Adam update in a `tf.function(jit_compile=True)`
  (tasks.jit_step; the monitoring outside, XLA refuses its dynamic shapes);
- xla_auto_jit: TF_XLA_FLAGS='--tf_xla_auto_jit=2 --tf_xla_cpu_global_jit' (XLA clusters
  found automatically, no code change);
- onednn_off: TF_ENABLE_ONEDNN_OPTS=0 (Eigen kernels instead of oneDNN's);
- malloc_keep: glibc keeps freed memory (MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_
  2^32), no page faults for each step's new activations;
- intra2_inter1, intra1_inter2: tf.config.threading intra-op / inter-op pool sizes (default:
  both 2 here, the number of cores);
- mixed_bfloat16: train.py --mixed_precision mixed_bfloat16 (bf16 compute, float32 variables
  and loss; the CPU has AVX512_BF16);
- keras_batch_norm: Keras 3's batch norm (moments and element-wise ops) instead of train.py's
  fused one (nets/fused_batch_norm.py), as train.py trained before it adopted that;
- autotune, private_threads_2, cache_decoded: tf.data settings (see tasks.training_stream).

Options run in groups (a group and the baseline alternate; a group's workers are in memory
together, about 5 GB each for resnet_v1_50), one group after the other; each option's figure
is the median over rounds of its per-round speed-up over the baseline, with the min-max.
--numerics compares the fused batch norm, and mixed_bfloat16 with it, against Keras' float32
batch norm on one batch from the same weights (loss, embeddings, gradient), beside float32
rounding's own effect.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib
from tasks import (SIZES, configure_tensorflow, demo_images, train_args,
                         training_stream)
from benchlib import Contender

OPTIONS = {  # name: (training_task keyword arguments, environment)
    'baseline': ({}, {}),
    'xla_jit': ({'jit_compile': True}, {}),
    'xla_auto_jit': ({}, {'TF_XLA_FLAGS': '--tf_xla_auto_jit=2 --tf_xla_cpu_global_jit'}),
    'onednn_off': ({}, {'TF_ENABLE_ONEDNN_OPTS': '0'}),
    'malloc_keep': ({}, {'MALLOC_MMAP_THRESHOLD_': str(2 ** 32),
                         'MALLOC_TRIM_THRESHOLD_': str(2 ** 32)}),
    'intra2_inter1': ({'intra_op': 2, 'inter_op': 1}, {}),
    'intra1_inter2': ({'intra_op': 1, 'inter_op': 2}, {}),
    'mixed_bfloat16': ({'policy': 'mixed_bfloat16'}, {}),
    'keras_batch_norm': ({'keras_bn': True}, {}),
    'autotune': ({'data_options': {'autotune': True}}, {}),
    'private_threads_2': ({'data_options': {'private_threads': 2}}, {}),
    'cache_decoded': ({'data_options': {'cache_decoded': True}}, {}),
}
GROUPS = {
    # The ones most likely to matter; the others were measured on lunet (CPU time is short).
    'resnet_v1_50': ['keras_batch_norm,mixed_bfloat16', 'xla_jit,malloc_keep'],
    'lunet': ['xla_jit,xla_auto_jit,onednn_off,malloc_keep',
              'intra2_inter1,intra1_inter2,mixed_bfloat16,keras_batch_norm',
              'autotune,private_threads_2,cache_decoded'],
}


def numerics(csv, root, model_name, height, width):
    """train.py's fused batch norm, in float32 and under mixed_bfloat16, against Keras' batch
    norm in float32 (the reference) from the same weights on one training batch: loss,
    embeddings, gradient."""
    configure_tensorflow()
    import keras
    import numpy as np
    import tensorflow as tf
    from tripletreid.model import build_model
    from tripletreid.losses.triplet import batch_hard, cdist
    from tripletreid.fused_batch_norm import fuse
    images, labels, _ = next(training_stream(train_args(csv, root, model_name, height,
                                                       width))[0])

    def gradient(model, scale=1):
        with tf.GradientTape() as tape:
            embeddings = tf.cast(model(images * scale, training=True), tf.float32)
            loss = tf.reduce_mean(batch_hard(cdist(embeddings, embeddings), labels, 'soft'))
        grads = tape.gradient(loss, model.trainable_variables)
        return float(loss), embeddings.numpy(), np.concatenate(
            [tf.reshape(g, [-1]).numpy() for g in grads])

    def relative(a, b):
        return float(np.linalg.norm(a - b) / np.linalg.norm(a))

    keras.utils.set_random_seed(0)
    baseline = build_model(model_name, 'fc1024', 128)
    loss, emb, grad = gradient(baseline)
    results = {}
    # (policy, fused batch norm, input scale); the first is float32 rounding's own effect: the
    # reference on images scaled by 1 + 2^-20, the noise floor of these comparisons.
    variants = {'float32_rounding': ('float32', False, 1 + 2 ** -20),
                'fused_batch_norm': ('float32', True, 1),
                'mixed_bfloat16': ('mixed_bfloat16', True, 1)}
    for variant, (policy, fused, scale) in variants.items():
        keras.mixed_precision.set_global_policy(policy)
        model = build_model(model_name, 'fc1024', 128)
        model.set_weights(baseline.get_weights())
        if fused:
            model = fuse(model)
        loss2, emb2, grad2 = gradient(model, scale)
        results[variant] = {
            'loss_baseline': loss, 'loss': loss2,
            'loss_relative_difference': abs(loss2 - loss) / abs(loss),
            'embedding_relative_error': relative(emb, emb2),
            'gradient_relative_error': relative(grad, grad2),
            'gradient_cosine': float(grad @ grad2 / np.linalg.norm(grad)
                                     / np.linalg.norm(grad2))}
    keras.mixed_precision.set_global_policy('float32')
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model_name', default='resnet_v1_50', choices=sorted(GROUPS))
    parser.add_argument('--groups', nargs='+', default=None,
                        help='Comma-separated option names run together against the baseline '
                             f'(default by model: {GROUPS}).')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--steps', type=int, default=None,
                        help='Timed steps per contender and round (default 1; lunet 15).')
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--numerics', action='store_true',
                        help="Also compare the fused batch norm and mixed_bfloat16 with Keras' "
                             'float32 batch norm on one batch.')
    parser.add_argument('--numerics_only', action='store_true',
                        help='--numerics alone, no speed groups.')
    benchlib.add_output_flags(parser, 'options')
    options = parser.parse_args()
    if options.quick:
        options.model_name = 'lunet'
    height, width = SIZES.get(options.model_name, (256, 128))
    groups = [] if options.numerics_only else options.groups or GROUPS[options.model_name]
    steps = options.steps or (15 if options.model_name == 'lunet' else 1)
    batch = dict(batch_p=18, batch_k=4)
    if options.quick:
        height, width, batch = height // 4, width // 4, dict(batch_p=4, batch_k=2)
        groups, steps, options.rounds, options.warmup = ['xla_jit'], 1, 2, 0
    result = {'model_name': options.model_name, 'input': [height, width], 'batch': batch,
              'rounds': options.rounds, 'steps_per_round': steps, 'groups': {}}
    with demo_images() as (csv, root):
        for group in groups:
            contenders = [Contender(name, 'tasks:training_task',
                                    dict(csv=csv, image_root=root, model_name=options.model_name,
                                         height=height, width=width, **batch, **OPTIONS[name][0]),
                                    OPTIONS[name][1], warmup=options.warmup)
                          for name in ['baseline'] + group.split(',')]
            results = benchlib.alternate(contenders, options.rounds, steps)
            result['groups'][group] = {
                'contenders': results,
                'speedup': {name: benchlib.ratio(results, name, 'baseline')
                            for name in results if name != 'baseline'}}
        if options.numerics or options.numerics_only:
            result['numerics'] = numerics(csv, root, options.model_name,
                                                         height, width)
    benchlib.write_results(result, options, 'options_' + options.model_name)


if __name__ == '__main__':
    main()
