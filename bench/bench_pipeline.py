#!/usr/bin/env python3
"""The input pipeline alone: images/s and CPU time per 72-image batch of data.pipeline's
`train_dataset` (read, decode, resize, flip, crop), against decoding alone as the limit.

    python bench/bench_pipeline.py
    python bench/bench_pipeline.py --quick

Contenders, alternated round by round, each in its own process, on 128x64 JPEGs (data/demo.py),
2 loading threads as on this machine's 2 cores:
- `decode_only`: tf.data reading and `tf.io.decode_jpeg` of the same files, batched by 72;
- `pipeline_256x128`: train_dataset for resnet_v1_50 (resize to 288x144, flip, crop 256x128);
- `pipeline_128x64`: train_dataset for lunet (resize to 144x72, flip, crop 128x64);
- with --options, the tf.data settings tried on `pipeline_256x128`: map parallelism AUTOTUNE,
  a private thread pool of 2, a cache of the decoded images.
`cpu_seconds_per_batch` is the CPU time (all threads) a batch costs the process. When
bench/results/train_<model>.json exists, `step_core_share` is that CPU time per training step
of the model, as a share of one core over the step's duration (what feeding the step costs).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib
from tasks import (configure_tensorflow, demo_images, train_args,
                         training_stream)
from benchlib import Contender, Task

CONFIGS = {'pipeline_256x128': ('resnet_v1_50', 256, 128), 'pipeline_128x64': ('lunet', 128, 64)}
OPTIONS = {'autotune': {'autotune': True}, 'private_threads_2': {'private_threads': 2},
           'cache_decoded': {'cache_decoded': True}}


def pipeline_task(csv, image_root, height, width, batch=72, data_options=None):
    """The next batch of train_dataset (P=batch/4, K=4, flip and crop augmentation)."""
    configure_tensorflow()
    args = train_args(csv, image_root, 'lunet', height, width, batch // 4, 4, 2)
    stream, _ = training_stream(args, data_options)
    return Task(lambda: next(stream), batch)


def decode_task(csv, image_root, batch=72, threads=2):
    """The next batch of the CSV's images, only read and decoded (all are 128x64)."""
    configure_tensorflow()
    import tensorflow as tf
    from tripletreid import csv_dataset, pipeline
    paths = pipeline.image_paths(csv_dataset.read_csv(csv).fids, image_root)

    def decode(path):
        return tf.io.decode_jpeg(tf.io.read_file(path), channels=3)

    images = tf.data.Dataset.from_tensor_slices(paths).shuffle(len(paths), seed=0).repeat()
    images = images.map(decode, num_parallel_calls=threads).batch(batch)
    stream = iter(images.prefetch(tf.data.AUTOTUNE))
    return Task(lambda: next(stream), batch)


def step_core_share(results, batch):
    """CPU time of the pipeline per training step, as a share of one core at the step's rate,
    from the committed training figures (bench/results/train_<model>.json) if present."""
    shares = {}
    for name, (model, _, _) in CONFIGS.items():
        path = os.path.join(benchlib.RESULTS, f'train_{model}.json')
        if name not in results or not os.path.exists(path):
            continue
        with open(path) as f:
            train_rate = json.load(f)['contenders']['tensorflow']['images_per_second']['median']
        shares[name] = {'training_images_per_second': train_rate,
                        'core_share': round(results[name]['cpu_seconds_per_batch']['median']
                                            * train_rate / batch, 4)}
    return shares


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--batches', type=int, default=40, help='Timed batches per round.')
    parser.add_argument('--options', action='store_true', help='Also the tf.data settings.')
    benchlib.add_output_flags(parser, 'pipeline')
    options = parser.parse_args()
    warm = 5  # batches drained untimed at the start of each turn (the buffers filled meanwhile)
    if options.quick:
        options.rounds, options.batches, warm = 2, 5, 1
    with demo_images() as (csv, root):
        contenders = [Contender('decode_only', 'bench_pipeline:decode_task',
                                dict(csv=csv, image_root=root))]
        for name, (_, height, width) in CONFIGS.items():
            contenders.append(Contender(name, 'bench_pipeline:pipeline_task',
                                        dict(csv=csv, image_root=root, height=height,
                                             width=width)))
        if options.options:
            contenders += [Contender(f'pipeline_256x128_{name}', 'bench_pipeline:pipeline_task',
                                     dict(csv=csv, image_root=root, height=256, width=128,
                                          data_options=settings))
                           for name, settings in OPTIONS.items()]
        results = benchlib.alternate(contenders, options.rounds, options.batches, warm)
    for result in results.values():
        result['cpu_seconds_per_batch'] = benchlib.summary(
            [cores * result['images'] / rate for cores, rate in zip(result['cores'],
                                                                   result['rates'])], 4)
    benchlib.write_results({
        'batch': 72, 'loading_threads': 2, 'rounds': options.rounds,
        'batches_per_round': options.batches, 'contenders': results,
        'pipeline_over_decode': {name: benchlib.ratio(results, name, 'decode_only')
                                 for name in results if name != 'decode_only'},
        'step_core_share': step_core_share(results, 72)}, options, 'pipeline')


if __name__ == '__main__':
    main()
