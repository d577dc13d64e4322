"""Re-ranking against a direct dense implementation of the paper, and through evaluate.py."""
import json

import numpy as np
import pytest

from tripletreid import evaluation
import excluders
from tripletreid import reranking
from tripletreid.errors import InputError
from tripletreid.csv_dataset import read_csv
from tests.test_evaluate import market_args, run, write_case, with_option


def dense_reference(query_embs, gallery_embs, k1, k2, lambda_value, metric='sqeuclidean'):
    """k-reciprocal re-ranking written out set by set on the full joint distance matrix."""
    joint = np.vstack([query_embs, gallery_embs])
    difference = joint[:, None] - joint[None]
    if metric == 'cityblock':
        dist = np.abs(difference).sum(-1)
    else:
        dist = (difference ** 2).sum(-1)
    dist = dist / dist.max(axis=1, keepdims=True)
    n = len(joint)
    rank = np.argsort(dist, axis=1, kind='stable')

    def reciprocal(i, k):
        return {j for j in rank[i, :k + 1] if i in rank[j, :k + 1]}

    v = np.zeros((n, n))
    for i in range(n):
        members = reciprocal(i, k1)
        expansion = set(members)
        for j in members:
            half = reciprocal(j, int(np.around(k1 / 2)))
            if len(half & members) > 2 / 3 * len(half):
                expansion |= half
        cols = sorted(expansion)
        v[i, cols] = np.exp(-dist[i, cols]) / np.exp(-dist[i, cols]).sum()
    v = np.array([v[rank[i, :k2]].mean(axis=0) for i in range(n)])
    n_query = len(query_embs)
    jaccard = np.array([[1 - np.minimum(v[i], v[j]).sum() / np.maximum(v[i], v[j]).sum()
                         for j in range(n_query, n)] for i in range(n_query)])
    return lambda_value * dist[:n_query, n_query:] + (1 - lambda_value) * jaccard


def rerank(query_embs, gallery_embs, options, metric='sqeuclidean', rows=None):
    reranker = reranking.KReciprocal(query_embs, gallery_embs, metric, options)
    rows = np.arange(len(query_embs)) if rows is None else rows
    plain = reranking.metrics.Distances(gallery_embs, metric)(query_embs[rows])
    return reranker(rows, plain)


@pytest.mark.parametrize('seed, k1, k2, lambda_value, metric', [
    (0, 20, 6, 0.3, 'sqeuclidean'), (1, 5, 3, 0.5, 'euclidean'), (2, 3, 1, 0.0, 'cityblock'),
    (3, 8, 2, 0.9, 'sqeuclidean'), (4, 60, 10, 0.3, 'euclidean')])
def test_equals_dense_reference(seed, k1, k2, lambda_value, metric):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((6, 4))
    query = centres[rng.integers(0, 6, 10)] + 0.5 * rng.standard_normal((10, 4))
    gallery = centres[rng.integers(0, 6, 40)] + 0.5 * rng.standard_normal((40, 4))
    options = reranking.RerankOptions(k1, k2, lambda_value)
    expected = dense_reference(query, gallery, k1, k2, lambda_value, metric)
    np.testing.assert_allclose(rerank(query, gallery, options, metric), expected, atol=1e-6)


def test_jaccard_in_bounded_steps_equals_one_step(monkeypatch):
    rng = np.random.default_rng(5)
    query, gallery = rng.standard_normal((10, 3)), rng.standard_normal((40, 3))
    options = reranking.RerankOptions(6, 3, 0.3)
    whole = rerank(query, gallery, options, rows=[7, 2, 3])
    monkeypatch.setattr(reranking, '_JACCARD_TERMS', 5)
    monkeypatch.setattr(reranking, '_CHUNK', 7)
    np.testing.assert_allclose(rerank(query, gallery, options, rows=[7, 2, 3]), whole,
                               atol=1e-12)


@pytest.mark.parametrize('sample', [3, 40, 4096])
def test_nearest_equals_the_first_of_a_stable_argsort(monkeypatch, sample):
    # Distances on a coarse grid (ties at the k-th place) and some infinite ones; a small
    # sample bounds the k-th smallest loosely, the default one takes every entry here.
    monkeypatch.setattr(reranking, '_SAMPLE', sample)
    rng = np.random.default_rng(8)
    distances = np.round(rng.random((30, 500)) * 20)
    distances[rng.random(distances.shape) < 0.3] = np.inf
    for k in (1, 7, 21):
        expected = np.argsort(distances, axis=1, kind='stable')[:, :k]
        np.testing.assert_array_equal(reranking._nearest(distances, k), expected)


def test_building_shows_progress_unless_quiet(capsys):
    rng = np.random.default_rng(9)
    query, gallery = rng.standard_normal((10, 3)), rng.standard_normal((40, 3))
    reranking.KReciprocal(query, gallery, 'euclidean', reranking.RerankOptions(6, 3, 0.3))
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(line.startswith('Re-ranking') for line in lines)
    assert '100/100 items' in lines[-1]  # neighbours and encodings of the 50 items
    reranking.KReciprocal(query, gallery, 'euclidean', reranking.RerankOptions(6, 3, 0.3),
                          quiet=True)
    assert capsys.readouterr().err == ''


def test_lambda_one_keeps_the_original_ranking():
    rng = np.random.default_rng(6)
    query, gallery = rng.standard_normal((10, 5)), rng.standard_normal((40, 5))
    reranked = rerank(query, gallery, reranking.RerankOptions(20, 6, 1.0))
    plain = reranking.metrics.Distances(gallery, 'sqeuclidean')(query)
    np.testing.assert_array_equal(np.argsort(reranked, axis=1, kind='stable'),
                                  np.argsort(plain, axis=1, kind='stable'))


def test_identical_embeddings_give_finite_distances():
    # Every item ties with every other: neighbourhoods go by index, and items past the first
    # k1 + 1 belong to none, their own included.
    distances = rerank(np.zeros((5, 3)), np.zeros((40, 3)), reranking.RerankOptions(20, 6, 0.3))
    assert np.isfinite(distances).all()


@pytest.mark.parametrize('k1, k2, lambda_value, message', [
    (0, 6, 0.3, '--rerank_k1 0: must be at least 1'),
    (20, 0, 0.3, '--rerank_k2 0: must be at least 1'),
    (20, 6, 1.5, r'--rerank_lambda 1.5: must be in \[0, 1\]')])
def test_bad_options_are_input_errors(k1, k2, lambda_value, message):
    with pytest.raises(InputError, match=message):
        reranking.RerankOptions(k1, k2, lambda_value)


def test_average_query_expansion_skips_excluded_entries():
    # Gallery on a line at 0, 1, 2, 10; the query at 0 ignores the entry at 0.
    gallery = np.array([[0.0, 0], [1, 0], [2, 0], [10, 0]])
    query = np.array([[0.0, 2]])
    excluded = np.array([[True, False, False, False]])
    distances = reranking.metrics.Distances(gallery, 'euclidean')(query)
    expanded = reranking.average_query_expansion(query, gallery, distances, excluded, 2)
    np.testing.assert_allclose(expanded, [[(0 + 1 + 2) / 3, 2 / 3]])
    # More neighbours asked than valid entries: only the three valid ones are averaged.
    expanded = reranking.average_query_expansion(query, gallery, distances, excluded, 9)
    np.testing.assert_allclose(expanded, [[(0 + 1 + 2 + 10) / 4, 2 / 4]])


def test_evaluate_records_and_applies_the_options(tmp_path):
    query_csv, query_h5 = write_case(tmp_path, 'query', [
        ('0001', 'query/0001_c1s1_000010_00.jpg', 0), ('0002', 'query/0002_c1s1_000011_00.jpg', 5)])
    gallery_csv, gallery_h5 = write_case(tmp_path, 'gallery', [
        ('0001', 'bounding_box_test/0001_c2s1_000001_00.jpg', 1),
        ('0002', 'bounding_box_test/0002_c2s1_000002_00.jpg', 7),
        ('0003', 'bounding_box_test/0003_c2s1_000003_00.jpg', 2),
        ('0002', 'bounding_box_test/0002_c3s1_000004_00.jpg', 8.5)])
    query, gallery = read_csv(query_csv), read_csv(gallery_csv)
    query_embs = evaluation.load_embeddings(query_h5, query)
    gallery_embs = evaluation.load_embeddings(gallery_h5, gallery)
    excluder = excluders.create('market1501', gallery)

    def evaluated(**options):
        return evaluation.evaluate_embeddings(query_embs, gallery_embs, query, gallery,
                                            excluder, 'euclidean', **options)

    # q1 at 5: g1 (7, +), g2 (2, -), g3 (8.5, +), g0: AP (1 + 2/3) / 2.
    plain = evaluated()
    assert plain['aps'] == pytest.approx([1, 5 / 6])
    assert (plain['rerank'], plain['query_expansion']) == (None, 0)
    # Expanded by its nearest entry g1, q1 sits at 6: g1 (1), g3 (2.5), g2 (4): AP 1. With
    # lambda = 1, re-ranking divides each row by its maximum and keeps that order.
    result = evaluated(rerank=reranking.RerankOptions(2, 1, 1.0), query_expansion=1)
    assert result['aps'] == pytest.approx([1, 1])
    assert result['rerank'] == {'k1': 2, 'k2': 1, 'lambda_value': 1.0}
    assert result['query_expansion'] == 1


def test_cli_rerank_writes_the_options(tmp_path):
    out = tmp_path / 'out.json'
    args = market_args(tmp_path) + ['--rerank', '--rerank_k1', '3', '--rerank_k2', '2',
                                    '--query_expansion', '1', '--filename', str(out)]
    result = run(args, tmp_path)
    assert result.returncode == 0, result.stderr
    stored = json.loads(out.read_text())
    assert stored['rerank'] == {'k1': 3, 'k2': 2, 'lambda_value': 0.3}
    assert stored['query_expansion'] == 1


@pytest.mark.parametrize('flag, value, message', [
    ('--rerank_k1', '0', '--rerank_k1 0: must be at least 1'),
    ('--rerank_lambda', '-0.1', r'--rerank_lambda -0.1: must be in \[0, 1\]'),
    ('--rerank_lambda', '1.01', r'--rerank_lambda 1.01: must be in \[0, 1\]')])
def test_cli_bad_rerank_flags_are_one_line(tmp_path, flag, value, message):
    result = run(with_option(market_args(tmp_path) + ['--rerank'], flag, value), tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f'evaluate.py: error: {message.replace(chr(92), "")}')


def test_cli_rerank_flag_without_rerank_is_an_error(tmp_path):
    result = run(with_option(market_args(tmp_path), '--rerank_k2', '3'), tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == 'evaluate.py: error: --rerank_k2 applies with --rerank only'
