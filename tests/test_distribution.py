"""--distribution: mirrored on 2 logical CPU devices and multi_worker with 2 local processes
train as one device on the same global batch (issue 7)."""
import json
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT
from test_train import LINE, log_rows, run_train

STEPS = 12
# lunet's 256-D feature through a BNNeck without projection: no parameter whose gradient is
# zero in theory (an embedding bias is, under a translation-invariant loss), where Adam would
# turn rounding noise into full-size steps.
FLAGS = ['--model_name', 'lunet', '--head_name', 'bnneck', '--embedding_dim', '256',
         '--batch_p', '4', '--batch_k', '2', '--net_input_height', '32',
         '--net_input_width', '16', '--loading_threads', '2', '--seed', '1',
         '--flip_augment', '--sync_batch_norm', '--train_iterations', str(STEPS),
         '--checkpoint_frequency', '0']


def weights(root, step=STEPS):
    prefix = os.path.join(root, f'checkpoint-{step}')
    return {name: tf.train.load_variable(prefix, name)
            for name, _ in tf.train.list_variables(prefix) if name.startswith('model/')}


def assert_same_training(root, reference):
    np.testing.assert_allclose(np.array(log_rows(root))[:, 1],
                               np.array(log_rows(reference))[:, 1], rtol=1e-4)
    expected, got = weights(reference), weights(root)
    assert sorted(got) == sorted(expected)
    for name in expected:  # what differs is rounding, grown over the steps (about 1e-5 each)
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-3, atol=1e-4,
                                   err_msg=name)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    from conftest import write_colour_dataset
    folder = tmp_path_factory.mktemp('images')
    return ['--train_set', write_colour_dataset(str(folder)), '--image_root', str(folder)]


@pytest.fixture(scope='module')
def reference(data, tmp_path_factory):
    root = str(tmp_path_factory.mktemp('reference') / 'exp')
    run_train('--experiment_root', root, *data, *FLAGS)
    return root


def test_mirrored_loss_and_gradients_equal_one_device():
    check = os.path.join(ROOT, 'tests', 'helpers', 'distributed_check.py')
    result = subprocess.run([sys.executable, check],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for loss, differences in report.items():
        assert differences['loss'] < 1e-5, loss
        assert differences['gradient'] < 1e-5, loss
        # Keras's synchronised batch norm takes the variance as E[x^2] - E[x]^2, which rounds
        # worse than one device's two-pass variance: small gradients differ a little more.
        assert max(differences['gradient_by_variable'].values()) < 1e-4, loss


def test_mirrored_training_equals_one_device(data, reference, tmp_path):
    root = str(tmp_path / 'mirrored')
    result = run_train('--experiment_root', root, *data, *FLAGS, '--distribution', 'mirrored',
                       '--cpu_devices', '2')
    assert 'Training on 2 replicas (MirroredStrategy)' in result.stderr
    assert_same_training(root, reference)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(('127.0.0.1', 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(root, flags):
    cluster = {'worker': [f'127.0.0.1:{port}' for port in free_ports(2)]}
    return [subprocess.Popen(
        [sys.executable, os.path.join(ROOT, 'train.py'), '--experiment_root', root, *flags,
         '--distribution', 'multi_worker'],
        env={**os.environ, 'TF_CONFIG': json.dumps(
            {'cluster': cluster, 'task': {'type': 'worker', 'index': index}})},
        stderr=subprocess.PIPE, text=True) for index in range(2)]


def finish(workers):
    logs = [worker.communicate(timeout=300)[1] for worker in workers]
    for worker, log in zip(workers, logs):
        assert worker.returncode == 0, log[-3000:]
    return logs


def test_multi_worker_stops_together_resumes_and_equals_one_process(data, reference, tmp_path):
    root = str(tmp_path / 'multi_worker')
    chief, other = start_workers(root, [*data, *FLAGS])
    for line in chief.stderr:  # stop the non-chief only: both must stop at the same step
        match = LINE.search(line)
        if match and int(match.group(1)) >= 2:
            other.send_signal(signal.SIGTERM)
            break
    logs = finish([chief, other])
    stopped = log_rows(root)[-1][0]
    assert 'Interrupted on request' in logs[0] and stopped < STEPS
    assert sorted(n for n in os.listdir(root) if n.endswith('.index')) == [
        'checkpoint-0.index', f'checkpoint-{stopped}.index']
    finish(start_workers(root, ['--resume']))
    assert_same_training(root, reference)
    # Only the chief writes: one log, one TensorBoard file per run, no worker's leftovers.
    assert sorted(n for n in os.listdir(root) if not n.startswith('events.')) == sorted(
        ['args.json', 'train.log', 'checkpoint-0.index', 'checkpoint-0.data-00000-of-00001',
         f'checkpoint-{stopped}.index', f'checkpoint-{stopped}.data-00000-of-00001',
         f'checkpoint-{STEPS}.index', f'checkpoint-{STEPS}.data-00000-of-00001'])


@pytest.mark.parametrize('policy', ['mixed_float16', 'mixed_bfloat16'])
def test_mixed_precision_under_mirrored(data, tmp_path, policy):
    root = str(tmp_path / policy)
    run_train('--experiment_root', root, *data, *FLAGS, '--distribution', 'mirrored',
              '--cpu_devices', '2', '--mixed_precision', policy, '--train_iterations', '2')
    assert all(np.isfinite(loss) for _, loss, _ in log_rows(root))
    assert json.load(open(os.path.join(root, 'args.json')))['mixed_precision'] == policy
    assert all(np.all(np.isfinite(w)) for w in weights(root, 2).values())


@pytest.mark.parametrize('flags, env, message', [
    (['--distribution', 'mirrored', '--cpu_devices', '2', '--batch_p', '3'], {},
     'P=3 identities per batch do not divide among 2 replicas'),
    (['--distribution', 'multi_worker'], {'TF_CONFIG': ''},
     '--distribution multi_worker needs the TF_CONFIG environment variable'),
    (['--distribution', 'multi_worker'], {'TF_CONFIG': '{"cluster": 1}'},
     'TF_CONFIG must be JSON with "cluster" and "task"'),
])
def test_distribution_refusals(data, tmp_path, flags, env, message):
    root = tmp_path / 'exp'
    result = run_train('--experiment_root', str(root), *data, *FLAGS, *flags, check=False,
                       env={**os.environ, **env})
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr.strip().splitlines()[-1]
    assert not root.exists()
