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
from tripletreid.training_logs import read_scalars

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
    """The network's variables in checkpoint `step`: the trainable ones, which the checkpoint
    reaches first through the optimizer (so they are not under `model/`), and the moving
    statistics of the batch norms."""
    prefix = os.path.join(root, f'checkpoint-{step}')
    return {name: tf.train.load_variable(prefix, name)
            for name, _ in tf.train.list_variables(prefix)
            if name.startswith(('model/', 'optimizer/_trainable_variables/'))}


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
    """One device in float32. Also a checkpoint every 2 steps and the detailed logs, for the
    mixed-precision runs to compare with (neither changes the training)."""
    root = str(tmp_path_factory.mktemp('reference') / 'exp')
    run_train('--experiment_root', root, *data, *FLAGS, '--checkpoint_frequency', '2',
              '--detailed_logs')
    return root


@pytest.fixture(scope='module')
def one_step_report():
    """tests/helpers/distributed_check.py's JSON: one step on 2 mirrored CPU devices against
    one device, with synchronised and with fused batch norms."""
    check = os.path.join(ROOT, 'tests', 'helpers', 'distributed_check.py')
    result = subprocess.run([sys.executable, check],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report['replicas'] == 2
    return report


def test_mirrored_loss_and_gradients_equal_one_device(one_step_report):
    for loss, differences in one_step_report['synchronized'].items():
        assert differences['loss'] < 1e-5, loss
        assert differences['gradient'] < 1e-5, loss
        # Keras's synchronised batch norm takes the variance as E[x^2] - E[x]^2, which rounds
        # worse than one device's two-pass variance: small gradients differ a little more.
        assert max(differences['gradient_by_variable'].values()) < 1e-4, loss


def test_mirrored_fused_batch_norm_equals_one_device_on_halves(one_step_report):
    """train.py's default batch norm (fused, not synchronised) under `mirrored`: each replica
    normalises its half of the batch with that half's statistics. The reference is one device
    running the model on each half apart and mining the concatenated features, so the two do
    the same arithmetic on the same numbers and can be compared exactly, not within the
    (large, data-dependent) difference between half-batch and whole-batch statistics."""
    fused = one_step_report['fused']
    # The kernel that ran: lunet's 16 batch norms after convolutions (stem, 3 per stage and a
    # projection in stages 2-4) and the BNNeck's, as FusedBatchNormV3 forward and backward on
    # each of the 2 replicas.
    assert fused['layers'] == {'FusedBatchNormalization': 17}
    assert fused['synchronized'] == 0
    assert fused['ops'] == {'FusedBatchNormV3': 2 * 17, 'FusedBatchNormGradV3': 2 * 17}
    # The per-anchor losses are the same forward pass on the same inputs and weights (the
    # gather adds zeros): measured equal to the bit. The gradients differ only in summation
    # order (each replica's gradient of a variable is summed across replicas): measured 4e-7
    # of the largest gradient; per variable 2e-6 at most (up to 1.2e-5 in earlier versions of
    # the layer), for a batch-norm offset whose gradient is a sum of terms that nearly cancel.
    # Same bounds as the synchronised case.
    assert fused['loss'] < 1e-6
    assert fused['gradient'] < 1e-5
    assert max(fused['gradient_by_variable'].values()) < 1e-4
    # Moving statistics: Keras 3 makes them variables without aggregation, and TensorFlow's
    # mirrored variable then updates each replica's copy alone (values._on_write_update_replica,
    # aggregation NONE): no mean across replicas. Copy i holds the update from replica i's half
    # (measured equal to the bit, same kernel on the same numbers); what the variable reads,
    # and what a checkpoint stores, is replica 0's: the second half's statistics are dropped.
    # The bound, relative to the update's largest entry (an update is 1 - momentum = 1% or
    # 10% of a statistic of order 1), leaves room for a different reduction order in the
    # statistics (1e-6 of the statistic, 1e-4 of the update); the mean of the two halves'
    # updates, what an averaging aggregation would store, is measured 1.6 away.
    moving = fused['moving']
    for copy in ('replica_0', 'replica_1', 'read', 'checkpoint'):
        assert moving[copy] < 1e-3, copy
    assert moving['read_to_mean'] > 0.1


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
    # Only the chief writes: one log, one TensorBoard file per run, the curves, no worker's
    # leftovers.
    assert sorted(n for n in os.listdir(root) if not n.startswith('events.')) == sorted(
        ['args.json', 'train.log', 'training_curves.png',
         'checkpoint-0.index', 'checkpoint-0.data-00000-of-00001',
         f'checkpoint-{stopped}.index', f'checkpoint-{stopped}.data-00000-of-00001',
         f'checkpoint-{STEPS}.index', f'checkpoint-{STEPS}.data-00000-of-00001'])


def first_moments(root, step):
    """Adam's first moment of each trainable variable in checkpoint `step`, in order (the
    optimizer's slots alternate first and second moment; a LossScaleOptimizer nests Adam)."""
    prefix = os.path.join(root, f'checkpoint-{step}')
    slots = {}
    for name, _ in tf.train.list_variables(prefix):
        parts = name.split('/')  # .../_variables/<index>/.ATTRIBUTES/VARIABLE_VALUE
        if parts[0] == 'optimizer' and parts[-4] == '_variables':
            slots[int(parts[-3])] = tf.train.load_variable(prefix, name)
    indices = sorted(slots)
    assert all(np.all(slots[i] >= 0) for i in indices[1::2])  # second moments: squares
    return [slots[i] for i in indices[::2]]


def sixteen_bit(values, policy):
    """Whether every float32 value is a float16 / bfloat16 one (was computed in it)."""
    if policy == 'mixed_float16':
        return np.array_equal(values.astype(np.float16).astype(np.float32), values)
    return not np.any(values.view(np.uint32) & 0xFFFF)


# The triplet loss of these batches is in the soft margin's exponential tail (softplus(x) ~ e^x,
# x = d(a,p) - d(a,n) from -13 to -2, distances ~20), so an error dx in the distances is a
# relative error of about e^|dx| - 1 in an anchor's loss, and at most that in the mean. Measured
# at step 1 (same weights), per anchor: |dx| up to 0.03 in float16 (11 bits: 2^-11 of ~20 is
# 0.01 per rounding) and up to 0.2 in bfloat16 (8 bits: 0.08 per rounding). Mean loss of steps
# 1 and 2: float16 1.8% and 3.6% off float32, bfloat16 1.2% and 4.5%. The bounds hold while
# every anchor's |dx| stays under 0.095 (3x float16's) and 0.22 (bfloat16's); a 16-bit
# overflow (inf, NaN) or a broken forward pass is far outside.
LOSS_RTOL = {'mixed_float16': 0.1, 'mixed_bfloat16': 0.25}


@pytest.mark.parametrize('policy', ['mixed_float16', 'mixed_bfloat16'])
def test_mixed_precision_under_mirrored(data, reference, tmp_path, policy):
    root = str(tmp_path / policy)
    run_train('--experiment_root', root, *data, *FLAGS, '--distribution', 'mirrored',
              '--cpu_devices', '2', '--mixed_precision', policy, '--train_iterations', '2',
              '--detailed_logs')
    assert all(np.isfinite(loss) for _, loss, _ in log_rows(root))
    assert json.load(open(os.path.join(root, 'args.json')))['mixed_precision'] == policy
    assert all(np.all(np.isfinite(w)) for w in weights(root, 2).values())
    # The losses of the same 2 steps (same seed, same batches) as one float32 device, to full
    # precision (TensorBoard's), within what 16-bit rounding moves them (LOSS_RTOL).
    got, expected = (read_scalars(r, 'loss')['loss'] for r in (root, reference))
    assert sorted(got) == [1, 2]
    for step in got:
        assert abs(got[step] - expected[step]) <= LOSS_RTOL[policy] * expected[step], step
    # The network ran in the policy's 16-bit type: the features the loss sees (stored as
    # float32) are all 16-bit values; float32's are not. (A float32 run, e.g. a policy set
    # too late, would pass the loss bound.)
    features = np.memmap(os.path.join(root, 'embeddings.dat'), np.float32)
    assert sixteen_bit(features, policy)
    assert not sixteen_bit(np.memmap(os.path.join(reference, 'embeddings.dat'), np.float32),
                           policy)
    # The gradients' scale: Adam's first moments after step 2, per variable, against float32's.
    # Adam steps nearly the same whatever the gradients' scale, so neither the losses nor the
    # weights would show a loss scale (2^15 for float16) left in the gradients, or gradients
    # lost; the moments do. Measured norm ratios 0.92 to 1.18 for both policies (the
    # directions differ by 16% (float16) and 32% (bfloat16) of the norm: these gradients of
    # a nearly saturated loss are small differences of large terms); 3e4 to 4e4 with the
    # float16 loss scale left in. (No loss scaling at all goes unseen: measured the same as
    # with it, as this tiny run's float16 gradients do not underflow.)
    moments, reference_moments = first_moments(root, 2), first_moments(reference, 2)
    trainable = [n for n in weights(root, 2) if not n.startswith('model/')]
    assert len(moments) == len(reference_moments) == len(trainable) == 49
    unreached = 0  # the BNNeck's scale: without ID loss, no loss sees the feature after it
    for moment, reference_moment in zip(moments, reference_moments):
        if not np.any(reference_moment):
            unreached += 1
            assert not np.any(moment)
        else:
            assert 0.5 < np.linalg.norm(moment) / np.linalg.norm(reference_moment) < 2
    assert unreached == 1


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
