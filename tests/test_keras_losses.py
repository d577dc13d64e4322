"""The `keras.losses.Loss` classes against hand-worked values and a brute-force numpy reference,
in `model.compile`/`model.fit`, through Keras serialisation, and on the JAX backend."""
import importlib.util
import itertools
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tripletreid.keras_losses import (BatchAllTripletLoss, BatchHardTripletLoss,
                                      BatchSampleTripletLoss, SemiHardTripletLoss, TripletLoss)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRICS = {'euclidean': lambda d: np.sqrt((d ** 2).sum()),
           'sqeuclidean': lambda d: (d ** 2).sum(),
           'cityblock': lambda d: np.abs(d).sum()}


def hinge(diff, margin):
    if margin == 'soft':
        return np.log1p(np.exp(diff))
    return diff if margin == 'none' else max(diff + margin, 0.0)


def brute_force(embeddings, labels, metric, margin, rule):
    """The batch mean of a loss by loops over anchors, positives and negatives.

    `rule` 'hard': per anchor its furthest positive (0 if none) and closest negative; 'all':
    per anchor the mean over its triplets; 'semi_hard': per positive pair, the closest
    negative farther than the positive, else the farthest negative, averaged over pairs
    (tensorflow-addons' definition).
    """
    n = len(labels)
    dist = np.array([[METRICS[metric](embeddings[i] - embeddings[j]) for j in range(n)]
                     for i in range(n)])
    per_anchor, pair_losses = [], []
    for a in range(n):
        positives = [p for p in range(n) if p != a and labels[p] == labels[a]]
        negatives = [m for m in range(n) if labels[m] != labels[a]]
        if rule == 'hard':
            hardest = max([dist[a, p] for p in positives], default=0.0)
            per_anchor.append(hinge(hardest - min(dist[a, m] for m in negatives), margin))
        elif rule == 'all':
            triplets = [hinge(dist[a, p] - dist[a, m], margin)
                        for p, m in itertools.product(positives, negatives)]
            per_anchor.append(np.mean(triplets) if triplets else 0.0)
        else:
            for p in positives:
                farther = [dist[a, m] for m in negatives if dist[a, m] > dist[a, p]]
                chosen = min(farther) if farther else max(dist[a, m] for m in negatives)
                pair_losses.append(hinge(dist[a, p] - chosen, margin))
    return np.mean(pair_losses) if rule == 'semi_hard' else np.mean(per_anchor)


RNG = np.random.default_rng(3)
EMBEDDINGS = RNG.normal(size=(12, 3)).astype(np.float32)
LABELS = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 4])  # uneven, identity 4 alone
RULES = {BatchHardTripletLoss: 'hard', BatchAllTripletLoss: 'all', SemiHardTripletLoss: 'semi_hard'}


@pytest.mark.parametrize('cls', list(RULES), ids=lambda c: c.__name__)
@pytest.mark.parametrize('metric', sorted(METRICS))
@pytest.mark.parametrize('margin', ['soft', 'none', 0.3])
def test_against_brute_force(cls, metric, margin):
    loss = cls(margin=margin, metric=metric)
    expected = brute_force(EMBEDDINGS.astype(np.float64), LABELS, metric, margin, RULES[cls])
    assert float(loss(LABELS, EMBEDDINGS)) == pytest.approx(expected, rel=1e-5, abs=1e-5)


# The semi-hard case by hand, on a line: identity A at 0 and 3, B at 1 and 8, C alone at 0.5.
# Euclidean distances from each anchor (positive; negatives):
#   0 -> 3 (3; 1, 8, 0.5): farther than 3: 8           -> 3 - 8
#   3 -> 0 (3; 2, 5, 2.5): farther than 3: 5           -> 3 - 5
#   1 -> 8 (7; 1, 2, 0.5): none farther: farthest, 2    -> 7 - 2   (the hardest would be 0.5)
#   8 -> 1 (7; 8, 5, 7.5): farther than 7: 8 and 7.5   -> 7 - 7.5
#   C has no positive: no pair. With margin 1.5: 0, 0, 6.5, 1.0 over 4 pairs = 1.875.
# Squared (TFA's default 'L_2'), margin 1.0: 9 - 64, 9 - 25, 49 - 4, 49 - 56.25 -> 0, 0, 46, 0:
# 46 / 4 = 11.5.
LINE = np.array([[0.0], [3.0], [1.0], [8.0], [0.5]], np.float32)
LINE_LABELS = np.array([0, 0, 1, 1, 2])


def test_semi_hard_by_hand():
    per_anchor = SemiHardTripletLoss(margin=1.5, metric='euclidean').call(
        tf.constant(LINE_LABELS, tf.float32), LINE)
    # Per anchor, scaled so that their mean is the mean over the 4 pairs: x 5/4.
    np.testing.assert_allclose(per_anchor, np.array([0, 0, 6.5, 1.0, 0]) * 5 / 4, atol=1e-5)
    assert float(SemiHardTripletLoss()(LINE_LABELS, LINE)) == pytest.approx(11.5, rel=1e-6)
    none = SemiHardTripletLoss(margin='none', metric='euclidean')(LINE_LABELS, LINE)
    assert float(none) == pytest.approx((-5 - 2 + 5 - 0.5) / 4, rel=1e-5)


@pytest.mark.parametrize('loss', [BatchHardTripletLoss(), BatchAllTripletLoss(nonzero=True),
                                  SemiHardTripletLoss(), BatchSampleTripletLoss(seed=1)],
                         ids=lambda loss: type(loss).__name__)
@pytest.mark.parametrize('metric', sorted(METRICS))
def test_gradients_finite_at_zero_distance(loss, metric):
    # Identical embeddings: every distance, positive and negative, is exactly zero.
    loss = type(loss).from_config({**loss.get_config(), 'metric': metric})
    embeddings = tf.Variable(tf.ones([6, 4]))
    with tf.GradientTape() as tape:
        value = loss(np.array([0, 0, 0, 1, 1, 1]), embeddings)
    assert np.isfinite(float(value))
    assert np.all(np.isfinite(tape.gradient(value, embeddings).numpy()))


@pytest.mark.parametrize('loss', [
    BatchHardTripletLoss(margin=0.2, metric='cityblock'), BatchAllTripletLoss(nonzero=True),
    BatchSampleTripletLoss(margin='none', seed=4), SemiHardTripletLoss(),
    TripletLoss('batch_all', 'soft', 'sqeuclidean', name='mine')],
    ids=lambda loss: type(loss).__name__)
def test_serialisation_round_trip(loss):
    config = keras.saving.serialize_keras_object(loss)
    again = keras.saving.deserialize_keras_object(config)
    assert type(again) is type(loss) and again.get_config() == loss.get_config()
    if not isinstance(loss, BatchSampleTripletLoss):  # the other draws anew
        assert float(again(LABELS, EMBEDDINGS)) == float(loss(LABELS, EMBEDDINGS))


@pytest.mark.parametrize('arguments, message', [
    (dict(margin=-1.0), 'non-negative'), (dict(margin='hard'), 'non-negative'),
    (dict(metric='cosine'), 'unknown metric'), (dict(loss='contrastive'), 'unknown loss'),
    (dict(loss='batch_hard', seed=3), 'seed applies to batch_sample only')])
def test_bad_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        TripletLoss(**arguments)


def test_fit_lowers_the_loss():
    # Four identities, eight noisy points each around their own centre in 8-D; one epoch of
    # 40 steps on the same batch.
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 8)
    x = (rng.normal(size=(4, 8))[labels] + 0.5 * rng.normal(size=(32, 8))).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation='relu'),
                              keras.layers.Dense(4)])
    loss = BatchHardTripletLoss(margin='soft')
    before = float(loss(labels, model(x)))
    model.compile(keras.optimizers.Adam(0.01), loss=loss)
    model.fit(np.tile(x, (40, 1)), np.tile(labels, 40), batch_size=32, shuffle=False, verbose=0)
    assert float(loss(labels, model(x))) < 0.3 * before


# One jitted function, as model.fit runs the loss on JAX; importing Keras on JAX is most of it.
JAX_CHECK = '''
import jax, keras, numpy as np
from tripletreid.keras_losses import BatchAllTripletLoss, BatchHardTripletLoss, SemiHardTripletLoss
assert keras.backend.backend() == 'jax'
labels = np.array([0, 0, 1, 1, 2])

@jax.jit
def check(line, same):
    gradient = jax.grad(lambda e: BatchHardTripletLoss()(np.array([0, 0, 1, 1]), e))(same)
    return (SemiHardTripletLoss()(labels, line), BatchHardTripletLoss('none')(labels, line),
            BatchAllTripletLoss(1.0)(labels, line), jax.numpy.isfinite(gradient).all())
line = np.array([[0.0], [3.0], [1.0], [8.0], [0.5]], np.float32)
print(*(value.item() for value in check(line, np.ones((4, 2), np.float32))))
'''


@pytest.mark.skipif(importlib.util.find_spec('jax') is None, reason='jax is not installed')
def test_on_the_jax_backend():
    run = subprocess.run([sys.executable, '-c', JAX_CHECK], cwd=ROOT,
                         env={**os.environ, 'KERAS_BACKEND': 'jax', 'PYTHONPATH': ROOT},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    semi_hard, hard, batch_all, finite = run.stdout.split()
    assert float(semi_hard) == pytest.approx(11.5, rel=1e-6)  # the hand-worked case above
    # Batch hard, no margin: 0: 3-0.5, 3: 3-2, 1: 7-0.5, 8: 7-5, C (no positive): 0-0.5.
    assert float(hard) == pytest.approx((2.5 + 1 + 6.5 + 2 - 0.5) / 5, rel=1e-6)
    expected = brute_force(LINE.astype(np.float64), LINE_LABELS, 'euclidean', 1.0, 'all')
    assert float(batch_all) == pytest.approx(expected, rel=1e-6)
    assert finite == 'True'
