"""Evaluation: mAP, CMC and mINP of query embeddings against a gallery, as the official
evaluate.py does, without TensorFlow.

Distances for a batch of queries at a time (memory grows with the batch, not the number of
queries), excluded gallery entries removed, queries without a valid match skipped; optional
query expansion and k-reciprocal re-ranking.
"""
import dataclasses
import sys

import h5py
import numpy as np

from excluders.base import encode
from tripletreid import metrics, provenance, reranking
from tripletreid.errors import InputError

_WARNED_SKIPS = 10  # skipped queries named on the console; the JSON lists all


def load_embeddings(path, dataset):
    """The `emb` dataset of the HDF5 file `path` as float64, checked against its CSV rows."""
    try:
        with h5py.File(path, 'r') as f:
            if not isinstance(f.get('emb'), h5py.Dataset):
                raise InputError(f'{path}: no dataset `emb` (found: {", ".join(f) or "nothing"})')
            emb = f['emb']
            if emb.ndim != 2 or emb.shape[1] == 0 or emb.dtype.kind not in 'fiu':
                raise InputError(f'{path}: `emb` must be N x D numbers, found shape '
                                 f'{emb.shape} of {emb.dtype}')
            embeddings = emb.astype(np.float64)[()]  # converted as read: no float32 copy
            paths = provenance.stored_paths(f)
    except FileNotFoundError:
        raise InputError(f'{path}: no such file') from None
    except OSError as error:
        raise InputError(f'{path}: not a readable HDF5 file ({error})') from None
    if len(embeddings) != len(dataset):
        raise InputError(f'{path}: {len(embeddings)} embeddings, but {dataset.csv_path} has '
                         f'{len(dataset)} rows')
    provenance.check_rows(path, paths, dataset)
    bad = np.flatnonzero(~np.isfinite(embeddings).all(axis=1))
    if len(bad):
        more = f' (and {len(bad) - 1} more rows)' if len(bad) > 1 else ''
        raise InputError(f'{path}: row {bad[0]} holds NaN or infinite values; it is '
                         f'{dataset.fids[bad[0]]} of {dataset.where(bad[0])}{more}')
    return embeddings


def load_query_and_gallery(query_path, gallery_path, query, gallery):
    """The query and gallery embeddings (`load_embeddings`), refused if their sizes differ."""
    query_embs = load_embeddings(query_path, query)
    gallery_embs = load_embeddings(gallery_path, gallery)
    if query_embs.shape[1] != gallery_embs.shape[1]:
        raise InputError(f'embedding sizes differ: {query_embs.shape[1]} in {query_path}, '
                         f'{gallery_embs.shape[1]} in {gallery_path}')
    return query_embs, gallery_embs


def evaluate_embeddings(query_embs, gallery_embs, query, gallery, excluder, metric,
                        batch_size=256, ap_rule='sklearn', progress=None, rerank=None,
                        query_expansion=0):
    """Evaluate query embeddings against gallery embeddings; return the result dict.

    `query` and `gallery` are the CSV Datasets (rows in embedding order), `excluder` comes
    from `excluders.create(name, gallery)`, `ap_rule` is `sklearn` or `market`. `progress`,
    if given, is called as progress(done, total) after each batch. `rerank` (RerankOptions or
    None) and `query_expansion` (N, 0 for none) re-rank as `batches` says. Keys: mAP, CMC (top-k
    accuracy for k = 1..gallery size), mINP; aps, inps and first_ranks (1-based rank of the
    first true match), one per evaluated query in query order; skipped_queries (file names),
    num_queries, num_evaluated_queries, metric, ap_rule, rerank (k1, k2, lambda_value or
    None), query_expansion.
    Raises InputError if no query has a valid match.
    """
    parts = []
    for rows, distances, matches, excluded in batches(
            query_embs, gallery_embs, query, gallery, excluder, metric, batch_size,
            rerank=rerank, query_expansion=query_expansion):
        parts.append(metrics.score_queries(distances, matches, excluded, ap_rule))
        del distances, matches, excluded  # freed before the next batch is made, not after
        if progress is not None:
            progress(rows.stop, len(query))
    scores = metrics.QueryScores.concatenate(parts)
    evaluated = scores.evaluated
    if not evaluated.any():
        raise InputError(f'no query of {query.csv_path} has a valid match in '
                         f'{gallery.csv_path} (check the identities and the excluder)')
    return {
        'mAP': float(np.mean(scores.ap[evaluated])),
        'CMC': metrics.cmc_curve(scores.first_rank[evaluated], len(gallery)).tolist(),
        'aps': scores.ap[evaluated].tolist(),
        'inps': scores.inp[evaluated].tolist(),
        'first_ranks': scores.first_rank[evaluated].tolist(),
        'mINP': float(np.mean(scores.inp[evaluated])),
        'skipped_queries': query.fids[~evaluated].tolist(),
        'num_queries': len(query),
        'num_evaluated_queries': int(evaluated.sum()),
        'metric': metric,
        'ap_rule': ap_rule,
        'rerank': None if rerank is None else dataclasses.asdict(rerank),
        'query_expansion': query_expansion,
    }


def ranked_lists(query_embs, gallery_embs, query, gallery, excluder, metric, rows, length=10,
                 batch_size=256, rerank=None, query_expansion=0):
    """The `length` nearest valid gallery entries of the queries `rows`, in stable order
    (after re-ranking as `evaluate_embeddings` does).

    Returns (gallery indices [len(rows), length], -1 where the gallery has fewer valid
    entries; whether each is a true match; their distances, inf where there is none: the
    metric's (euclidean not squared), or with `rerank` the re-ranked ones).
    """
    ranked = np.full((len(rows), length), -1)
    is_match = np.zeros((len(rows), length), dtype=bool)
    ranked_distances = np.full((len(rows), length), np.inf)
    for part, distances, matches, excluded in batches(
            query_embs, gallery_embs, query, gallery, excluder, metric, batch_size, rows,
            rerank, query_expansion):
        order = np.argsort(np.where(excluded, np.inf, distances), axis=1, kind='stable')
        order = order[:, :length]
        valid = ~np.take_along_axis(excluded, order, axis=1)
        ranked[part, :order.shape[1]] = np.where(valid, order, -1)
        is_match[part, :order.shape[1]] = valid & np.take_along_axis(matches, order, axis=1)
        ranked_distances[part, :order.shape[1]] = np.where(
            valid, np.take_along_axis(distances, order, axis=1), np.inf)
    if metric == 'euclidean' and rerank is None:  # `Distances` gives it squared
        ranked_distances = np.sqrt(ranked_distances)
    return ranked, is_match, ranked_distances


def batches(query_embs, gallery_embs, query, gallery, excluder, metric, batch_size,
             rows=None, rerank=None, query_expansion=0):
    """Yield (slice of `rows`, distances, identity matches, excluded) per batch of queries.

    Identities are compared as integer codes; a query identity absent from the gallery gets
    -1 and matches nothing. All query file names are parsed before the first batch.
    With `query_expansion`, every query is expanded first, since re-ranking needs them all;
    with `rerank`, the distances are the re-ranked ones.
    """
    rows = np.arange(len(query)) if rows is None else np.asarray(rows)
    distances = metrics.Distances(gallery_embs, metric)
    vocabulary = np.unique(gallery.pids)
    gallery_pids = encode(gallery.pids, vocabulary)
    query_pids = encode(query.pids, vocabulary)
    query_keys = excluder.keys(query)
    if query_expansion:
        query_embs = expanded_queries(query_embs, gallery_embs, distances, excluder,
                                       query_keys, query_expansion, batch_size)
    if rerank is not None:
        reranker = reranking.KReciprocal(query_embs, gallery_embs, metric, rerank)
    for start in range(0, len(rows), batch_size):
        part = slice(start, min(start + batch_size, len(rows)))
        batch = rows[part]
        batch_distances = distances(query_embs[batch])
        if rerank is not None:
            batch_distances = reranker(batch, batch_distances)
        yield (part, batch_distances, query_pids[batch, None] == gallery_pids,
               excluder(query_keys[batch]))


def expanded_queries(query_embs, gallery_embs, distances, excluder, query_keys, n,
                      batch_size):
    """All query embeddings after average query expansion over `n` gallery neighbours."""
    expanded = np.empty_like(query_embs, dtype=np.float64)
    for start in range(0, len(query_embs), batch_size):
        batch = slice(start, start + batch_size)
        expanded[batch] = reranking.average_query_expansion(
            query_embs[batch], gallery_embs, distances(query_embs[batch]),
            excluder(query_keys[batch]), n)
    return expanded


def summary(result):
    """The console summary: mAP, top-1/2/5/10 (as far as the gallery goes), mINP."""
    cmc = result['CMC']
    tops = [f'top-{k}: {cmc[k - 1]:.2%}' for k in (1, 2, 5, 10) if k <= len(cmc)]
    return ' | '.join([f'mAP: {result["mAP"]:.2%}', *tops, f'mINP: {result["mINP"]:.2%}'])


def warn_skipped(result):
    """Name the skipped queries on stderr (the first few; the JSON lists all)."""
    skipped = result['skipped_queries']
    for fid in skipped[:_WARNED_SKIPS]:
        print(f'warning: query {fid} has no valid match in the gallery; skipped',
              file=sys.stderr)
    if len(skipped) > _WARNED_SKIPS:
        print(f'warning: {len(skipped) - _WARNED_SKIPS} more queries skipped '
              '(all are listed under skipped_queries in the JSON)', file=sys.stderr)
