#!/usr/bin/env python3
"""Training step time of backbones, each at the input size (and precision) it would train at,
alternated round by round in one run: what a CPU-minute buys with each.

    python bench/bench_backbones.py --contenders lunet:64x32 osnet_x0_25:128x64 osnet_x0_5:128x64
    python bench/bench_backbones.py --contenders lunet:64x32 --mixed_precision none mixed_bfloat16
    python bench/bench_backbones.py --quick            # smoke test

Each contender (a backbone at an input size, in each --mixed_precision) is train.py's step
(`tasks.training_task`: fc1024 head, Adam, batch-hard soft margin, P=18 K=4, flip and crop
from the synthetic 128x64 JPEGs resized to 9/8 of the input) in a worker process of its own
(benchlib). A figure is the median over rounds of a round's images/s, with the min-max and
the seconds per step it implies; each contender's ratio of images/s to the first contender's
is the median of the per-round ratios with its bootstrap 95% interval.
"""
import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib
from benchlib import Contender
from tasks import demo_images

from nets import NETS
from tripletreid.experiment import MIXED_PRECISION


def contender_spec(text):
    """'name:HxW' to (name, height, width)."""
    match = re.fullmatch(r'(\w+):(\d+)x(\d+)', text)
    if not match or match[1] not in NETS:
        raise argparse.ArgumentTypeError(
            f'{text!r}: expected BACKBONE:HEIGHTxWIDTH with a backbone of {", ".join(NETS)}')
    return match[1], int(match[2]), int(match[3])


def contenders(options, csv, root):
    return [Contender(f'{name}_{height}x{width}' + ('' if policy == 'none' else '_' + policy),
                      'tasks:training_task',
                      dict(csv=csv, image_root=root, model_name=name, height=height,
                           width=width, batch_p=options.batch_p, batch_k=options.batch_k,
                           policy=policy), warmup=options.warmup)
            for name, height, width in options.contenders
            for policy in options.mixed_precision]


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--contenders', nargs='+', type=contender_spec,
                        default=[('lunet', 64, 32), ('osnet_x0_25', 128, 64)],
                        help='BACKBONE:HEIGHTxWIDTH each (default: lunet:64x32 '
                             'osnet_x0_25:128x64).')
    parser.add_argument('--mixed_precision', nargs='+', default=['none'],
                        choices=MIXED_PRECISION, help="train.py's; each contender in each.")
    parser.add_argument('--batch_p', type=int, default=18)
    parser.add_argument('--batch_k', type=int, default=4)
    parser.add_argument('--rounds', type=int, default=10)
    parser.add_argument('--steps', type=int, default=10, help='Timed steps per contender and '
                                                              'round.')
    parser.add_argument('--warmup', type=int, default=2, help='Untimed steps after the first.')
    benchlib.add_output_flags(parser, 'backbones')
    options = parser.parse_args()
    if options.quick:
        options.contenders = [('lunet', 32, 16), ('osnet_x0_25', 32, 16)]
        options.batch_p, options.batch_k, options.rounds, options.steps = 4, 2, 2, 1
        options.warmup = 0
    with demo_images() as (csv, root):
        results = benchlib.alternate(contenders(options, csv, root), options.rounds,
                                     options.steps)
    batch = options.batch_p * options.batch_k
    for result in results.values():
        result['seconds_per_step_median'] = round(batch
                                                  / result['images_per_second']['median'], 4)
    first = next(iter(results))
    benchlib.write_results({
        'batch': [options.batch_p, options.batch_k], 'rounds': options.rounds,
        'steps_per_round': options.steps, 'contenders': results,
        f'ratio_over_{first}': {name: benchlib.ratio(results, name, first)
                                for name in results if name != first}}, options, 'backbones')


if __name__ == '__main__':
    main()
