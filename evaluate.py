#!/usr/bin/env python3
"""Evaluate a ReID embedding: mAP, CMC and mINP of query embeddings against a gallery.

The protocol of the official evaluate.py, without TensorFlow: distances for a batch of
queries at a time, excluded gallery entries removed, queries without a valid match skipped.
Other scripts call `evaluate_embeddings` directly.
"""
import argparse
import dataclasses
import os
import sys

import h5py
import numpy as np

import common
import excluders
import metrics
import reranking
from common import InputError
from data.csv_dataset import read_csv
from excluders.base import encode

CMC_PICTURE = 'cmc.png'
RANKED_LIST_PICTURE = 'ranked_list.png'
_WARNED_SKIPS = 10  # skipped queries named on the console; the JSON lists all

_EPILOG = '''\
Results: a query whose gallery holds no valid true match (after exclusion) is skipped with a
warning; mAP, mINP and the CMC are means over the evaluated (non-skipped) queries only, so
the CMC denominator is the number of evaluated queries (the official script divided by all
queries). Gallery entries are ranked by distance, ties in gallery order (a stable sort).
The default AP is scikit-learn's (tied distances count as one threshold); --use_market_ap
takes the Market-1501 script's trapezoid rule. mINP is the mean inverse negative penalty
(Ye et al. 2020): true matches / rank of the hardest true match.

Re-ranking is off by default (the official protocol): --query_expansion N first replaces each
query by the mean of itself and its N nearest valid gallery embeddings; --rerank then ranks by
k-reciprocal re-ranking (Zhong et al. 2017) of the joint query + gallery set, with the paper's
k1, k2 and lambda (original distance: the metric's, squared for euclidean, as the reference code).

Excluders: market1501 and duke read identity and camera from the file names
(0002_c1s1_000451_03.jpg, 0005_c2_f0046985.jpg) and ignore the query identity's gallery
images from the query camera and the junk (identity -1); diagonal ignores only the query's own
file (query set = gallery set); camera ignores the query identity's gallery images from the
query camera, the camera being the third CSV column (identity,path,camera) or what
--camera_pattern finds.

Pictures (--picture_dir): cmc.png, the CMC curve, and with --image_root ranked_list.png, one
row per query: the query, then its 10 best gallery matches after exclusion, framed green
when they are the same identity and red when not.
'''


def build_parser():
    parser = argparse.ArgumentParser(
        description='Evaluate a ReID embedding.', epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        '--excluder', required=True, choices=sorted(excluders.EXCLUDERS),
        help='Which gallery entries each query ignores (see below).')
    parser.add_argument(
        '--camera_pattern', metavar='REGEX',
        help='With --excluder camera: a regular expression with a named group `camera`, '
             r'searched in each path as written in the CSVs, e.g. "_c(?P<camera>\d+)_" or '
             r'"^cam(?P<camera>\d+)/". Without it the third CSV column is the camera.')
    for role in ('query', 'gallery'):
        parser.add_argument(f'--{role}_dataset', required=True,
                            help=f'Path to the {role} dataset CSV file.')
        parser.add_argument(f'--{role}_embeddings', required=True,
                            help=f'Path to the HDF5 file of the {role} embeddings (dataset '
                                 '`emb`, one row per CSV row).')
    parser.add_argument(
        '--metric', required=True, choices=metrics.METRICS,
        help='Distance between embeddings (euclidean and sqeuclidean rank alike).')
    parser.add_argument(
        '--normalize', action='store_true',
        help='Scale every embedding to unit length first (euclidean distances then rank as '
             'cosine ones), as the Bag-of-Tricks baseline evaluates its BNNeck features.')
    parser.add_argument(
        '--filename', metavar='JSON',
        help='Store the results in this JSON file: mAP, CMC, mINP, aps, inps and first_ranks '
             '(one per evaluated query), skipped_queries and counts.')
    parser.add_argument('--overwrite', action='store_true',
                        help='Replace existing output files instead of refusing.')
    parser.add_argument(
        '--batch_size', default=256, type=common.positive_int,
        help='Queries per batch; memory grows with it (default: %(default)s).')
    parser.add_argument(
        '--use_market_ap', action='store_true',
        help='Compute the AP exactly as the Market-1501 evaluation script does (trapezoid '
             'rule) rather than as scikit-learn does, which gives slightly different scores.')
    parser.add_argument(
        '--query_expansion', default=0, type=common.nonnegative_int, metavar='N',
        help='Average query expansion over the N nearest valid gallery entries (default: '
             '%(default)s, off).')
    parser.add_argument('--rerank', action='store_true',
                        help='k-reciprocal re-ranking of the distances (see below).')
    defaults = reranking.RerankOptions()
    parser.add_argument('--rerank_k1', default=defaults.k1, type=int, metavar='K1',
                        help='With --rerank: size of the k-reciprocal neighbourhoods '
                             '(default: %(default)s).')
    parser.add_argument('--rerank_k2', default=defaults.k2, type=int, metavar='K2',
                        help='With --rerank: neighbours of the local query expansion '
                             '(default: %(default)s).')
    parser.add_argument('--rerank_lambda', default=defaults.lambda_value, type=float,
                        metavar='LAMBDA',
                        help='With --rerank: weight of the original distance against the '
                             'Jaccard distance, in [0, 1] (default: %(default)s).')
    parser.add_argument('--picture_dir', metavar='DIR',
                        help=f'Write {CMC_PICTURE} (and {RANKED_LIST_PICTURE} with '
                             '--image_root) into this directory.')
    parser.add_argument('--image_root', type=common.readable_directory, metavar='DIR',
                        help='Directory the CSV paths are relative to, for the ranked list.')
    parser.add_argument('--picture_queries', default=10, type=common.positive_int, metavar='N',
                        help='Queries in the ranked list (default: %(default)s).')
    parser.add_argument('--picture_seed', type=int, metavar='SEED',
                        help='Show a random sample of queries drawn with this seed instead of '
                             'the first ones.')
    return parser


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
            embeddings = emb[()].astype(np.float64)
    except FileNotFoundError:
        raise InputError(f'{path}: no such file') from None
    except OSError as error:
        raise InputError(f'{path}: not a readable HDF5 file ({error})') from None
    if len(embeddings) != len(dataset):
        raise InputError(f'{path}: {len(embeddings)} embeddings, but {dataset.csv_path} has '
                         f'{len(dataset)} rows')
    bad = np.flatnonzero(~np.isfinite(embeddings).all(axis=1))
    if len(bad):
        more = f' (and {len(bad) - 1} more rows)' if len(bad) > 1 else ''
        raise InputError(f'{path}: row {bad[0]} holds NaN or infinite values; it is '
                         f'{dataset.fids[bad[0]]} of {dataset.where(bad[0])}{more}')
    return embeddings


def evaluate_embeddings(query_embs, gallery_embs, query, gallery, excluder, metric,
                        batch_size=256, ap_rule='sklearn', progress=None, rerank=None,
                        query_expansion=0):
    """Evaluate query embeddings against gallery embeddings; return the result dict.

    `query` and `gallery` are the CSV Datasets (rows in embedding order), `excluder` comes
    from `excluders.create(name, gallery)`, `ap_rule` is `sklearn` or `market`. `progress`,
    if given, is called as progress(done, total) after each batch. `rerank` (RerankOptions or
    None) and `query_expansion` (N, 0 for none) re-rank as `_batches` says. Keys: mAP, CMC (top-k
    accuracy for k = 1..gallery size), mINP; aps, inps and first_ranks (1-based rank of the
    first true match), one per evaluated query in query order; skipped_queries (file names),
    num_queries, num_evaluated_queries, metric, ap_rule, rerank (k1, k2, lambda_value or
    None), query_expansion.
    Raises InputError if no query has a valid match.
    """
    parts = []
    for rows, distances, matches, excluded in _batches(
            query_embs, gallery_embs, query, gallery, excluder, metric, batch_size,
            rerank=rerank, query_expansion=query_expansion):
        parts.append(metrics.score_queries(distances, matches, excluded, ap_rule))
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
    entries; whether each is a true match).
    """
    ranked = np.full((len(rows), length), -1)
    is_match = np.zeros((len(rows), length), dtype=bool)
    for part, distances, matches, excluded in _batches(
            query_embs, gallery_embs, query, gallery, excluder, metric, batch_size, rows,
            rerank, query_expansion):
        order = np.argsort(np.where(excluded, np.inf, distances), axis=1, kind='stable')
        order = order[:, :length]
        valid = ~np.take_along_axis(excluded, order, axis=1)
        ranked[part, :order.shape[1]] = np.where(valid, order, -1)
        is_match[part, :order.shape[1]] = valid & np.take_along_axis(matches, order, axis=1)
    return ranked, is_match


def _batches(query_embs, gallery_embs, query, gallery, excluder, metric, batch_size,
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
        query_embs = _expanded_queries(query_embs, gallery_embs, distances, excluder,
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


def _expanded_queries(query_embs, gallery_embs, distances, excluder, query_keys, n,
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


def _warn_skipped(result):
    skipped = result['skipped_queries']
    for fid in skipped[:_WARNED_SKIPS]:
        print(f'warning: query {fid} has no valid match in the gallery; skipped',
              file=sys.stderr)
    if len(skipped) > _WARNED_SKIPS:
        print(f'warning: {len(skipped) - _WARNED_SKIPS} more queries skipped '
              '(all are listed under skipped_queries in the JSON)', file=sys.stderr)


def _progress(done, total):
    print(f'\rEvaluating queries {done}/{total}', end='\n' if done == total else '',
          file=sys.stderr, flush=True)


def _output_paths(args):
    """Every file this run will write, checked before any work is done."""
    paths = [args.filename] if args.filename else []
    if args.picture_dir:
        paths.append(os.path.join(args.picture_dir, CMC_PICTURE))
        if args.image_root:
            paths.append(os.path.join(args.picture_dir, RANKED_LIST_PICTURE))
    return paths


def _prepare_outputs(args):
    if args.image_root and not args.picture_dir:
        raise InputError('--image_root is for the ranked-list picture; add --picture_dir')
    if args.picture_dir:
        try:
            os.makedirs(args.picture_dir, exist_ok=True)
        except OSError as error:
            raise InputError(f'--picture_dir {args.picture_dir}: {error.strerror}') from None
    for path in _output_paths(args):
        common.check_output(path, args.overwrite)


def _save_pictures(args, result, query_embs, gallery_embs, query, gallery, excluder):
    import pictures  # OpenCV and matplotlib load only when pictures are asked for
    pictures.save_cmc_curve(result['CMC'], os.path.join(args.picture_dir, CMC_PICTURE))
    if not args.image_root:
        return
    count = min(args.picture_queries, len(query))
    if args.picture_seed is None:
        rows = np.arange(count)
    else:
        rows = np.sort(np.random.default_rng(args.picture_seed).choice(
            len(query), size=count, replace=False))
    ranked, is_match = ranked_lists(query_embs, gallery_embs, query, gallery, excluder,
                                    args.metric, rows, rerank=_rerank_options(args),
                                    query_expansion=args.query_expansion)
    pictures.save_ranked_lists(args.image_root, query.fids[rows], gallery.fids, ranked,
                               is_match, os.path.join(args.picture_dir, RANKED_LIST_PICTURE))


def _rerank_options(args):
    """The RerankOptions of --rerank (checked: a bad value is a one-line error), or None."""
    if not args.rerank:
        return None
    return reranking.RerankOptions(args.rerank_k1, args.rerank_k2, args.rerank_lambda)


def main():
    parser = build_parser()
    args = parser.parse_args()
    given = common.explicit_flags(parser) & {'rerank_k1', 'rerank_k2', 'rerank_lambda'}
    if given and not args.rerank:
        raise InputError(f'--{min(given)} applies with --rerank only')
    rerank = _rerank_options(args)
    _prepare_outputs(args)
    query = read_csv(args.query_dataset)
    gallery = read_csv(args.gallery_dataset)
    excluder = excluders.create(args.excluder, gallery, args.camera_pattern)
    query_embs = load_embeddings(args.query_embeddings, query)
    gallery_embs = load_embeddings(args.gallery_embeddings, gallery)
    if query_embs.shape[1] != gallery_embs.shape[1]:
        raise InputError(f'embedding sizes differ: {query_embs.shape[1]} in '
                         f'{args.query_embeddings}, {gallery_embs.shape[1]} in '
                         f'{args.gallery_embeddings}')
    if args.normalize:
        query_embs, gallery_embs = map(metrics.unit_rows, (query_embs, gallery_embs))
    result = evaluate_embeddings(
        query_embs, gallery_embs, query, gallery, excluder, args.metric, args.batch_size,
        'market' if args.use_market_ap else 'sklearn',
        _progress if sys.stderr.isatty() else None, rerank, args.query_expansion)
    result['excluder'] = args.excluder
    result['normalized'] = args.normalize
    _warn_skipped(result)
    print(f'{result["num_evaluated_queries"]} of {result["num_queries"]} queries evaluated, '
          f'{len(result["skipped_queries"])} skipped (no valid gallery match); the CMC, mAP '
          'and mINP are over the evaluated ones.')
    print(summary(result))
    if args.filename:
        common.write_json(args.filename, result)
    if args.picture_dir:
        _save_pictures(args, result, query_embs, gallery_embs, query, gallery, excluder)


if __name__ == '__main__':
    common.run_cli(main)
