#!/usr/bin/env python3
"""Where the training step's time goes: op types by share of op time, ours (TensorFlow
profiler trace) and, when torch is installed, PyTorch's (torch.profiler).

    python bench/bench_profile.py                      # resnet_v1_50 + fc1024, 256x128, P=18 K=4
    python bench/bench_profile.py --model_name lunet --height 128 --width 64
    python bench/bench_profile.py --quick

Ours: a TF profiler trace of --steps steps after the warm-up, read back from its xplane file;
every op event of the executor threads is added up by op type ("Conv2DBackpropFilter",
"Mul", ...) and by phase: forward, backward (ops under `gradient_tape/`), optimizer (`adam/`)
and the rest (loss, monitoring, copies). Shares are of the summed op time (2 inter-op threads
can overlap, so the sum can exceed the wall time). PyTorch's: self CPU time by aten op.
"""
import argparse
import collections
import glob
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib
from tasks import SIZES, demo_images, training_task

PHASES = (('backward', 'gradient_tape/'), ('optimizer', 'adam/'))


def phase(op_name, model_prefix):
    for name, prefix in PHASES:
        if op_name.startswith(prefix):
            return name
    return 'forward' if op_name.startswith(model_prefix) else 'other'


def read_trace(logdir, model_prefix):
    """Op time (ms) by op type and by phase from the xplane file the profiler wrote."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    space = xplane_pb2.XSpace()
    with open(glob.glob(os.path.join(logdir, '**', '*.xplane.pb'), recursive=True)[-1],
              'rb') as f:
        space.ParseFromString(f.read())
    by_type, by_phase = collections.Counter(), collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith('tf_Compute'):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                op_name, _, op_type = name.rpartition(':')
                if not op_name or name.startswith(('Threadpool', 'ExecutorState')):
                    continue
                milliseconds = event.duration_ps / 1e9
                by_type[op_type.replace('_MklNative', '').replace('_Mkl', '')] += milliseconds
                by_phase[phase(op_name, model_prefix)] += milliseconds
    return by_type, by_phase


def shares(counter, top=None):
    total = sum(counter.values())
    return [{'op': name, 'ms_per_step': round(ms, 1), 'share': round(ms / total, 3)}
            for name, ms in counter.most_common(top)]


def profile_tensorflow(csv, root, options):
    import tensorflow as tf
    task = training_task(csv, root, options.model_name, options.height, options.width,
                         options.batch_p, options.batch_k)
    for _ in range(options.warmup + 1):
        task.run()
    with tempfile.TemporaryDirectory(prefix='bench_profile_') as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(options.steps):
            task.run()
        tf.profiler.experimental.stop()
        by_type, by_phase = read_trace(logdir, f'{options.model_name}_')
    per_step = collections.Counter({k: v / options.steps for k, v in by_type.items()})
    phases = collections.Counter({k: v / options.steps for k, v in by_phase.items()})
    return {'by_op_type': shares(per_step, options.top), 'by_phase': shares(phases)}


def profile_torch(csv, root, options):
    import torch
    import torch_reid
    task = torch_reid.training_task(csv, root, options.batch_p, options.batch_k,
                                    options.height, options.width)
    for _ in range(options.warmup + 1):
        task.run()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        for _ in range(options.steps):
            task.run()
    by_op = collections.Counter()
    for event in profile.key_averages():
        by_op[event.key] += event.self_cpu_time_total / 1e3 / options.steps
    return {'by_op_type': shares(by_op, options.top)}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model_name', default='resnet_v1_50')
    parser.add_argument('--height', type=int, default=None)
    parser.add_argument('--width', type=int, default=None)
    parser.add_argument('--batch_p', type=int, default=18)
    parser.add_argument('--batch_k', type=int, default=4)
    parser.add_argument('--steps', type=int, default=2, help='Profiled steps.')
    parser.add_argument('--warmup', type=int, default=1, help='Untimed steps after the first.')
    parser.add_argument('--top', type=int, default=15, help='Op types listed.')
    parser.add_argument('--no_torch', action='store_true')
    benchlib.add_output_flags(parser, 'profile')
    options = parser.parse_args()
    height, width = SIZES.get(options.model_name, (256, 128))
    options.height, options.width = options.height or height, options.width or width
    if options.quick:
        options.height, options.width, options.batch_p, options.batch_k = 64, 32, 4, 2
        options.steps, options.warmup = 1, 0
    result = {'model_name': options.model_name, 'input': [options.height, options.width],
              'batch': [options.batch_p, options.batch_k], 'steps': options.steps}
    with demo_images() as (csv, root):
        result['tensorflow'] = profile_tensorflow(csv, root, options)
        if benchlib.torch_available() and not options.no_torch:
            result['pytorch'] = profile_torch(csv, root, options)
    benchlib.write_results(result, options, 'profile_' + options.model_name)


if __name__ == '__main__':
    main()
