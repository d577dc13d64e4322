"""bench/benchlib.py: the order of turns, the bootstrap interval of a median ratio and its
verdict, against cases known by hand (no worker processes: a fake worker stands in)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'bench'))
import benchlib


def test_a_constant_ratio_has_an_interval_of_zero_width():
    assert benchlib.median_interval([1.25] * 10) == (1.25, 1.25)
    assert benchlib.median_interval([0.8] * 12) == (0.8, 0.8)


def test_two_values_give_the_interval_between_them():
    """Medians of two draws from {0.9, 1.1}: 0.9 (chance 1/4), 1.0 (1/2), 1.1 (1/4), so the
    2.5th and 97.5th percentiles are 0.9 and 1.1 exactly."""
    low, high = benchlib.median_interval([0.9, 1.1])
    assert (low, high) == pytest.approx((0.9, 1.1), abs=1e-12)
    assert benchlib.verdict(low, high) == 'tie'


def test_the_interval_lies_within_the_values_and_holds_their_median():
    values = [1.02, 0.97, 1.05, 1.04, 1.03, 0.99, 1.04, 1.05, 1.01, 1.04]
    low, high = benchlib.median_interval(values)
    assert min(values) <= low <= 1.035 <= high <= max(values)  # 1.035: the median, by hand


@pytest.mark.parametrize('low, high, expected', [
    (0.97, 1.05, 'tie'), (1.0, 1.2, 'tie'), (0.8, 1.0, 'tie'),
    (1.01, 1.2, 'faster'), (0.8, 0.99, 'slower')])
def test_verdict(low, high, expected):
    assert benchlib.verdict(low, high) == expected


def test_ratio_is_the_median_of_the_per_round_ratios_with_its_interval():
    results = {'a': {'rates': [2.0, 4.0, 6.0, 9.0]}, 'b': {'rates': [1.0, 2.0, 3.0, 3.0]}}
    figure = benchlib.ratio(results, 'a', 'b')  # per round: 2, 2, 2, 3
    assert (figure['median'], figure['min'], figure['max'], figure['n']) == (2, 2, 3, 4)
    low, high = figure['ci95']
    assert 2 <= low <= high <= 3 and figure['verdict'] == 'faster'
    assert benchlib.ratio(results, 'b', 'a')['verdict'] == 'slower'


class FakeWorker:
    """Stands in for a worker process: each call takes 0.5 s of wall and 0.25 s of CPU."""
    turns = []

    def __init__(self, contender):
        self.contender, self.ready = contender, True

    def send(self, order):
        FakeWorker.turns.append(self.contender.name)
        self.calls = order['calls']

    def receive(self):
        if self.ready:
            self.ready = False
            return {'images': 4, 'info': {}}
        return {'wall': [0.5] * self.calls, 'cpu': [0.25] * self.calls}

    def close(self):
        pass


def test_alternate_reverses_the_order_every_other_round(monkeypatch):
    monkeypatch.setattr(benchlib, 'Worker', FakeWorker)
    FakeWorker.turns = []
    contenders = [benchlib.Contender(name, 'unused:unused', about=f'{name} does this')
                  for name in 'ABC']
    results = benchlib.alternate(contenders, rounds=4, calls=2)
    assert ''.join(FakeWorker.turns) == 'ABC' 'CBA' 'ABC' 'CBA'
    assert results['A']['turns'] == [1, 3, 1, 3] and results['B']['turns'] == [2, 2, 2, 2]
    assert results['A']['rates'] == [8.0] * 4  # 4 images x 2 calls / 1 s
    assert results['A']['cores'] == [0.5] * 4
    assert results['C']['about'] == 'C does this'
    for name in 'ABC':
        for loads in results[name]['load_before'] + results[name]['load_after']:
            assert len(loads) == 3 and all(load >= 0 for load in loads)
        assert len(results[name]['load_before']) == len(results[name]['load_after']) == 4
