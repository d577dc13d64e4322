"""train.py end to end: learning on real crops, interrupts, resume, args.json, bad input."""
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, cuhk03_csv, write_colour_dataset
from tripletreid.errors import InputError

LINE = re.compile(r'iter:\s*(\d+), loss min\|avg\|max: [\d.]+\|([\d.]+)\|\s*[\d.]+, '
                  r'batch-p@\d+: ([\d.]+)%')
TINY = ['--model_name', 'lunet', '--head_name', 'fc1024', '--embedding_dim', '16',
        '--batch_p', '4', '--batch_k', '2', '--net_input_height', '32',
        '--net_input_width', '16', '--loading_threads', '2', '--seed', '1']


def run_train(*flags, check=True, **kwargs):
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py'), *flags],
                            capture_output=True, text=True, timeout=300, **kwargs)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def log_rows(experiment_root):
    with open(os.path.join(experiment_root, 'train.log')) as f:
        return [(int(s), float(loss), float(p)) for s, loss, p in LINE.findall(f.read())]


def checkpoint_steps(root):
    return sorted(int(n[len('checkpoint-'):-len('.index')]) for n in os.listdir(root)
                  if n.startswith('checkpoint-') and n.endswith('.index'))


def test_short_training_on_real_crops_learns(tmp_path):
    import train
    csv_path, image_root = cuhk03_csv(tmp_path, 'train', max_ids=60)
    root = str(tmp_path / 'exp')
    train.main(['--experiment_root', root, '--train_set', csv_path, '--image_root', image_root,
                '--model_name', 'lunet', '--head_name', 'fc1024', '--embedding_dim', '32',
                '--batch_p', '8', '--batch_k', '4', '--net_input_height', '64',
                '--net_input_width', '32', '--pre_crop_height', '72', '--pre_crop_width', '36',
                '--flip_augment', '--crop_augment', '--learning_rate', '1e-3',
                '--train_iterations', '300', '--decay_start_iteration', '200',
                '--checkpoint_frequency', '0', '--loading_threads', '2', '--seed', '0'])
    rows = np.array(log_rows(root))
    first, last = rows[:50], rows[-50:]
    assert last[:, 1].mean() < 0.8 * first[:, 1].mean()  # loss
    assert last[:, 2].mean() > first[:, 2].mean() + 10  # in-batch precision, in points
    assert checkpoint_steps(root) == [0, 300]


def interrupt_training(root, colour_dataset, signum, at_step):
    """Start a long train.py, send `signum` once step `at_step` is logged; return its stderr."""
    csv_path, image_root = colour_dataset
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, 'train.py'), '--experiment_root', root,
         '--train_set', csv_path, '--image_root', image_root, *TINY,
         '--train_iterations', '100000', '--checkpoint_frequency', '1000'],
        stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        match = LINE.search(line)
        if match and int(match.group(1)) >= at_step:
            proc.send_signal(signum)
            break
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, rest[-2000:]
    return rest


def test_sigint_checkpoints_then_resume_finishes(tmp_path, colour_dataset):
    root = str(tmp_path / 'exp')
    assert 'Interrupted on request' in interrupt_training(root, colour_dataset,
                                                          signal.SIGINT, 5)
    last_logged = log_rows(root)[-1][0]
    assert checkpoint_steps(root) == [0, last_logged]

    # Resume with other flags: the stored ones win, with a warning. args.json says 100000
    # steps; shorten that by hand to keep the test quick.
    args_file = os.path.join(root, 'args.json')
    stored = json.load(open(args_file))
    stored['train_iterations'] = last_logged + 7
    json.dump(stored, open(args_file, 'w'))
    result = run_train('--experiment_root', root, '--resume', '--batch_p', '3',
                       '--train_iterations', '5')
    assert 'Warning: for `--batch_p` the value 4' in result.stderr
    assert 'Warning: for `--train_iterations`' in result.stderr
    assert f'Resumed from step {last_logged}' in result.stderr
    assert checkpoint_steps(root)[-1] == last_logged + 7
    assert log_rows(root)[-1][0] == last_logged + 7
    # P=4 from args.json is what the resumed run uses.
    assert 'batch_p: 4' in result.stderr

    again = run_train('--experiment_root', root, '--resume')
    assert 'Training finished already' in again.stderr


def test_sigterm_also_stops_cleanly(tmp_path, colour_dataset):
    root = str(tmp_path / 'exp')
    assert 'SIGTERM received' in interrupt_training(root, colour_dataset, signal.SIGTERM, 1)
    assert checkpoint_steps(root) == [0, log_rows(root)[-1][0]]


@pytest.mark.parametrize('case, flags, message', [
    ('not empty', ['--train_iterations', '2'], 'is not empty; add --resume'),
    ('no args.json', ['--resume'], 'args.json: no such file'),
])
def test_experiment_root_refusals(tmp_path, colour_dataset, case, flags, message):
    csv_path, image_root = colour_dataset
    root = tmp_path / 'exp'
    root.mkdir()
    (root / 'something').write_text('precious')
    result = run_train('--experiment_root', str(root), '--train_set', csv_path,
                       '--image_root', image_root, *TINY, *flags, check=False)
    assert result.returncode == 2
    assert message in result.stderr and 'Traceback' not in result.stderr
    assert (root / 'something').read_text() == 'precious'


def test_bad_training_inputs_are_one_line_errors(tmp_path, colour_dataset):
    csv_path, image_root = colour_dataset
    cases = [
        (['--batch_p', '20'], '--batch_p 20 needs at least that many identities'),
        (['--margin', 'hard'], "'hard' is neither `soft`, `none` nor a number"),
    ]
    for i, (flags, message) in enumerate(cases, start=1):
        result = run_train('--experiment_root', str(tmp_path / f'e{i}'), '--train_set',
                           csv_path, '--image_root', image_root, *TINY, *flags, check=False)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and 'Traceback' not in result.stderr
    os.remove(os.path.join(image_root, 'id03_2.jpg'))
    missing = run_train('--experiment_root', str(tmp_path / 'e0'), '--train_set', csv_path,
                        '--image_root', image_root, *TINY, check=False)
    assert missing.returncode == 2
    assert re.search(r'train.csv:15: image .*id03_2.jpg is missing', missing.stderr)


def test_detailed_logs_and_tensorboard(tmp_path, colour_dataset):
    import train
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    csv_path, image_root = colour_dataset
    root = str(tmp_path / 'exp')
    train.main(['--experiment_root', root, '--train_set', csv_path, '--image_root', image_root,
                *TINY, '--train_iterations', '3', '--detailed_logs'])
    names = {line.split(',')[1].strip(): line.split(',')[0] for line in open(csv_path)}
    fid_length = max(len(name) for name in names)
    fids = np.memmap(os.path.join(root, 'fids.dat'), f'S{fid_length}', 'r', shape=(3, 8))
    losses = np.memmap(os.path.join(root, 'losses.dat'), np.float32, 'r', shape=(3, 8))
    embs = np.memmap(os.path.join(root, 'embeddings.dat'), np.float32, 'r', shape=(3, 8, 16))
    for step in range(3):
        identities = [names[f.decode()] for f in fids[step]]
        assert len(set(identities)) == 4  # P=4 identities, K=2 images each, in order
        assert identities[0::2] == identities[1::2]
        np.testing.assert_allclose(losses[step].mean(), log_rows(root)[step][1], atol=1e-3)
        assert np.abs(embs[step]).sum() > 0
    events = EventAccumulator(root, size_guidance={'histograms': 0, 'tensors': 0})
    events.Reload()
    tags = set(events.Tags()['tensors'])
    assert {'loss', 'batch_top1', 'batch_prec_at_1', 'active_count', 'learning_rate',
            'timings/seconds_per_iteration', 'losses', 'dists/all', 'dists/positive',
            'dists/negative', 'embedding_lengths'} <= tags


def test_eta_comes_from_a_window_of_steps_after_the_first():
    from tripletreid.training_logs import Eta
    eta = Eta(window=3, tracing=2)
    assert eta.update(100.0, 10) is None  # step 1 ends after 100 s of tracing: no estimate
    assert eta.update(100.5, 9) is None   # step 2 traced again (0.5 s): the clock starts
    assert eta.update(101.0, 8) == 4.0    # one step of 0.5 s since, 8 to go
    assert eta.update(102.0, 7) == 7 * 1.5 / 2
    assert eta.update(103.0, 6) == 6 * 2.5 / 3
    assert eta.update(107.0, 5) == 5 * (107 - 101) / 3  # the window forgets step 3's start


def test_schedule_warning_and_extension_notes():
    from tripletreid.experiment import TrainConfig, extended_schedule, schedule_warning
    short = TrainConfig(experiment_root='e', train_iterations=800)  # decay from 15000
    assert '15000 is not below --train_iterations 800' in schedule_warning(short)
    assert '--decay_start_iteration 480' in schedule_warning(short)
    for fine in (dict(decay_start_iteration=500), dict(decay_start_iteration=-1),
                 dict(lr_schedule='cosine')):
        assert schedule_warning(TrainConfig(experiment_root='e', train_iterations=800,
                                            **fine)) is None
    assert 'stays constant' in extended_schedule(short, 1000)
    assert 'constant so far, decays from step 900' in extended_schedule(
        TrainConfig(experiment_root='e', train_iterations=800, decay_start_iteration=900), 1000)
    assert 'stretched to reach 0.001x at step 1000 instead of 800' in extended_schedule(
        TrainConfig(experiment_root='e', train_iterations=800, decay_start_iteration=500), 1000)


def test_a_finished_run_is_extended_and_args_json_records_it(tmp_path, capsys):
    import train
    folder = tmp_path / 'images'
    folder.mkdir()
    csv_path = write_colour_dataset(str(folder))
    with open(csv_path) as f:  # identity 0 keeps 1 of its 4 images: fewer than K=2
        rows = f.readlines()[3:]
    with open(csv_path, 'w') as f:
        f.writelines(rows)
    root = str(tmp_path / 'exp')
    train.main(['--experiment_root', root, '--train_set', csv_path, '--image_root', str(folder),
                *TINY, '--train_iterations', '4', '--checkpoint_frequency', '0',
                '--detailed_logs', '--log_every', '3'])
    first = capsys.readouterr().err
    assert '1 of 8 identities have fewer than K=2 images' in first
    assert 'WARNING' in first and '15000 is not below --train_iterations 4' in first
    assert [int(step) for step in re.findall(r'iter:\s*(\d+)', first)] == [1, 3, 4]
    # ^ the console: the first, every third and the last step
    assert [row[0] for row in log_rows(root)] == [1, 2, 3, 4]  # train.log: every step

    with pytest.raises(InputError, match='--extend_to 4 must be above the 4 steps'):
        train.main(['--experiment_root', root, '--resume', '--extend_to', '4'])
    train.main(['--experiment_root', root, '--resume', '--extend_to', '6'])
    second = capsys.readouterr().err
    assert 'Extending the run from 4 to 6 steps: the learning rate stays constant' in second
    assert 'Resumed from step 4' in second
    assert checkpoint_steps(root) == [0, 4, 6]
    assert [row[0] for row in log_rows(root)] == [1, 2, 3, 4, 5, 6]
    assert json.load(open(os.path.join(root, 'args.json')))['train_iterations'] == 6
    assert os.path.getsize(os.path.join(root, 'losses.dat')) == 6 * 8 * 4  # steps x P*K x 4 B


def test_a_float32_run_after_a_mixed_one_computes_in_float32():
    """Keras' precision policy is global: each run sets its own, also float32's."""
    import keras
    import tensorflow as tf

    from tripletreid import training
    from tripletreid.experiment import TrainConfig
    strategy = tf.distribute.get_strategy()
    config = TrainConfig(experiment_root='e', model_name='lunet', embedding_dim=8)
    mixed = dataclasses.replace(config, mixed_precision='mixed_bfloat16')
    try:
        assert training.build_training(mixed, strategy, 4)[0].compute_dtype == 'bfloat16'
        assert training.build_training(config, strategy, 4)[0].compute_dtype == 'float32'
    finally:
        keras.mixed_precision.set_global_policy('float32')
