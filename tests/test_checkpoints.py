"""Checkpoints survive a crash at any point of writing, and `keep` prunes whole checkpoints."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tripletreid.checkpoints import TrainingCheckpoints, complete_checkpoints, latest_checkpoint


def small_setup(directory, keep=0):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    return model, TrainingCheckpoints(str(directory), model, optimizer, keep)


class Crash(Exception):
    pass


@pytest.mark.parametrize('moves_before_crash', [0, 1])
def test_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch,
                                                           moves_before_crash):
    model, checkpoints = small_setup(tmp_path)
    model.layers[0].kernel.assign(np.ones((3, 2)))
    checkpoints.save(1)
    model.layers[0].kernel.assign(np.full((3, 2), 7.0))
    moves = []

    def crashing_replace(source, target):
        if len(moves) == moves_before_crash:
            raise Crash  # as a kill: the data file (0) or also the index (1) still unmoved
        moves.append(target)
        os.rename(source, target)
    monkeypatch.setattr(os, 'replace', crashing_replace)
    with pytest.raises(Crash):
        checkpoints.save(2)
    monkeypatch.undo()
    assert list(complete_checkpoints(str(tmp_path))) == [1]
    restored, other = small_setup(tmp_path)
    assert other.restore_latest() == 1
    np.testing.assert_array_equal(restored.layers[0].kernel.numpy(), np.ones((3, 2)))
    other.save(3)  # the next save clears what the crash left
    assert sorted(complete_checkpoints(str(tmp_path))) == [1, 3]
    assert not [name for name in os.listdir(tmp_path) if 'partial' in name]


def test_an_index_without_all_its_data_is_passed_over(tmp_path):
    _, checkpoints = small_setup(tmp_path)
    checkpoints.save(1)
    checkpoints.save(2)
    for name in os.listdir(tmp_path):
        if name.startswith('checkpoint-2.data'):
            os.remove(tmp_path / name)
    assert latest_checkpoint(str(tmp_path)).endswith('checkpoint-1')


def test_keep_prunes_whole_old_checkpoints(tmp_path):
    _, checkpoints = small_setup(tmp_path, keep=2)
    for step in (0, 5, 10, 15):
        checkpoints.save(step)
    assert sorted(complete_checkpoints(str(tmp_path))) == [10, 15]
    assert sorted(os.listdir(tmp_path)) == sorted(
        f'checkpoint-{s}.{part}' for s in (10, 15)
        for part in ('index', 'data-00000-of-00001'))
    step = tf.train.load_variable(str(tmp_path / 'checkpoint-15'),
                                  'step/.ATTRIBUTES/VARIABLE_VALUE')
    assert step == 15


def test_a_failed_write_is_one_line_and_leaves_no_partial_files(tmp_path, monkeypatch):
    from tripletreid.errors import InputError
    _, checkpoints = small_setup(tmp_path)
    checkpoints.save(1)

    def full_disk(prefix):
        open(prefix + '.data-00000-of-00001', 'w').close()  # what it managed to write
        raise tf.errors.ResourceExhaustedError(None, None, 'No space left on device\nmore')
    monkeypatch.setattr(checkpoints.checkpoint, 'write', full_disk)
    with pytest.raises(InputError, match=r'checkpoint-2: cannot write the checkpoint '
                                         r'\(No space left on device\)$'):
        checkpoints.save(2)
    assert sorted(os.listdir(tmp_path)) == ['checkpoint-1.data-00000-of-00001',
                                            'checkpoint-1.index']
