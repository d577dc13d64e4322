#!/usr/bin/env python3
"""search.py's backends on a large gallery: build time, latency, peak memory and recall@10.

A gallery of 1,000,000 x 128 synthetic clustered embeddings (seeded: 10,000 identity centres,
standard normal; each row its centre plus normal noise of a per-identity spread in [0.3, 0.7])
and 1,000 queries drawn the same way. Each backend of `tripletreid/nearest.py` (the project's
own search code, what search.py runs): exact (chunked float32 BLAS, exact float64 re-scoring),
and Faiss flat, IVF and HNSW (candidates re-scored exactly), reports

- build seconds (the Faiss structure; exact: its norms),
- latency per query at batch 1 (median over --single queries, min-max) and for the 1,000
  queries in one call (seconds, and per query),
- peak memory beyond the gallery: the process's peak resident memory (VmHWM, reset through
  /proc/self/clear_refs before each phase) minus the resident memory before it, for the build
  and for the 1,000-query search,
- recall@10 against exact: the share of the exact 10 nearest each backend returns.

IVF (--nlist) and HNSW are swept over nprobe and efSearch; the first setting with recall@10
>= 0.95 is the one reported as meeting the target, if any.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # also puts the project's root on the path
from tripletreid import nearest

K = 10


def clustered(count, centres, spreads, rng):
    owners = rng.integers(0, len(centres), count)
    rows = np.empty((count, centres.shape[1]), np.float32)
    for start in range(0, count, 1 << 16):
        part = owners[start:start + (1 << 16)]
        noise = rng.standard_normal((len(part), centres.shape[1]), dtype=np.float32)
        rows[start:start + len(part)] = centres[part] + spreads[part, None] * noise
    return rows


def problem(size, queries, dim, identities, seed):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((identities, dim), dtype=np.float32)
    spreads = rng.uniform(0.3, 0.7, identities).astype(np.float32)
    return clustered(size, centres, spreads, rng), clustered(queries, centres, spreads, rng)


def rss_mb(field='VmRSS'):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024
    return float('nan')


class Peak:
    """Peak resident memory of a phase, beyond the memory at its start."""

    def __enter__(self):
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # resets VmHWM to the current resident size
        self.start = rss_mb()
        return self

    def __exit__(self, *_):
        self.mb = rss_mb('VmHWM') - self.start


def recall(found, exact):
    return float(np.mean([len(set(a) & set(b)) / K for a, b in zip(found, exact)]))


def measure(search, queries, single, exact=None):
    """Latency at batch 1, the whole batch's seconds and peak memory, recall@10."""
    latencies = []
    for row in range(single):
        began = time.perf_counter()
        search.search(queries[row:row + 1], K)
        latencies.append((time.perf_counter() - began) * 1e3)
    with Peak() as peak:
        began = time.perf_counter()
        results = search.search(queries, K)
        seconds = time.perf_counter() - began
    figures = {'batch1_ms': benchlib.summary(latencies), 'batch_seconds': round(seconds, 3),
               'batch_ms_per_query': round(seconds / len(queries) * 1e3, 4),
               'search_peak_mb_beyond': round(peak.mb, 1)}
    if exact is not None:
        figures['recall_at_10'] = round(recall(results.indices, exact), 4)
    return figures, results


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--gallery', type=int, default=1_000_000)
    parser.add_argument('--queries', type=int, default=1000)
    parser.add_argument('--dim', type=int, default=128)
    parser.add_argument('--identities', type=int, default=10_000)
    parser.add_argument('--single', type=int, default=100,
                        help='Queries timed one by one (exact: a tenth of them).')
    parser.add_argument('--nlist', type=int, default=1024)
    parser.add_argument('--nprobes', type=int, nargs='+', default=[8, 16, 32, 64])
    parser.add_argument('--hnsw_m', type=int, default=32)
    parser.add_argument('--ef_construction', type=int, default=80)
    parser.add_argument('--ef_searches', type=int, nargs='+', default=[32, 64, 128, 256])
    parser.add_argument('--backends', nargs='+', default=['exact', 'flat', 'ivf', 'hnsw'])
    parser.add_argument('--seed', type=int, default=0)
    benchlib.add_output_flags(parser, 'search')
    options = parser.parse_args()
    if options.quick:
        options.gallery, options.identities, options.single = 50_000, 500, 10
        options.nlist = 128
    began = time.perf_counter()
    gallery, queries = problem(options.gallery, options.queries, options.dim,
                               options.identities, options.seed)
    print(f'gallery {gallery.shape} in {time.perf_counter() - began:.1f} s, '
          f'{gallery.nbytes / 1e6:.0f} MB', file=sys.stderr, flush=True)
    result = {'gallery': list(gallery.shape), 'queries': options.queries, 'k': K,
              'identities': options.identities, 'seed': options.seed,
              'gallery_mb': round(gallery.nbytes / 1e6, 1), 'backends': {}}

    with Peak() as peak:
        began = time.perf_counter()
        exact = nearest.ExactSearch(gallery, 'euclidean')
        build = time.perf_counter() - began
    figures, exact_results = measure(exact, queries, max(options.single // 10, 3))
    exact_top = exact_results.indices
    result['backends']['exact'] = dict(build_seconds=round(build, 3),
                                       build_peak_mb_beyond=round(peak.mb, 1), **figures)
    print('exact', result['backends']['exact'], file=sys.stderr, flush=True)

    import faiss
    result['faiss'] = {'version': faiss.__version__, 'omp_threads': faiss.omp_get_max_threads()}
    settings = {'flat': [{}], 'ivf': [{'nprobe': n} for n in options.nprobes],
                'hnsw': [{'ef_search': e} for e in options.ef_searches]}
    for kind in ('flat', 'ivf', 'hnsw'):
        if kind not in options.backends:
            continue
        build_options = nearest.FaissOptions(kind, nlist=options.nlist, hnsw_m=options.hnsw_m,
                                             ef_construction=options.ef_construction)
        with Peak() as peak:
            began = time.perf_counter()
            structure = nearest.build_faiss(gallery, build_options, seed=options.seed)
            build = time.perf_counter() - began
        size = len(faiss.serialize_index(structure)) / 1e6
        entry = {'build_seconds': round(build, 2), 'build_peak_mb_beyond': round(peak.mb, 1),
                 'structure_mb': round(size, 1), 'build_options': build_options.build_key(),
                 'settings': []}
        for setting in settings[kind]:
            search_options = nearest.FaissOptions(
                kind, nlist=options.nlist, hnsw_m=options.hnsw_m,
                ef_construction=options.ef_construction, **setting)
            search = nearest.FaissSearch(gallery, 'euclidean', structure, search_options)
            figures, _ = measure(search, queries, options.single, exact_top)
            entry['settings'].append(dict(setting, **figures))
            print(kind, entry['settings'][-1], file=sys.stderr, flush=True)
        meeting = [s for s in entry['settings'] if s['recall_at_10'] >= 0.95]
        entry['first_meeting_recall_0.95'] = meeting[0] if meeting else None
        result['backends'][kind] = entry
        del structure
    load = os.getloadavg()
    result['load_average_at_end'] = [round(x, 2) for x in load]
    benchlib.write_results(result, options, 'search')


if __name__ == '__main__':
    main()
