"""The loss and monitoring values against answers worked out by hand."""
import numpy as np
import pytest
import tensorflow as tf

from tripletreid.losses.triplet import batch_hard, cdist, monitoring

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


# batch_all on 1-D points 0, 1, 3, 7 with identities a a b b (euclidean, soft margin):
# triplets (anchor, positive, negatives): 0:(1; 3,7) d_ap-d_an = 1-3, 1-7; 1:(0; 3,7) 1-2, 1-6;
# 3:(7; 0,1) 4-3, 4-2; 7:(3; 0,1) 4-7, 4-6.
LINE_POINTS = np.array([[0.0], [1.0], [3.0], [7.0]], np.float32)
LINE_PIDS = np.array([0, 0, 1, 1])
LINE_DIFFS = np.array([[-2, -6], [-1, -5], [1, 2], [-3, -2]], np.float64)


@pytest.mark.parametrize('margin', ['soft', 'none', 1.5])
def test_batch_all_by_hand(margin):
    from tripletreid.losses.triplet import batch_all
    triplet = {'soft': softplus(LINE_DIFFS), 'none': LINE_DIFFS}.get(
        margin, np.maximum(LINE_DIFFS + 1.5, 0))
    losses = batch_all(cdist(LINE_POINTS, LINE_POINTS), tf.constant(LINE_PIDS), margin)
    np.testing.assert_allclose(losses.numpy(), triplet.mean(axis=1), rtol=1e-5, atol=1e-6)


def test_batch_all_nonzero_averages_over_active_triplets_only():
    from tripletreid.losses.triplet import batch_all_nonzero
    # Margin 1.5: triplet losses [[0, 0], [0.5, 0], [2.5, 3.5], [0, 0]]: 3 active, sum 6.5.
    losses = batch_all_nonzero(cdist(LINE_POINTS, LINE_POINTS), tf.constant(LINE_PIDS), 1.5)
    assert losses.numpy().mean() == pytest.approx(6.5 / 3, rel=1e-5)
    np.testing.assert_allclose(losses.numpy(), np.array([0, 0.5, 6.0, 0]) * 4 / 3, rtol=1e-5)


def test_batch_sample_draws_by_exp_distance():
    from tripletreid.losses.triplet import batch_sample
    # Anchor 0 at 0: positives at 1 and 2 (identity a), negatives at 3 and 5 (identity b).
    # P(positive at 2) = e^2 / (e^1 + e^2) = 0.731; P(negative at 3) = e^-3 / (e^-3 + e^-5) = 0.881.
    emb = tf.constant([[0.0], [1.0], [2.0], [3.0], [5.0]])
    dists = cdist(emb, emb, 'cityblock')
    pids = tf.constant([0, 0, 0, 1, 1])
    diffs = np.array([batch_sample(dists, pids, 'none', tf.constant([7, i]))[0].numpy()
                      for i in range(3000)])
    # d_ap - d_an for (p, n) in {1,2} x {3,5}: -2, -4, -1, -3, each pair equally telling.
    far_positive = np.isin(diffs, [-1, -3]).mean()
    near_negative = np.isin(diffs, [-2, -1]).mean()
    assert far_positive == pytest.approx(np.e ** 2 / (np.e + np.e ** 2), abs=0.03)
    assert near_negative == pytest.approx(np.e ** -3 / (np.e ** -3 + np.e ** -5), abs=0.03)


def test_batch_sample_without_positive_and_its_gradient():
    from tripletreid.losses.triplet import batch_sample
    emb = tf.Variable([[0.0, 1.0], [2.0, 0.0], [2.0, 0.0]])
    with tf.GradientTape() as tape:
        losses = batch_sample(cdist(emb, emb), tf.constant([0, 1, 1]), 'soft', tf.constant([1, 2]))
        mean = tf.reduce_mean(losses)
    # Anchor 0 has no positive: d_ap = 0, the only negatives are at sqrt(5).
    assert losses[0].numpy() == pytest.approx(np.log1p(np.exp(-np.sqrt(5))), rel=1e-4)
    assert np.all(np.isfinite(tape.gradient(mean, emb).numpy()))
