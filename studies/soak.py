#!/usr/bin/env python3
"""Soak test of interruption and resume (issue 8): not a CI test, run by hand.

    python studies/soak.py --output /tmp/soak --minutes 30

Two trainings of `lunet` on the CUHK03 crops of ../shared/data (the demo dataset where they are
missing) run side by side with the same flags and --deterministic: one uninterrupted, one
interrupted every `--min_gap`..`--max_gap` minutes by SIGINT, SIGTERM or SIGKILL (chosen at
random) and resumed each time. After `--minutes` both stop. Every checkpoint step both runs
wrote must hold bit-identical variables. Memory: the uninterrupted run's resident set is
sampled every few seconds (its first and last minute give the drift), and each process's peak
(VmHWM) is read before it ends. Prints and writes JSON (`soak.json` in --output).
"""
import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from studies.cuhk03 import DEFAULT_DATA, write_csv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)


def training_set(output):
    """(CSV, image root) of CUHK03's train split, or of the demo dataset."""
    folder = os.path.join(DEFAULT_DATA, 'train')
    if os.path.isdir(folder):
        return write_csv(folder, os.path.join(output, 'train.csv')), folder
    from data.demo_set import make_demo_dataset
    summary = make_demo_dataset(os.path.join(output, 'demo'))
    return summary['train_csv'], os.path.join(output, 'demo')


def start(root, flags):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, 'train.py'),
                             '--experiment_root', root, *flags],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def memory(pid):
    """(resident MiB now, peak resident MiB) of process `pid`, from /proc."""
    fields = {}
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            name, _, value = line.partition(':')
            fields[name] = value.split()
    return int(fields['VmRSS'][0]) / 1024, int(fields['VmHWM'][0]) / 1024


def stop(proc, signum):
    """Send `signum`; return the process's peak resident MiB just before."""
    peak = memory(proc.pid)[1]
    proc.send_signal(signum)
    proc.wait(timeout=600)
    return peak


def compare(first, second):
    """Steps of the checkpoints both experiment roots hold, and those whose variables differ."""
    import tensorflow as tf
    from tripletreid.checkpoints import complete_checkpoints
    a, b = complete_checkpoints(first), complete_checkpoints(second)
    common_steps = sorted(set(a) & set(b))
    differ = []
    for step in common_steps:
        names = [n for n, _ in tf.train.list_variables(a[step])
                 if n != '_CHECKPOINTABLE_OBJECT_GRAPH']
        if any((tf.train.load_variable(a[step], n) != tf.train.load_variable(b[step], n)).any()
               for n in names):
            differ.append(step)
    return common_steps, differ


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--output', required=True, help='A new folder.')
    parser.add_argument('--minutes', type=float, default=30)
    parser.add_argument('--min_gap', type=float, default=2, help='Minutes between interruptions.')
    parser.add_argument('--max_gap', type=float, default=4)
    parser.add_argument('--checkpoint_frequency', type=int, default=200)
    parser.add_argument('--seed', type=int, default=0)
    options = parser.parse_args()
    os.makedirs(options.output)
    csv_path, image_root = training_set(options.output)
    flags = ['--train_set', csv_path, '--image_root', image_root, '--model_name', 'lunet',
             '--head_name', 'fc1024', '--embedding_dim', '128', '--batch_p', '18',
             '--batch_k', '4', '--net_input_height', '64', '--net_input_width', '32',
             '--pre_crop_height', '72', '--pre_crop_width', '36', '--flip_augment',
             '--crop_augment', '--learning_rate', '1e-3', '--train_iterations', '1000000',
             '--checkpoint_frequency', str(options.checkpoint_frequency), '--deterministic',
             '--loading_threads', '2', '--seed', str(options.seed)]
    reference_root = os.path.join(options.output, 'uninterrupted')
    interrupted_root = os.path.join(options.output, 'interrupted')
    rng = random.Random(options.seed)
    began = time.time()
    reference = start(reference_root, flags)
    current = start(interrupted_root, flags)
    samples, interruptions, segment_peaks = [], [], []
    next_interruption = began + 60 * rng.uniform(options.min_gap, options.max_gap)
    while time.time() - began < 60 * options.minutes:
        time.sleep(5)
        samples.append((time.time() - began, memory(reference.pid)[0]))
        if time.time() >= next_interruption:
            signum = rng.choice(SIGNALS)
            segment_peaks.append(stop(current, signum))
            interruptions.append({'minute': round((time.time() - began) / 60, 2),
                                  'signal': signal.Signals(signum).name,
                                  'exit_code': current.returncode})
            current = start(interrupted_root, ['--resume'])
            next_interruption = time.time() + 60 * rng.uniform(options.min_gap, options.max_gap)
    segment_peaks.append(stop(current, signal.SIGINT))
    reference_peak = stop(reference, signal.SIGINT)
    steps, differ = compare(reference_root, interrupted_root)
    first = [rss for t, rss in samples if t <= 60]
    last = [rss for t, rss in samples if t >= samples[-1][0] - 60]
    report = {
        'minutes': round((time.time() - began) / 60, 1),
        'interruptions': interruptions,
        'compared_checkpoint_steps': steps,
        'differing_checkpoint_steps': differ,
        'bit_identical': bool(steps) and not differ,
        'uninterrupted_rss_mib_first_minute': round(max(first), 1),
        'uninterrupted_rss_mib_last_minute': round(max(last), 1),
        'uninterrupted_peak_rss_mib': round(reference_peak, 1),
        'interrupted_segment_peak_rss_mib': [round(p, 1) for p in segment_peaks],
    }
    with open(os.path.join(options.output, 'soak.json'), 'w') as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))


if __name__ == '__main__':
    main()
