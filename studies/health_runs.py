#!/usr/bin/env python3
"""Record what the health monitor sees on real runs, healthy and not, for its tests to replay.

    python studies/health_runs.py --work /tmp/health_runs --output tests/data/health_runs.npz

Trains `lunet` on the CUHK03 `train/` split of ../shared/data (743 identities) with the official
recipe of `studies/cuhk03.py` (64x32 input, fc1024 head, 128-D, P=18 K=4, flip + crop, soft
margin, batch hard, exponential decay from 2/3 of the steps, seed 0) four times, the runs
differing only in learning rate and length (`RUNS`): two healthy ones (1e-3 and 3e-4), one that
stalls (1e-7: nothing moves) and one that collapses (0.1). Then reads, per step, from their
TensorBoard events the mean loss, the batch precision at K-1, the fraction of active triplets
(`active_count` over P*K), the embedding spread and the seconds of the training step, and
stores them as float32 arrays `<run>.<value>` (row = step - 1) in one compressed npz, with
`note` saying how they were made. Measured 2026-12-02 on 2 shared cores (load 4-12): 0.55 to
0.8 s a step, about an hour for the four runs; the npz is 63 KB.

A run whose experiment already finished in --work is read, not trained again (delete its
folder to redo it). --runs picks some runs; the npz then holds only those.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np

from studies.cuhk03 import DEFAULT_DATA, recipe_flags, write_csv
from tripletreid import training
from tripletreid.training_logs import read_scalars

# name: (learning rate, steps)
RUNS = {'healthy_1e-3': (1e-3, 2000), 'healthy_3e-4': (3e-4, 2000), 'stalled_1e-7': (1e-7, 600),
        'collapsed_0.1': (0.1, 400)}
BATCH_P, BATCH_K, SIZE = 18, 4, (64, 32)
# The name in the npz: the TensorBoard tag it comes from.
TAGS = {'loss': 'loss', 'prec_at_k': f'batch_prec_at_{BATCH_K - 1}',
        'active_fraction': 'active_count', 'spread': 'health/distance_spread',
        'seconds_per_step': 'timings/seconds_per_iteration'}


def run_flags(data, work, learning_rate, steps):
    """train.py's flags of one run: the official recipe of `studies.cuhk03.train_net`, at
    `learning_rate` for `steps` steps."""
    height, width = SIZE
    train_set = write_csv(os.path.join(data, 'train'), os.path.join(work, 'train.csv'))
    return ['--train_set', train_set, '--image_root', os.path.join(data, 'train'),
            '--model_name', 'lunet', *recipe_flags('official', steps),
            '--batch_p', str(BATCH_P), '--batch_k', str(BATCH_K),
            '--net_input_height', str(height), '--net_input_width', str(width),
            '--pre_crop_height', str(height * 9 // 8), '--pre_crop_width', str(width * 9 // 8),
            '--flip_augment', '--crop_augment', '--learning_rate', f'{learning_rate:g}',
            '--train_iterations', str(steps), '--checkpoint_frequency', '0',
            '--loading_threads', '2', '--seed', '0']


def record(root, flags, steps):
    """Train into `root` unless a finished run is there; return {name: [steps] float32}."""
    scalars = read_scalars(root, *TAGS.values()) if os.path.isdir(root) else {}
    if len(scalars.get('loss', ())) < steps:
        if os.path.isdir(root):
            sys.exit(f'{root} holds an unfinished run: delete it to train it again')
        training.run_flags(['--experiment_root', root, *flags])
        scalars = read_scalars(root, *TAGS.values())
    values = {name: np.array([scalars[tag][step] for step in range(1, steps + 1)], np.float32)
              for name, tag in TAGS.items()}
    values['active_fraction'] /= BATCH_P * BATCH_K
    return values


def summary(values):
    """The run's last 100 steps, for the console and the note."""
    last = {name: float(np.mean(array[-100:])) for name, array in values.items()}
    return (f'last 100 steps: loss {last["loss"]:.3f}, precision at K-1 '
            f'{last["prec_at_k"]:.3f}, active {last["active_fraction"]:.3f}, spread '
            f'{last["spread"]:.3f}; median {np.median(values["seconds_per_step"]):.3f} s/step')


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data', default=DEFAULT_DATA, help='The cuhk03-detected folder.')
    parser.add_argument('--work', required=True, help='Folder for the experiments.')
    parser.add_argument('--output', default='tests/data/health_runs.npz')
    parser.add_argument('--runs', nargs='+', default=list(RUNS), choices=list(RUNS))
    options = parser.parse_args()
    os.makedirs(options.work, exist_ok=True)
    arrays, notes = {}, {}
    for name in options.runs:
        learning_rate, steps = RUNS[name]
        flags = run_flags(options.data, options.work, learning_rate, steps)
        values = record(os.path.join(options.work, name), flags, steps)
        arrays.update({f'{name}.{key}': array for key, array in values.items()})
        notes[name] = {'train.py flags': ' '.join(flags).replace(options.data, '<cuhk03>')
                       .replace(options.work, '<work>'),
                       'result': summary(values)}
        print(name, summary(values), flush=True)
    notes['made by'] = 'python studies/health_runs.py --work <work> --output ' + options.output
    os.makedirs(os.path.dirname(os.path.abspath(options.output)), exist_ok=True)
    np.savez_compressed(options.output, note=np.array(json.dumps(notes, indent=1)), **arrays)


if __name__ == '__main__':
    main()
