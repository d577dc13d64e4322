"""metrics.py against hand-worked cases, scikit-learn and a plain-loop reference."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from tripletreid import metrics

F, T = False, True

# Five queries against a five-image gallery. Ranks are among the valid (not excluded) entries,
# ties in gallery order; sklearn AP = mean over matches of (matches at <= d) / (valid at <= d);
# market AP = mean over matches of (precision at its rank + precision one rank before) / 2.
HAND_DISTANCES = np.array([
    [0.1, 0.2, 0.3, 0.4, 0.5],
    [1, 1, 2, 0.5, 3],
    [2, 1, 1, 1, 5],
    [1, 2, 3, 4, 5],
    [0, 0, 0, 0, 0],
], dtype=float)
# Gallery entries: + match, - non-match; upper-case X an excluded match, x an excluded other.
HAND_CODES = np.array([list(row) for row in ['+-+--', '-++X-', '-+-+-', '---Xx', '--+-+']])
HAND_MATCHES = np.isin(HAND_CODES, ['+', 'X'])
HAND_EXCLUDED = np.isin(HAND_CODES, ['X', 'x'])
# Row 0: matches at ranks 1, 3.  sklearn (1/1 + 2/3)/2 = 5/6;
#        market ((1 + 1)/2 + (2/3 + 1/2)/2)/2 = 19/24; INP 2/3.
# Row 1: g3 (a match at 0.5) is excluded; order g0(1,-) g1(1,+) g2(2,+) g4(3,-), ranks 2, 3.
#        sklearn (1/2 + 2/3)/2 = 7/12; market ((1/2 + 0/1)/2 + (2/3 + 1/2)/2)/2 = 5/12; INP 2/3.
# Row 2: order g1(1,+) g2(1,-) g3(1,+) g0(2,-) g4(5,-), ranks 1, 3 (g2 ties with g3 but has a
#        lower index). sklearn: both matches at d=1, precision 2/3 -> 2/3;
#        market ((1 + 1)/2 + (2/3 + 1/2)/2)/2 = 19/24; INP 2/3.
# Row 3: the only match is excluded -> no valid match: AP and INP NaN, first rank 0.
# Row 4: all tied, ranks 3, 5. sklearn: precision 2/5 at d=0 -> 2/5;
#        market ((1/3 + 0/2)/2 + (2/5 + 1/4)/2)/2 = 59/240; INP 2/5.
HAND_SKLEARN_AP = [5 / 6, 7 / 12, 2 / 3, np.nan, 2 / 5]
HAND_MARKET_AP = [19 / 24, 5 / 12, 19 / 24, np.nan, 59 / 240]
HAND_FIRST_RANK = [1, 2, 1, 0, 3]
HAND_INP = [2 / 3, 2 / 3, 2 / 3, np.nan, 2 / 5]
HAND_POSITIVES = [2, 2, 2, 0, 2]


@pytest.mark.parametrize('rule, expected', [('sklearn', HAND_SKLEARN_AP),
                                            ('market', HAND_MARKET_AP)])
def test_hand_made_batch(rule, expected):
    scores = metrics.score_queries(HAND_DISTANCES, HAND_MATCHES, HAND_EXCLUDED, rule)
    np.testing.assert_allclose(scores.ap, expected, rtol=1e-12)
    np.testing.assert_array_equal(scores.first_rank, HAND_FIRST_RANK)
    np.testing.assert_allclose(scores.inp, HAND_INP, rtol=1e-12)
    np.testing.assert_array_equal(scores.positives, HAND_POSITIVES)
    np.testing.assert_array_equal(scores.evaluated, [T, T, T, F, T])


def test_concatenated_batches_equal_one_batch():
    parts = [metrics.score_queries(HAND_DISTANCES[i:i + 2], HAND_MATCHES[i:i + 2],
                                   HAND_EXCLUDED[i:i + 2]) for i in range(0, 5, 2)]
    joined = metrics.QueryScores.concatenate(parts)
    np.testing.assert_allclose(joined.ap, HAND_SKLEARN_AP, rtol=1e-12)
    np.testing.assert_array_equal(joined.first_rank, HAND_FIRST_RANK)


def test_cmc_curve_by_hand():
    # First matches at ranks 1, 3, 3 of three evaluated queries, gallery of 4.
    np.testing.assert_allclose(metrics.cmc_curve([1, 3, 3], 4), [1 / 3, 1 / 3, 1, 1])


def random_case(seed, n_query=200, n_gallery=30):
    """Integer distances 0..6 (many ties), ~25% matches, ~15% excluded."""
    rng = np.random.default_rng(seed)
    distances = rng.integers(0, 7, (n_query, n_gallery)).astype(float)
    return distances, rng.random(distances.shape) < 0.25, rng.random(distances.shape) < 0.15


def loop_reference(distances, matches, excluded):
    """(trapezoid AP, first rank, INP) of one query from a plain loop over its stable ranking,
    or None without a valid match. Trapezoid as in the Market-1501 MATLAB script."""
    order = sorted((d, g) for g, d in enumerate(distances) if not excluded[g])
    hits = [bool(matches[g]) for _, g in order]
    total = sum(hits)
    if total == 0:
        return None
    ap, found, previous_precision, ranks = 0.0, 0, 1.0, []
    for rank, hit in enumerate(hits, start=1):
        if hit:
            found += 1
            ranks.append(rank)
            ap += (previous_precision + found / rank) / 2 / total
        previous_precision = found / rank
    return ap, ranks[0], total / ranks[-1]


@pytest.mark.parametrize('seed', [0, 1])
def test_sklearn_rule_equals_scikit_learn_with_ties(seed):
    distances, matches, excluded = random_case(seed)
    scores = metrics.score_queries(distances, matches, excluded, 'sklearn')
    checked = 0
    for i in range(len(distances)):
        valid = ~excluded[i]
        if not matches[i, valid].any():
            assert np.isnan(scores.ap[i])
            continue
        expected = average_precision_score(matches[i, valid], -distances[i, valid])
        assert scores.ap[i] == pytest.approx(expected, rel=1e-12)
        checked += 1
    assert checked > 160


@pytest.mark.parametrize('seed', [2, 3])
def test_market_rule_first_rank_and_inp_equal_loop_reference(seed):
    distances, matches, excluded = random_case(seed)
    scores = metrics.score_queries(distances, matches, excluded, 'market')
    for i in range(len(distances)):
        reference = loop_reference(distances[i], matches[i], excluded[i])
        if reference is None:
            assert not scores.evaluated[i] and scores.first_rank[i] == 0
            continue
        ap, first_rank, inp = reference
        assert scores.ap[i] == pytest.approx(ap, rel=1e-12)
        assert scores.first_rank[i] == first_rank
        assert scores.inp[i] == pytest.approx(inp, rel=1e-12)


def sparse_case(seed, n_query=60, n_gallery=400):
    """A few matches (~3%) among many entries, most of them beyond a row's last match, as with
    a real gallery; distances on a 0.01 grid, so exact ties (match with match, match with a
    non-match, with an excluded entry) occur. Row 0 has no match, row 1 only excluded ones."""
    rng = np.random.default_rng(seed)
    matches = rng.random((n_query, n_gallery)) < 0.03
    distances = np.round(rng.random(matches.shape) * np.where(matches, 3, 10), 2)
    excluded = rng.random(matches.shape) < 0.1
    matches[0] = False
    excluded[1] |= matches[1]
    return distances, matches, excluded


@pytest.mark.parametrize('seed', [6, 7])
def test_sparse_matches_equal_both_references(seed):
    distances, matches, excluded = sparse_case(seed)
    sklearn_scores = metrics.score_queries(distances, matches, excluded, 'sklearn')
    market_scores = metrics.score_queries(distances, matches, excluded, 'market')
    ties = 0
    for i in range(len(distances)):
        valid = ~excluded[i]
        reference = loop_reference(distances[i], matches[i], excluded[i])
        if reference is None:
            assert i in (0, 1) or not matches[i, valid].any()
            assert np.isnan(sklearn_scores.ap[i]) and not market_scores.evaluated[i]
            assert market_scores.first_rank[i] == 0 and np.isnan(market_scores.inp[i])
            continue
        ap, first_rank, inp = reference
        expected = average_precision_score(matches[i, valid], -distances[i, valid])
        assert sklearn_scores.ap[i] == pytest.approx(expected, rel=1e-12)
        assert market_scores.ap[i] == pytest.approx(ap, rel=1e-12)
        assert market_scores.first_rank[i] == sklearn_scores.first_rank[i] == first_rank
        assert market_scores.inp[i] == pytest.approx(inp, rel=1e-12)
        match_values = distances[i, matches[i] & valid]
        ties += np.isin(distances[i, valid & ~matches[i]], match_values).sum()
    assert ties > 20  # the tie rule was exercised


def test_large_tie_groups_are_resolved_in_chunks():
    # 200 queries whose distances are all equal: every match ties with every other entry, so
    # the stable rank is the gallery position; more rows than one tie chunk holds.
    rng = np.random.default_rng(4)
    matches = rng.random((200, 50)) < 0.2
    matches[:, 7] = True
    scores = metrics.score_queries(np.ones((200, 50)), matches, np.zeros_like(matches),
                                   'market')
    first = matches.argmax(axis=1) + 1
    last = 50 - matches[:, ::-1].argmax(axis=1)
    np.testing.assert_array_equal(scores.first_rank, first)
    np.testing.assert_allclose(scores.inp, matches.sum(1) / last, rtol=1e-12)


@pytest.mark.parametrize('metric, power', [('euclidean', 2), ('sqeuclidean', 2),
                                           ('cityblock', 1)])
def test_distances_equal_direct_formulas(metric, power):
    rng = np.random.default_rng(5)
    gallery = rng.standard_normal((40, 16)).astype(np.float32)
    gallery[30:] = gallery[:10]  # duplicates must tie exactly
    queries = rng.standard_normal((7, 16)).astype(np.float32)
    difference = np.abs(queries[:, None].astype(np.float64) - gallery[None])
    direct = (difference ** power).sum(axis=2)  # euclidean is ranked by its square
    computed = metrics.Distances(gallery, metric)(queries)
    np.testing.assert_allclose(computed, direct, rtol=1e-12)
    np.testing.assert_array_equal(computed[:, 30:], computed[:, :10])


@pytest.mark.parametrize('metric', metrics.METRICS)
def test_integer_embeddings_give_exact_distances(metric):
    gallery = np.array([[0, 0], [3, 4], [-3, 4], [1, 1]], dtype=np.float32)
    queries = np.array([[0, 0], [1, 1]], dtype=np.float32)
    expected = {'cityblock': [[0, 7, 7, 2], [2, 5, 7, 0]]}.get(
        metric, [[0, 25, 25, 2], [2, 13, 25, 0]])
    np.testing.assert_array_equal(metrics.Distances(gallery, metric)(queries), expected)


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError):
        metrics.Distances(np.zeros((2, 2)), 'cosine')
    with pytest.raises(ValueError):
        metrics.score_queries(HAND_DISTANCES, HAND_MATCHES, HAND_EXCLUDED, 'interpolated')
