"""Training health: the detector on hand-made sequences, its advice, and on real runs."""
import math
import os
import re

import numpy as np
import pytest

from tripletreid import experiment, health

RNG = np.random.default_rng(0)
SPREAD_OUT = RNG.normal(size=(8, 4))                     # spread about 1
ON_ONE_POINT = 5 + 1e-3 * RNG.normal(size=(8, 4))       # spread about 2e-4


def test_collapse_loss_per_margin():
    assert health.collapse_loss('soft') == pytest.approx(0.6931, abs=1e-4)
    assert health.collapse_loss(0.2) == 0.2
    assert health.collapse_loss('none') == 0.0


def test_spread():
    assert health.spread(np.ones((4, 3))) == 0.0
    assert health.spread(np.zeros((4, 3))) == 0.0  # everything on the origin is collapsed too
    assert health.spread([[1.0, 0.0], [-1.0, 0.0]]) == 1.0  # around the origin
    assert health.spread([[10.0, 1.0], [10.0, -1.0]]) == pytest.approx(1 / math.sqrt(101))
    assert health.spread(1e-6 * SPREAD_OUT) == pytest.approx(health.spread(SPREAD_OUT))
    assert health.spread(ON_ONE_POINT) < 1e-3


def test_episode_needs_patience_to_start_and_to_end():
    episode = health.Episode(patience=3)
    looks_bad = [1, 1, 0, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0]
    changes = [step for step, bad in enumerate(looks_bad)
               if episode.update(step, starting=bad, ending=not bad)]
    assert changes == [5, 12]  # three bad steps in a row (3-5), then three good ones (10-12)
    assert not episode.active and episode.since == 5


def feed(monitor, steps, loss, embeddings, first, precision=0.3, active=1.0):
    """Feed `steps` identical steps from step `first` on; return [(kind, started, step)]."""
    return [(event.kind, event.started, event.step)
            for step in range(first, first + steps)
            for event in monitor.update(step, loss, health.spread(embeddings), precision, active)]


def test_collapse_flagged_once_when_it_starts_and_once_when_it_ends():
    monitor = health.HealthMonitor('soft', patience=10)
    assert feed(monitor, 20, 1.2, SPREAD_OUT, 1) == []
    assert feed(monitor, 30, 0.70, ON_ONE_POINT, 21) == [('collapse', True, 30)]
    assert monitor.markers() == ['COLLAPSED'] and monitor.collapse.since == 30
    assert feed(monitor, 30, 0.5, SPREAD_OUT, 51) == [('collapse', False, 60)]
    assert monitor.markers() == []


def test_brief_dips_are_not_collapses():
    monitor = health.HealthMonitor('soft', patience=10)
    for step in range(1, 200):
        collapsed = step % 10 < 9  # nine collapsed-looking steps, then a healthy one
        monitor.update(step, 0.69 if collapsed else 1.0,
                       health.spread(ON_ONE_POINT if collapsed else SPREAD_OUT), 0.3, 1.0)
        assert not monitor.collapse.active


@pytest.mark.parametrize('margin, collapsed_loss', [(0.2, 0.2), ('none', 0.0), ('soft', 0.69)])
def test_collapse_value_follows_the_margin(margin, collapsed_loss):
    monitor = health.HealthMonitor(margin, patience=5)
    assert feed(monitor, 5, collapsed_loss, ON_ONE_POINT, 1) == [('collapse', True, 5)]


def test_a_divergence_is_not_a_collapse():
    # All embeddings far out on nearly one point, but the loss far above the collapse value.
    monitor = health.HealthMonitor('soft', patience=5)
    assert feed(monitor, 50, 25.0, ON_ONE_POINT, 1) == []


def test_stall_flagged_once_and_ended_by_progress():
    monitor = health.HealthMonitor('soft', patience=3, window=20)
    assert feed(monitor, 30, 1.0, SPREAD_OUT, 1) == [('stall', True, 22)]  # window full at 20
    events = [(event.kind, event.started, event.step) for step, loss in
              zip(range(31, 61), np.linspace(1.0, 0.2, 30))
              for event in monitor.update(step, loss, health.spread(SPREAD_OUT), 0.3, 1.0)]
    # From step 32 on, d = 0.8 / 29 better per step: at step t the second half of the window
    # (t-9..t) is better than the first by d * (1 + ... + (t - 31)) / 10 until the first half
    # moves too: 4.5 d = 0.124 > 0.1 first at step 40, three steps of patience later it ends.
    assert events == [('stall', False, 42)]


@pytest.mark.parametrize('losses', [
    np.linspace(2.0, 1.0, 300),  # improving slowly but steadily, above the collapse value
    np.full(300, 0.3),           # flat but well below the collapse value: trained
])
def test_no_stall_while_improving_or_below_the_collapse_value(losses):
    monitor = health.HealthMonitor('soft', window=100)
    for step, loss in enumerate(losses, start=1):
        assert monitor.update(step, loss, health.spread(SPREAD_OUT), 0.3, 1.0) == []


def noisy(rng, steps, level, scale):
    """`steps` values around `level` (a number or an array) with noise of `scale`."""
    return level + scale * rng.normal(size=steps)


def replay_values(monitor, losses, precisions, actives, first=1):
    """Feed per-step scalars (spread about 1) from step `first` on; return [(kind, started,
    step)]."""
    return [(event.kind, event.started, event.step)
            for step, values in enumerate(zip(losses, precisions, actives), start=first)
            for event in monitor.update(step, values[0], 0.9, *values[1:])]


def test_no_stall_while_the_precision_rises_under_a_flat_loss():
    # The batch-hard loss flat at 0.9 (its hardest triplets get harder as the embedding
    # improves) while the batch precision at K-1 climbs 0.05 in 100 steps: the window's halves
    # differ by 0.025, more than 0.02. `learnt` out of reach: the rise alone is progress.
    rng = np.random.default_rng(1)
    monitor = health.HealthMonitor('soft', window=100, learnt=1)
    precisions = noisy(rng, 300, np.linspace(0.2, 0.35, 300), 0.01)
    assert replay_values(monitor, noisy(rng, 300, 0.9, 0.05), precisions, np.ones(300)) == []
    assert monitor.values['precision_rise'] == pytest.approx(0.025, abs=0.005)


def test_no_stall_while_fewer_triplets_are_active_under_a_flat_loss():
    # With a hard margin the share of triplets still violating it falls as training works.
    monitor = health.HealthMonitor(0.2, window=100)
    actives = np.linspace(0.9, 0.6, 300)
    assert replay_values(monitor, np.full(300, 0.3), np.full(300, 0.3), actives) == []


def test_stall_when_loss_precision_and_active_triplets_are_all_flat():
    rng = np.random.default_rng(2)
    monitor = health.HealthMonitor('soft', patience=10, window=100)
    events = replay_values(monitor, noisy(rng, 300, 0.9, 0.05), noisy(rng, 300, 0.3, 0.05),
                           np.ones(300))
    assert events == [('stall', True, 109)]  # window full at 100, then 10 steps of patience
    text = monitor.describe(health.Event('stall', True, 109, 109, monitor.values), ['a'])
    assert text.startswith('Training health: the training stalled at step 109: over the last '
                           '100 steps the loss did not fall (by ')
    for what in ('nor did the batch precision at K-1 rise (by ', 'less than 0.02)',
                 'or the fraction of active triplets fall (by 0.000, less than 0.02); the loss '
                 'is not below 0.693, its value for collapsed embeddings (loss 0.'):
        assert what in text
    assert text.endswith('active 1.000, spread 0.900). Training may get past it by itself; if '
                         'it does not, restart with a.')


def test_no_stall_on_a_plateau_after_learning():
    # The precision rose from 0.3 to 0.7 and then, as the decayed learning rate runs out,
    # everything flattens (loss 0.74, as the official recipe's CUHK03 run ends): learnt.
    rng = np.random.default_rng(3)
    monitor = health.HealthMonitor('soft', window=200)
    precisions = np.concatenate([np.linspace(0.3, 0.7, 500), np.full(1500, 0.7)])
    assert replay_values(monitor, noisy(rng, 2000, 0.74, 0.05), noisy(rng, 2000, precisions, 0.05),
                         np.ones(2000)) == []


def test_no_stall_reported_beside_an_identity_loss():
    # The same flat loss that is a stall above: with stalls=False (train.py's choice when an ID
    # or center loss drives the training) nothing is reported, but a collapse still is.
    monitor = health.HealthMonitor('soft', patience=3, window=20, stalls=False)
    assert feed(monitor, 30, 1.0, SPREAD_OUT, 1) == []
    assert feed(monitor, 40, 0.69, ON_ONE_POINT, 31) == [('collapse', True, 33)]


def test_no_stall_reported_during_a_collapse():
    monitor = health.HealthMonitor('soft', patience=3, window=20)
    assert feed(monitor, 40, 0.69, ON_ONE_POINT, 1) == [('collapse', True, 3)]


# Real runs, replayed: the values that CUHK03 runs of the official recipe logged at every step
# (studies/health_runs.py made tests/data/health_runs.npz; see its `note`).

RUNS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'health_runs.npz')
REPLAYED = ('loss', 'spread', 'prec_at_k', 'active_fraction')  # `update`'s order


def replay(name):
    """Feed the recorded run `name` through a monitor as train.py's; return (its number of
    steps, [(kind, started, step)])."""
    with np.load(RUNS) as runs:
        values = [runs[f'{name}.{key}'] for key in REPLAYED]
    monitor = health.HealthMonitor('soft')
    return len(values[0]), [(event.kind, event.started, event.step)
                            for step, row in enumerate(zip(*values), start=1)
                            for event in monitor.update(step, *row)]


@pytest.mark.parametrize('name', ['healthy_1e-3', 'healthy_3e-4'])
def test_recorded_healthy_runs_are_never_flagged(name):
    # The whole schedule: learning, then the plateau of the decayed rate's last third.
    assert replay(name) == (2000, [])


def test_recorded_run_at_1e_7_is_flagged_as_stalled():
    # Nothing moves (loss about 3.1, precision 0.12): flagged once the window is full and the
    # loss's noise settles, to the end.
    assert replay('stalled_1e-7') == (600, [('stall', True, 226)])


def test_recorded_run_at_0_1_is_flagged_as_collapsed():
    # The loss shoots up to 316, then every embedding falls on one point (loss 0.693): flagged
    # to the end, and no stall on top of it.
    assert replay('collapsed_0.1') == (400, [('collapse', True, 134)])


def make_args(**changes):
    defaults = dict(learning_rate=3e-4, train_iterations=25000, warmup_iterations=0,
                    curriculum_steps=0, loss='batch_hard', head_name='fc1024')
    return experiment.TrainConfig(experiment_root='x', **{**defaults, **changes})


HEADS = ('direct', 'direct_normalize', 'fc1024', 'fc1024_normalize')


def test_remedies_are_the_ones_that_apply():
    tips = ' '.join(health.remedies(make_args(), HEADS, ['batch_hard', 'batch_sample']))
    for flags in ('--learning_rate 3e-05', '--warmup_iterations 1000',
                  '--curriculum_steps 1000 --curriculum_start_p 2 --curriculum_start_k 2',
                  '--loss batch_sample', '--head_name fc1024_normalize'):
        assert flags in tips
    tips = ' '.join(health.remedies(
        make_args(train_iterations=300, warmup_iterations=20, curriculum_steps=50,
                  loss='batch_sample', head_name='fc1024_normalize'), HEADS, ['batch_sample']))
    assert 'longer warm-up than --warmup_iterations 20' in tips
    assert 'longer curriculum than --curriculum_steps 50' in tips
    assert '--loss' not in tips and '--head_name' not in tips
    assert '--loss' not in ' '.join(health.remedies(make_args(), HEADS, ['batch_hard']))


def test_a_batch_hard_run_is_told_of_batch_all():
    tips = ' '.join(health.remedies(make_args(), HEADS, ['batch_hard', 'batch_all']))
    assert '--loss batch_all' in tips
    tips = ' '.join(health.remedies(make_args(loss='batch_sample'), HEADS,
                                    ['batch_all', 'batch_sample']))
    assert '--loss batch_all' not in tips


def test_describe_start_and_end():
    monitor = health.HealthMonitor('soft')
    started = health.Event('collapse', True, 2, None, {'loss': 0.7, 'spread': 0.01})
    text = monitor.describe(started, ['a lower learning rate (--learning_rate 3e-05)', 'b'])
    assert text.startswith('Training health: the embeddings collapsed at step 2: ')
    assert '(spread 0.010; loss 0.700, the value of collapsed embeddings is 0.693' in text
    assert text.endswith('restart with a lower learning rate (--learning_rate 3e-05); or b.')
    ended = health.Event('collapse', False, 9, 2, {'loss': 0.3, 'spread': 0.5})
    assert monitor.describe(ended, []) == ('Training health: the collapse that began at step 2 '
                                           'ended at step 9 (loss 0.300, spread 0.500).')


# Real runs of the small network on a small synthetic person dataset (32x16, P=8, K=2).

RUN = ['--model_name', 'lunet', '--embedding_dim', '16', '--batch_p', '8', '--batch_k', '2',
       '--net_input_height', '32', '--net_input_width', '16', '--decay_start_iteration', '-1',
       '--checkpoint_frequency', '0', '--loading_threads', '2', '--seed', '1']
LINE = re.compile(r'iter:\s*(\d+), .*\)( \[COLLAPSED\])?( \[STALLED\])?$', re.MULTILINE)


@pytest.fixture(scope='module')
def people(tmp_path_factory):
    from data.demo_set import make_demo_dataset
    root = str(tmp_path_factory.mktemp('people'))
    make_demo_dataset(root, num_train_ids=30, num_test_ids=2)
    return os.path.join(root, 'market1501_train.csv'), root


def train_run(root, people, *flags):
    """Train; return the log and the TensorBoard scalars `health/*` by step."""
    import train
    from tripletreid.training_logs import read_scalars
    csv_path, image_root = people
    train.main(['--experiment_root', root, '--train_set', csv_path, '--image_root', image_root,
                *RUN, *flags])
    with open(os.path.join(root, 'train.log')) as f:
        log = f.read()
    return log, read_scalars(root, 'health/collapsed', 'health/distance_spread')


def test_run_made_to_collapse_is_flagged_at_once(tmp_path, people):
    # A learning rate a thousand times too high: the embeddings fall onto one point within
    # some ten steps; the flag follows ten steps later.
    log, scalars = train_run(str(tmp_path / 'exp'), people, '--head_name', 'fc1024_normalize',
                             '--learning_rate', '0.3', '--train_iterations', '60')
    warning = re.search(r'\[WARNING\] train: Training health: the embeddings collapsed at step '
                        r'(\d+): .* restart with a lower learning rate \(--learning_rate 0.03\)',
                        log)
    assert warning and int(warning.group(1)) <= 40
    first = int(warning.group(1))
    marked = [int(step) for step, marker, _ in LINE.findall(log) if marker]
    assert marked and marked[0] == first
    assert scalars['health/collapsed'][first] == 1 and scalars['health/collapsed'][first - 1] == 0
    assert scalars['health/distance_spread'][first] < 0.1


def test_healthy_run_is_never_flagged(tmp_path, people):
    log, scalars = train_run(str(tmp_path / 'exp'), people, '--head_name', 'fc1024',
                             '--learning_rate', '1e-3', '--train_iterations', '250')
    assert 'Training health' not in log
    assert len(LINE.findall(log)) == 250 and not any(m or s for _, m, s in LINE.findall(log))
    assert list(scalars['health/collapsed'].values()) == [0.0] * 250


def test_the_advised_flags_run_together(tmp_path, people):
    """The advice is actionable: train.py takes all of its flags at once (sampling loss too)."""
    advice = ' '.join(health.remedies(make_args(train_iterations=4), HEADS, ['batch_sample']))
    flags = [part for flag in re.findall(r'--\w+ [^\s);]+', advice) for part in flag.split()]
    assert len(flags) == 2 * 7
    log, _ = train_run(str(tmp_path / 'exp'), people, *flags, '--train_iterations', '4')
    assert 'Saved the checkpoint of step 4; training finished' in log
