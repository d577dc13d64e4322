"""The loss and monitoring values against answers worked out by hand."""
import numpy as np
import pytest
import tensorflow as tf

from loss import batch_hard, cdist, monitoring

# Four points in 2-D: identity a twice, b once, c once (b and c have no positive).
POINTS = np.array([[0, 0], [3, 4], [6, 0], [0, -2]], np.float32)
PIDS = np.array([0, 0, 1, 2])
# Hardest positive minus hardest negative per anchor, by hand:
#   euclidean:   d01=5 d02=6 d03=2 d12=5 d13=sqrt(45) d23=sqrt(40)
#                a0: 5-2=3   a1: 5-min(5,6.71)=0   a2: 0-min(6,5,6.32)=-5   a3: 0-2=-2
#   sqeuclidean: d01=25 d02=36 d03=4 d12=25 d13=45 d23=40 -> 21, 0, -25, -4
#   cityblock:   d01=7 d02=6 d03=2 d12=7 d13=9 d23=8       -> 5, 0, -6, -2
DIFFS = {'euclidean': [3, 0, -5, -2], 'sqeuclidean': [21, 0, -25, -4],
         'cityblock': [5, 0, -6, -2]}


def softplus(x):
    return np.log1p(np.exp(x))


@pytest.mark.parametrize('metric', sorted(DIFFS))
@pytest.mark.parametrize('margin', ['soft', 'none', 0.0, 0.5, 2.0])
def test_batch_hard_by_hand(metric, margin):
    diff = np.array(DIFFS[metric], np.float64)
    expected = {'soft': softplus(diff), 'none': diff}.get(
        margin, np.maximum(diff + (margin if not isinstance(margin, str) else 0), 0))
    dists = cdist(POINTS, POINTS, metric)
    losses = batch_hard(dists, tf.constant(PIDS), margin).numpy()
    np.testing.assert_allclose(losses, expected, rtol=1e-5, atol=1e-5)


def test_cdist_values_by_hand():
    d = cdist(POINTS, POINTS, 'euclidean').numpy()
    np.testing.assert_allclose(d[1, 3], np.sqrt(45), rtol=1e-6)
    np.testing.assert_allclose(np.diag(d), 1e-6, rtol=1e-3)  # sqrt(0 + 1e-12)
    np.testing.assert_allclose(cdist(POINTS, POINTS, 'cityblock').numpy()[2, 3], 8)
    np.testing.assert_allclose(cdist(POINTS, POINTS, 'sqeuclidean').numpy()[2, 3], 40)


@pytest.mark.parametrize('metric', sorted(DIFFS))
@pytest.mark.parametrize('margin', ['soft', 'none', 0.2])
def test_gradients_finite_at_zero_distance(metric, margin):
    # Two identical images of one identity: distance exactly zero between them.
    emb = tf.Variable([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [4.0, 0.0]])
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(batch_hard(cdist(emb, emb, metric), tf.constant([0, 0, 1, 1]),
                                         margin))
    grad = tape.gradient(loss, emb).numpy()
    assert np.all(np.isfinite(grad))


def test_monitoring_by_hand():
    # 1-D points 0, 1, 3, 7 with identities a a b b. Nearest other of each:
    # 0 -> 1 (a, hit), 1 -> 0 (hit), 3 -> 1 (a, miss), 7 -> 3 (b, hit): top-1 = 3/4.
    # Two nearest: 0 -> 1, 3 (1 hit); 1 -> 0, 3 (1); 3 -> 1, 0 (0); 7 -> 3, 1 (1): p@2 = 3/8.
    emb = tf.constant([[0.0], [1.0], [3.0], [7.0]])
    pids = tf.constant([0, 0, 1, 1])
    dists = cdist(emb, emb)
    one = monitoring(dists, pids, 1)
    assert one['top1'].numpy() == pytest.approx(0.75)
    assert one['prec_at_k'].numpy() == pytest.approx(0.75)
    assert monitoring(dists, pids, 2)['prec_at_k'].numpy() == pytest.approx(3 / 8)
    np.testing.assert_allclose(sorted(one['positive_dists'].numpy()), [1, 1, 4, 4], rtol=1e-5)
    np.testing.assert_allclose(sorted(one['negative_dists'].numpy()),
                               [2, 2, 3, 3, 6, 6, 7, 7], rtol=1e-5)


def test_monitoring_ignores_the_anchor_itself_under_ties():
    # All embeddings equal: every distance ties, yet the anchor must not count as its match.
    emb = tf.zeros([4, 3])
    result = monitoring(cdist(emb, emb), tf.constant([0, 1, 2, 3]), 1)
    assert result['top1'].numpy() == 0.0
