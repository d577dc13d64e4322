#!/usr/bin/env python3
"""Time evaluate.py's code path on a Market-1501-sized synthetic problem; write JSON (--output).

3,368 queries x 15,913 gallery images, 128-D float32 embeddings (identity centre + noise,
seeded), Market-style file names with 6 cameras, distractors (0000) and junk (-1). Reports
the seconds (median of --repeats runs, min-max) and the process's peak memory of
`evaluate.evaluate_embeddings`, and checks a sample of queries against the exact formulas:
direct float64 distances sum((q - g)^2), a stable argsort, and scikit-learn's
average_precision_score. With --rerank it times k-reciprocal re-ranking with
the paper's defaults instead (the exact-formula check is of the plain distances, so it is off).
"""
import argparse
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import benchlib
import excluders
from tripletreid.csv_dataset import Dataset
from tripletreid.evaluation import evaluate_embeddings
from tripletreid.reranking import RerankOptions

N_QUERY, N_GALLERY, DIM = 3368, 15913, 128
N_IDENTITY, N_DISTRACTOR, N_JUNK, N_CAMERA = 750, 2793, 1000, 6


def market_dataset(name, folder, pids, cams):
    """A Dataset with Market-1501 file names for the given identities and cameras."""
    fids = np.array([f'{folder}/{pid}_c{cam}s1_{i:06d}_00.jpg'
                     for i, (pid, cam) in enumerate(zip(pids, cams))])
    return Dataset(name, pids, fids, None, np.arange(1, len(pids) + 1))


def synthetic_problem(seed):
    """Query and gallery Datasets and embeddings; every query identity is in the gallery."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((N_IDENTITY + 1, DIM))
    n_people = N_GALLERY - N_DISTRACTOR - N_JUNK
    gallery_ids = np.concatenate([rng.integers(1, N_IDENTITY + 1, n_people),
                                  np.zeros(N_DISTRACTOR, int), np.full(N_JUNK, -1)])
    query_ids = rng.integers(1, N_IDENTITY + 1, N_QUERY)

    def embed(ids):
        own = centres[np.maximum(ids, 0)] * (ids > 0)[:, None]
        return (own + 1.5 * rng.standard_normal((len(ids), DIM))).astype(np.float32)

    def pid_strings(ids):
        return np.array(['-1' if i < 0 else f'{i:04d}' for i in ids])

    gallery = market_dataset('gallery.csv', 'bounding_box_test', pid_strings(gallery_ids),
                             rng.integers(1, N_CAMERA + 1, N_GALLERY))
    query = market_dataset('query.csv', 'query', pid_strings(query_ids),
                           rng.integers(1, N_CAMERA + 1, N_QUERY))
    return query, embed(query_ids), gallery, embed(gallery_ids)


def reference_check(result, query, query_embs, gallery, gallery_embs, excluder, sample):
    """Recompute the `sample` queries with the exact formulas; return the worst differences."""
    from sklearn.metrics import average_precision_score

    evaluated = np.flatnonzero(np.isin(query.fids, result['skipped_queries'], invert=True))
    position = {row: i for i, row in enumerate(evaluated)}
    keys = excluder.keys(query)
    worst = {'ap_difference': 0.0, 'inp_difference': 0.0, 'first_rank_mismatches': 0,
             'skip_mismatches': 0}
    for row in sample:
        valid = ~excluder(keys[row:row + 1])[0]
        distances = ((gallery_embs[valid].astype(np.float64) - query_embs[row]) ** 2).sum(1)
        truth = gallery.pids[valid] == query.pids[row]
        hits = np.flatnonzero(truth[np.argsort(distances, kind='stable')]) + 1
        worst['skip_mismatches'] += (row in position) != (len(hits) > 0)
        if row not in position or len(hits) == 0:
            continue
        i = position[row]
        ap = average_precision_score(truth, -distances)
        worst['ap_difference'] = max(worst['ap_difference'], abs(ap - result['aps'][i]))
        inp = len(hits) / hits[-1]
        worst['inp_difference'] = max(worst['inp_difference'], abs(inp - result['inps'][i]))
        worst['first_rank_mismatches'] += int(hits[0] != result['first_ranks'][i])
    return worst


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch_size', type=int, default=256)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--check_queries', type=int, default=200,
                        help='Queries compared with the exact formulas (0: none).')
    parser.add_argument('--rerank', action='store_true',
                        help='Time k-reciprocal re-ranking (k1 20, k2 6, lambda 0.3).')
    parser.add_argument('--repeats', type=int, default=3,
                        help='Evaluations timed (the figure is their median, with min-max).')
    benchlib.add_output_flags(parser, 'evaluate')
    args = parser.parse_args()
    if args.quick:
        args.check_queries, args.repeats = min(args.check_queries, 20), 1
    rerank = RerankOptions() if args.rerank else None
    check_queries = 0 if args.rerank else args.check_queries

    query, query_embs, gallery, gallery_embs = synthetic_problem(args.seed)
    seconds, cpu_seconds = [], []
    for _ in range(args.repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        excluder = excluders.create('market1501', gallery)
        result = evaluate_embeddings(query_embs, gallery_embs, query, gallery, excluder,
                                     'euclidean', args.batch_size, rerank=rerank)
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu_start)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    sample = np.random.default_rng(args.seed).choice(N_QUERY, check_queries, replace=False)
    check = reference_check(result, query, query_embs, gallery, gallery_embs, excluder, sample)
    benchlib.write_results({
        'queries': N_QUERY, 'gallery': N_GALLERY, 'dim': DIM, 'batch_size': args.batch_size,
        'seconds': benchlib.summary(seconds), 'cpu_seconds': benchlib.summary(cpu_seconds),
        'peak_rss_mib': round(peak_mib, 1),
        'mAP': result['mAP'], 'top1': result['CMC'][0], 'mINP': result['mINP'],
        'skipped': len(result['skipped_queries']),
        'rerank': result['rerank'], 'checked_queries': check_queries, **check,
    }, args, 'evaluate_rerank' if args.rerank else 'evaluate')


if __name__ == '__main__':
    main()
