#!/usr/bin/env python3
"""FLOPs of a training step of resnet_v1_50 + fc1024 at 256x128, the machine's fp32 peak, and
the share of it our training step (and PyTorch's) achieves.

    python bench/bench_flops.py
    python bench/bench_flops.py --quick

- Forward FLOPs per image: TensorFlow's own count (tf.compat.v1.profiler's float_operation) on
  the frozen inference graph, and torch's FlopCounterMode (convolutions and matrix products
  only) on bench/torch_reid.py's copy of the network (same layout, so the same FLOPs), which
  also counts the backward pass: training FLOPs per image. torchvision's v1.5 layout is
  counted beside it.
- Peak: 2 cores x clock x FLOP/cycle from /proc/cpuinfo (family 26 is AMD Zen 5, two 512-bit
  FMA pipes: 64 fp32 FLOP per cycle and core; Zen 4 and earlier, 32), and what a large fp32
  matrix product reaches here (tf.linalg.matmul, 2 threads), the practical ceiling.
- Utilisation: training FLOPs per image x images/s of bench/results/train_resnet_v1_50.json.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib
from tasks import configure_tensorflow


def tensorflow_forward_flops(height, width):
    """TF's count of the float operations of one image's forward pass (inference mode)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)
    from tripletreid.model import build_model
    model = build_model('resnet_v1_50', 'fc1024', 128)
    forward = tf.function(lambda images: model(images, training=False))
    frozen = convert_variables_to_constants_v2(forward.get_concrete_function(
        tf.TensorSpec([1, height, width, 3], tf.float32)))
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options['output'] = 'none'
    return tf.compat.v1.profiler.profile(graph=frozen.graph, options=options).total_float_ops


def matmul_gflops(size, repeats, dtype='float32'):
    """Best GFLOP/s of a size x size matrix product in TensorFlow."""
    import tensorflow as tf
    a = tf.random.uniform([size, size], dtype=tf.float32)
    a = tf.cast(a, dtype)
    product = tf.function(lambda x: tf.reduce_sum(tf.cast(tf.linalg.matmul(x, x), tf.float32)))
    product(a).numpy()
    best = float('inf')
    for _ in range(repeats):
        began = time.perf_counter()
        product(a).numpy()
        best = min(best, time.perf_counter() - began)
    return round(2 * size ** 3 / best / 1e9, 1)


def peak(machine):
    zen5 = machine['cpu'].startswith('AMD') and int(machine['cpu_family']) >= 26
    per_cycle = 64 if zen5 or 'amx_tile' in machine['simd_flags'] else 32
    return {'flop_per_cycle_per_core': per_cycle,
            'reason': 'AMD family 26 (Zen 5): 2 x 512-bit FMA pipes' if zen5 else
                      'AVX-512/AVX2: 2 x 256-bit FMA (or 1 x 512-bit)',
            'gflops': round(machine['cores'] * machine['mhz'] / 1e3 * per_cycle, 1),
            'gflops_at_32_flop_per_cycle': round(machine['cores'] * machine['mhz'] / 1e3 * 32,
                                                 1)}


def utilisation(training_flops, peaks):
    path = os.path.join(benchlib.RESULTS, 'train_resnet_v1_50.json')
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        contenders = json.load(f)['contenders']
    shares = {}
    for name, result in contenders.items():
        rate = result['images_per_second']['median']
        achieved = rate * training_flops / 1e9
        shares[name] = {'images_per_second': rate, 'gflops': round(achieved, 1),
                        **{f'share_of_{k}': round(achieved / v, 3) for k, v in peaks.items()}}
    return shares


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--height', type=int, default=256)
    parser.add_argument('--width', type=int, default=128)
    parser.add_argument('--matmul_size', type=int, default=4096)
    parser.add_argument('--repeats', type=int, default=5)
    benchlib.add_output_flags(parser, 'flops')
    options = parser.parse_args()
    if options.quick:
        options.matmul_size, options.repeats = 1024, 2
    configure_tensorflow()
    machine = benchlib.machine()
    result = {'input': [options.height, options.width],
              'tensorflow_forward_flops_per_image': tensorflow_forward_flops(options.height,
                                                                             options.width),
              'peak': peak(machine),
              'matmul_gflops': {dtype: matmul_gflops(options.matmul_size, options.repeats, dtype)
                                for dtype in ('float32', 'bfloat16')},
              'matmul_size': options.matmul_size}
    if benchlib.torch_available():
        import torch_reid
        counts = {layout: torch_reid.training_flops(options.height, options.width,
                                                    8 if options.quick else 72, layout)
                  for layout in ('slim', 'torchvision')}
        result['torch_flops_per_image'] = counts
        peaks = {'peak': result['peak']['gflops'],
                 'peak_at_32_flop_per_cycle': result['peak']['gflops_at_32_flop_per_cycle'],
                 'matmul': result['matmul_gflops']['float32']}
        result['utilisation'] = utilisation(counts['slim']['training'], peaks)
    benchlib.write_results(result, options, 'flops')


if __name__ == '__main__':
    main()
