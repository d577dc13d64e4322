"""Interrupted and resumed training ends bit-identical to an uninterrupted run (issue 8).

Interruptions: SIGINT and SIGTERM (clean stop: the step finishes, a checkpoint is written) and
SIGKILL at random moments (whatever was not checkpointed is lost and redone). Checkpoints are
written every 2 steps, so many kills land while one is being written: the previous one must stay
loadable and `--resume` must pick the newest complete one. Every random part of training is
switched on: flip, crop, random erasing, the sampled triplet loss, and the ID and center losses.
Midway, the experiment root is moved: it must resume from its new place.
"""
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

from conftest import ROOT
from test_train import LINE, TINY

STEPS = 24
FLAGS = [*TINY, '--head_name', 'bnneck', '--train_iterations', str(STEPS),
         '--checkpoint_frequency', '2', '--deterministic', '--detailed_logs',
         '--flip_augment', '--crop_augment', '--pre_crop_height', '36', '--pre_crop_width', '18',
         '--random_erasing_prob', '0.5', '--loss', 'batch_sample', '--id_loss_weight', '1',
         '--label_smoothing', '0.1', '--center_loss_weight', '0.001']
# (signal, the step after whose log line it is sent, the most seconds it waits after that)
INTERRUPTIONS = [(signal.SIGINT, 3, 0.0), (signal.SIGKILL, 6, 0.05), (signal.SIGTERM, 9, 0.0),
                 (signal.SIGKILL, 12, 0.1), (signal.SIGKILL, 15, 0.02),
                 (signal.SIGKILL, 19, 0.08)]


def start(root, colour_dataset, resume):
    csv_path, image_root = colour_dataset
    flags = ['--resume'] if resume else ['--train_set', csv_path, '--image_root', image_root,
                                         *FLAGS]
    return subprocess.Popen([sys.executable, os.path.join(ROOT, 'train.py'),
                             '--experiment_root', root, *flags],
                            stderr=subprocess.PIPE, text=True)


def interrupt(proc, signum, at_step, delay):
    """Send `signum` `delay` seconds after step `at_step` is logged; return the exit code."""
    for line in proc.stderr:
        match = LINE.search(line)
        if match and int(match.group(1)) >= at_step:
            time.sleep(delay)
            proc.send_signal(signum)
            break
    rest = proc.stderr.read()
    code = proc.wait(timeout=120)
    assert code == (-signal.SIGKILL if signum == signal.SIGKILL else 0), rest[-2000:]
    return code


def final_state(root):
    """The final checkpoint's variables and the detailed logs of every step."""
    prefix = os.path.join(root, f'checkpoint-{STEPS}')
    state = {name: tf.train.load_variable(prefix, name) for name, _ in
             tf.train.list_variables(prefix) if name != '_CHECKPOINTABLE_OBJECT_GRAPH'}
    for name in ('fids', 'losses', 'embeddings'):
        with open(os.path.join(root, f'{name}.dat'), 'rb') as f:
            state[name] = f.read()
    return state


def test_interrupted_runs_end_bit_identical(tmp_path, colour_dataset):
    reference = str(tmp_path / 'reference')
    proc = start(reference, colour_dataset, resume=False)
    proc.stderr.read()
    assert proc.wait(timeout=300) == 0

    root = str(tmp_path / 'interrupted')
    rng = random.Random(0)
    for i, (signum, at_step, most) in enumerate(INTERRUPTIONS):
        interrupt(start(root, colour_dataset, resume=i > 0), signum, at_step,
                  rng.uniform(0, most))
        if i == 2:  # the experiment root moves (to another cluster node, say) and goes on there
            shutil.move(root, root + '_moved')
            root += '_moved'
    proc = start(root, colour_dataset, resume=True)
    log = proc.stderr.read()
    assert proc.wait(timeout=300) == 0, log[-2000:]

    expected, got = final_state(reference), final_state(root)
    assert sorted(expected) == sorted(got)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    assert not [n for n in os.listdir(root) if n.startswith('.checkpoint-')]  # no leftovers
