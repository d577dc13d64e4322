"""The P and K curriculum: sizes by step, its batches, resuming mid-schedule, its flags."""
import collections
import os
import re
import shutil

import numpy as np
import pytest

from tripletreid.errors import InputError
from tripletreid import csv_dataset
from tripletreid.curriculum import Curriculum
from test_pipeline import _args, train_stream
from test_train import TINY, log_rows


@pytest.mark.parametrize('sizes, steps, start, expected', [
    # 16 steps in 4 stages of 4: P 2 -> 4 -> 6 -> 8, K 2 -> 2 -> 3 -> 3, then P=10, K=4.
    ((10, 4), 16, (2, 2),
     [(2, 2)] * 4 + [(4, 2)] * 4 + [(6, 3)] * 4 + [(8, 3)] * 4 + [(10, 4)] * 2),
    # Fewer steps than stages: the stages cut to nothing are left out, the start is kept.
    ((10, 4), 2, (2, 2), [(2, 2), (6, 3), (10, 4), (10, 4)]),
    # Only K grows; stages of equal sizes merge.
    ((4, 4), 4, (4, 2), [(4, 2), (4, 2), (4, 3), (4, 3), (4, 4)]),
    ((8, 4), 0, (2, 2), [(8, 4)] * 3),  # no curriculum
])
def test_sizes_by_step(sizes, steps, start, expected):
    curriculum = Curriculum(*sizes, steps, *start)
    assert [curriculum.sizes(step) for step in range(len(expected))] == expected


def test_spans_from_mid_schedule():
    curriculum = Curriculum(10, 4, 16, 2, 2)
    assert curriculum.spans(0)[0] == (0, 4, 2, 2)
    assert curriculum.spans(6) == [(6, 8, 4, 2), (8, 12, 6, 3), (12, 16, 8, 3),
                                   (16, None, 10, 4)]
    assert curriculum.spans(8)[0] == (8, 12, 6, 3)
    assert curriculum.spans(40) == [(40, None, 10, 4)]


@pytest.fixture
def colour_training_set(colour_dataset):
    csv_path, root = colour_dataset
    dataset = csv_dataset.read_csv(csv_path)
    _, labels = np.unique(dataset.pids, return_inverse=True)
    return dataset, root, labels


def take(dataset, root, labels, args, curriculum, start, count):
    stream = train_stream(dataset, root, args, labels, start, curriculum)
    return [tuple(t.numpy() for t in batch) for batch in stream.take(count)]


def test_batches_have_the_scheduled_sizes_and_resume_exactly(colour_training_set):
    dataset, root, labels = colour_training_set
    args = _args(batch_p=6, batch_k=4, flip_augment=True, crop_augment=True)
    curriculum = Curriculum(6, 4, 8, 2, 2)  # (2, 2), (3, 2), (4, 3), (5, 3), (6, 4)
    full = take(dataset, root, labels, args, curriculum, 0, 12)
    for step, (images, batch_labels, _) in enumerate(full):
        p, k = curriculum.sizes(step)
        assert images.shape == (p * k, 32, 16, 3)
        counts = collections.Counter(batch_labels)
        assert len(counts) == p and set(counts.values()) == {k}
        assert list(batch_labels[::k]) == list(counts)  # identity-major, K images each
    assert [len(b[1]) for b in full] == [4, 4, 6, 6, 12, 12, 15, 15, 24, 24, 24, 24]
    # Resuming mid-stage (3, 5) and at a stage boundary (6) gives the batches of the full run,
    # augmentation included.
    for start in (3, 5, 6):
        resumed = take(dataset, root, labels, args, curriculum, start, 12 - start)
        for a, b in zip(full[start:], resumed):
            for x, y in zip(a, b):
                np.testing.assert_array_equal(x, y)
    # After the curriculum, the batches are those of a run without one.
    plain = take(dataset, root, labels, args, None, 8, 4)
    for a, b in zip(full[8:], plain):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def copy_experiment_at(source, target, step):
    """A copy of experiment `source` as it stood when the checkpoint of `step` was written."""
    os.makedirs(target)
    shutil.copy(os.path.join(source, 'args.json'), target)
    for name in os.listdir(source):
        if name.startswith(f'checkpoint-{step}.'):
            shutil.copy(os.path.join(source, name), target)


def learning_rates(root):
    from tripletreid.training_logs import read_scalars
    return read_scalars(root, 'learning_rate')['learning_rate']


def test_resume_mid_curriculum_and_mid_warmup(tmp_path, colour_dataset):
    import train
    csv_path, image_root = colour_dataset
    full, resumed = str(tmp_path / 'full'), str(tmp_path / 'resumed')
    train.main(['--experiment_root', full, '--train_set', csv_path, '--image_root', image_root,
                *TINY, '--train_iterations', '10', '--checkpoint_frequency', '3',
                '--curriculum_steps', '8', '--curriculum_start_p', '2', '--warmup_iterations',
                '6', '--learning_rate', '1e-3', '--detailed_logs'])
    # Rows of [P*K]: a smaller batch of the curriculum fills the start of its row.
    losses = np.memmap(os.path.join(full, 'losses.dat'), np.float32, 'r', shape=(10, 8))
    assert np.isfinite(losses[0, :4]).all() and np.isnan(losses[0, 4:]).all()
    assert np.isfinite(losses[9]).all()
    copy_experiment_at(full, resumed, 3)
    train.main(['--experiment_root', resumed, '--resume'])
    log = open(os.path.join(resumed, 'train.log')).read()
    assert 'Resumed from step 3' in log
    # P grows 2, 2, 3, 3 (stages of 2 steps, equal ones merged), then 4 from step 9 on.
    for p, step in ((2, 4), (3, 5), (4, 9)):
        assert f'Batches of P={p} identities of K=2 images from step {step} on' in log
    # The same batches and learning rates as the uninterrupted run: the same losses.
    np.testing.assert_allclose(np.array(log_rows(resumed))[:, 1],
                               np.array(log_rows(full))[3:, 1], rtol=1e-4)
    rates = learning_rates(full)
    assert rates[1] == pytest.approx(1e-3 / 6) and rates[6] == rates[10] == pytest.approx(1e-3)
    assert learning_rates(resumed) == pytest.approx({s: rates[s] for s in range(4, 11)})


@pytest.mark.parametrize('flags, message', [
    (['--curriculum_steps', '5', '--curriculum_start_p', '6'],
     '--curriculum_start_p 6 is larger than --batch_p 4'),
    (['--curriculum_steps', '5', '--curriculum_start_k', '3'],
     '--curriculum_start_k 3 is larger than --batch_k 2'),
    (['--curriculum_start_p', '2'], '--curriculum_start_p needs --curriculum_steps'),
    (['--curriculum_steps', '20'], '--curriculum_steps 20 must be less than --train_iterations 20'),
    (['--warmup_iterations', '30'], '--warmup_iterations 30 must be less than --train_iterations'),
])
def test_bad_combinations_are_input_errors(tmp_path, flags, message):
    from tripletreid import experiment
    root = tmp_path / 'exp'
    argv = ['--experiment_root', str(root), '--train_set', 'train.csv', *TINY,
            '--train_iterations', '20', *flags]
    with pytest.raises(InputError, match=re.escape(message)):
        experiment.resolve(experiment.build_train_parser(), argv)
    assert not root.exists()  # refused before anything is written
