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
round gives each contender its turn, forward in odd rounds and backward in even ones (AB BA
...); a figure is the median over rounds of the images/s of a round, with the min-max; a ratio
is the median of the per-round ratios with a bootstrap 95% confidence interval and a verdict
("tie" when the interval holds 1). The load average before and after each turn is recorded:
the machine may be shared. Writes JSON (see --output).

`training_task` is also the contender of bench_options.py: it takes the options tried there
(XLA, thread pools, mixed precision, Keras' batch norm instead of the fused one, tf.data
settings).

PyTorch runs as a peer runs it ('pytorch': its OpenMP threads spin while they wait, so on 2
shared vCPUs a ratio against it mostly measures that spinning) and as tuned for this machine
('pytorch_tuned', see tasks.TORCH_VARIANTS); it is skipped when torch is not installed.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib
from benchlib import Contender
from tasks import SIZES, TORCH_VARIANTS, demo_images, torch_contenders

OURS = ("train.py's step: a tf.function, batch norms fused (FusedBatchNormV3), NHWC tensors, "
        "oneDNN convolutions, TensorFlow's default thread pools (2 intra-op threads, which do "
        'not spin), tf.data loading with 2 threads')


def contenders(options, csv, root):
    size = dict(height=options.height, width=options.width, batch_p=options.batch_p,
                batch_k=options.batch_k)
    ours = [Contender('tensorflow', 'tasks:training_task',
                      dict(csv=csv, image_root=root, model_name=options.model_name, **size),
                      warmup=options.warmup, about=OURS)]
    if options.keras_bn:
        ours.append(Contender('tensorflow_keras_bn', 'tasks:training_task',
                              dict(ours[0].kwargs, keras_bn=True), warmup=options.warmup,
                              about=OURS.replace('fused (FusedBatchNormV3)',
                                                 "Keras' own (moments and element-wise ops)")))
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
    parser.add_argument('--rounds', type=int, default=10)
    parser.add_argument('--steps', type=int, default=None,
                        help='Timed steps per contender and round (default: 2; lunet: 30).')
    parser.add_argument('--warmup', type=int, default=2, help='Untimed steps after the first.')
    parser.add_argument('--no_torch', action='store_true',
                        help='Ours alone (also when torch is not installed, or not resnet).')
    parser.add_argument('--torch', nargs='+', default=list(TORCH_VARIANTS),
                        choices=list(TORCH_VARIANTS),
                        help='The PyTorch variants: as a peer runs it, as tuned here.')
    parser.add_argument('--keras_bn', action='store_true',
                        help="Also ours with Keras' batch norm instead of the fused one.")
    parser.add_argument('--layout', default='slim', choices=['slim', 'torchvision'],
                        help="The PyTorch ResNet-50's: ours exactly, or torchvision's v1.5.")
    benchlib.add_output_flags(parser, 'train')
    options = parser.parse_args()
    height, width = SIZES.get(options.model_name, (256, 128))
    options.height, options.width = options.height or height, options.width or width
    options.steps = options.steps or (30 if options.model_name == 'lunet' else 2)
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
