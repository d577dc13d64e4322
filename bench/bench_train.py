#!/usr/bin/env python3
"""Images per second of a full training step, and of the input pipeline alone.

    python bench/bench_train.py --model_name resnet_v1_50 --steps 5
    python bench/bench_train.py --model_name lunet --height 128 --width 64 --steps 30

Makes the synthetic Market-style JPEGs of data/demo.py (128x64) in a temporary folder;
prints JSON.
The first step (tracing and graph building) is timed apart and left out of the rate.
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import train  # noqa: E402  (imports TensorFlow quietly)
from data import csv_dataset, pipeline  # noqa: E402
from data.demo import make_demo_dataset  # noqa: E402
from embedding_model import build_model  # noqa: E402


def bench_args(options, csv_path, root):
    parser = train.build_parser()
    return parser.parse_args([
        '--experiment_root', root, '--train_set', csv_path, '--image_root', root,
        '--model_name', options.model_name, '--batch_p', str(options.batch_p),
        '--batch_k', str(options.batch_k), '--net_input_height', str(options.height),
        '--net_input_width', str(options.width),
        '--pre_crop_height', str(options.height * 9 // 8),
        '--pre_crop_width', str(options.width * 9 // 8),
        '--flip_augment', '--crop_augment', '--loading_threads', str(options.threads),
        '--seed', '0'])


def time_pipeline(args, dataset, labels, batches):
    stream = iter(pipeline.train_dataset(dataset, args.image_root, args, labels))
    next(stream)
    began = time.perf_counter()
    for _ in range(batches):
        next(stream)
    return batches * args.batch_p * args.batch_k / (time.perf_counter() - began)


def time_training(args, dataset, labels, steps):
    model = build_model(args.model_name, args.head_name, args.embedding_dim)
    optimizer = train.make_optimizer(args)
    step = train.make_train_step(model, optimizer, args)
    stream = iter(pipeline.train_dataset(dataset, args.image_root, args, labels))
    images, batch_labels, _ = next(stream)
    began = time.perf_counter()
    step(images, batch_labels)['losses'].numpy()
    first = time.perf_counter() - began
    times = []
    for _ in range(steps):
        images, batch_labels, _ = next(stream)
        began = time.perf_counter()
        step(images, batch_labels)['losses'].numpy()
        times.append(time.perf_counter() - began)
    size = args.batch_p * args.batch_k
    rates = size / np.array(times)
    return {'first_step_seconds': first, 'images_per_second_median': float(np.median(rates)),
            'images_per_second_min': float(rates.min()),
            'images_per_second_max': float(rates.max()), 'steps': steps}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model_name', default='resnet_v1_50')
    parser.add_argument('--height', type=int, default=256)
    parser.add_argument('--width', type=int, default=128)
    parser.add_argument('--batch_p', type=int, default=18)
    parser.add_argument('--batch_k', type=int, default=4)
    parser.add_argument('--steps', type=int, default=5)
    parser.add_argument('--pipeline_batches', type=int, default=50)
    parser.add_argument('--threads', type=int, default=2)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        make_demo_dataset(root, num_train_ids=max(100, options.batch_p), num_test_ids=2)
        csv_path = os.path.join(root, 'market1501_train.csv')
        args = bench_args(options, csv_path, root)
        dataset = csv_dataset.read_csv(csv_path)
        _, labels = np.unique(dataset.pids, return_inverse=True)
        result = {
            'machine': f'{platform.machine()}, {os.cpu_count()} cores',
            'date': time.strftime('%Y-%m-%d'),
            'model_name': options.model_name, 'input': [options.height, options.width],
            'batch': [options.batch_p, options.batch_k],
            'pipeline_images_per_second': time_pipeline(args, dataset, labels,
                                                        options.pipeline_batches),
            'training': time_training(args, dataset, labels, options.steps),
        }
    print(json.dumps(result, indent=2))


if __name__ == '__main__':
    main()
