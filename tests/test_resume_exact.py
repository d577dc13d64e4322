"""Interrupted and resumed training ends bit-identical to an uninterrupted run (issue 8).

Interruptions: SIGINT and SIGTERM (clean stop: the step finishes, a checkpoint is written),
SIGKILL at random moments (whatever was not checkpointed is lost and redone), and SIGKILL while
a checkpoint is being written (sent as soon as its temporary files appear): the previous one must
stay loadable and `--resume` must pick the newest complete one. Each resume must start from the
step the interruption left: the clean stop's, or the newest checkpoint whose index is on disk.
Every random part of training is switched on: flip, crop, random erasing, the sampled triplet
loss, the ID (ArcFace) and center losses, and the verification loss's pairs. Midway, the
experiment root is moved: it must resume from its new place.
"""
import glob
import os
import random
import re
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
         '--label_smoothing', '0.1', '--center_loss_weight', '0.001', '--id_loss', 'arcface',
         '--verification_loss_weight', '1']
# (signal, the step after whose log line it is sent, the most seconds it waits after that);
# WRITE: SIGKILL during the first checkpoint write after that step.
WRITE = 'checkpoint write'
INTERRUPTIONS = [(signal.SIGINT, 3, 0.0), (signal.SIGKILL, 6, 0.05), (signal.SIGTERM, 9, 0.0),
                 (WRITE, 11, 0.0), (signal.SIGKILL, 15, 0.02), (signal.SIGKILL, 19, 0.08)]
RESUMED = re.compile(r'Resumed from step (\d+)')
STOPPED = re.compile(r'Interrupted on request at step (\d+)')
PARTIAL = re.compile(r'^\.checkpoint-(\d+)\.partial')


def start(root, colour_dataset, resume):
    csv_path, image_root = colour_dataset
    flags = ['--resume'] if resume else ['--train_set', csv_path, '--image_root', image_root,
                                         *FLAGS]
    return subprocess.Popen([sys.executable, os.path.join(ROOT, 'train.py'),
                             '--experiment_root', root, *flags],
                            stderr=subprocess.PIPE, text=True)


def interrupt(proc, root, signum, at_step, delay):
    """Send `signum` `delay` seconds after step `at_step` is logged (for WRITE: SIGKILL once a
    checkpoint's temporary files appear). Returns the step the run said it resumed from (None
    for a new run), the step the next run must resume from, and whether a WRITE kill left an
    unfinished checkpoint behind."""
    resumed = None
    for line in proc.stderr:
        resumed = resumed or RESUMED.search(line)
        match = LINE.search(line)
        if match and int(match.group(1)) >= at_step:
            if signum == WRITE:
                unfinished = kill_during_write(proc, root)
                return resumed and int(resumed.group(1)), newest_index(root), unfinished
            time.sleep(delay)
            proc.send_signal(signum)
            break
    rest = proc.stderr.read()
    code = proc.wait(timeout=120)
    assert code == (-signal.SIGKILL if signum == signal.SIGKILL else 0), rest[-2000:]
    next_start = (newest_index(root) if signum == signal.SIGKILL
                  else int(STOPPED.search(rest).group(1)))
    return resumed and int(resumed.group(1)), next_start, False


def newest_index(root):
    """The step of the newest checkpoint whose index file is on disk: written last, it makes
    the checkpoint complete."""
    return max(int(re.search(r'checkpoint-(\d+)\.index$', path).group(1))
               for path in glob.glob(os.path.join(root, 'checkpoint-*.index')))


def kill_during_write(proc, root):
    """SIGKILL `proc` as soon as a checkpoint's temporary files appear in `root`. Returns
    whether the kill left that checkpoint unfinished (its files still temporary, its index
    never renamed into place) rather than landing after its last rename."""
    while proc.poll() is None:
        steps = [int(match.group(1)) for match in map(PARTIAL.match, os.listdir(root)) if match]
        if steps:
            proc.kill()
            proc.wait(timeout=120)
            unfinished = any(PARTIAL.match(name) for name in os.listdir(root))
            assert not unfinished or not os.path.exists(
                os.path.join(root, f'checkpoint-{steps[0]}.index'))
            return unfinished
    raise AssertionError('the run ended before a checkpoint write could be interrupted')


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
    expected_start = None
    for i, (signum, at_step, most) in enumerate(INTERRUPTIONS):
        resumed, next_start, unfinished = interrupt(
            start(root, colour_dataset, resume=i > 0), root, signum, at_step,
            rng.uniform(0, most))
        assert resumed == expected_start, (signum, at_step)
        expected_start = next_start
        while signum == WRITE and not unfinished:  # the write outran the kill: again
            resumed, expected_start, unfinished = interrupt(
                start(root, colour_dataset, resume=True), root, WRITE, 0, 0.0)
            assert resumed == next_start
            next_start = expected_start
        if i == 2:  # the experiment root moves (to another cluster node, say) and goes on there
            shutil.move(root, root + '_moved')
            root += '_moved'
    proc = start(root, colour_dataset, resume=True)
    log = proc.stderr.read()
    assert proc.wait(timeout=300) == 0, log[-2000:]
    assert int(RESUMED.search(log).group(1)) == expected_start

    expected, got = final_state(reference), final_state(root)
    assert sorted(expected) == sorted(got)
    assert any('verifier' in name for name in expected)  # the verification classifier too
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    assert not [n for n in os.listdir(root) if n.startswith('.checkpoint-')]  # no leftovers
