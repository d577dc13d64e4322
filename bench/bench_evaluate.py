#!/usr/bin/env python3
"""Time evaluation on synthetic problems of Market-1501 or MSMT17 size; write JSON (--output).

Market-1501: 3,368 queries x 15,913 gallery images (6 cameras, 750 identities, distractors
0000 and junk -1, Market-style file names, the `market1501` excluder). MSMT17: 11,659 queries
x 82,161 gallery images (15 cameras, 3,060 identities, a camera CSV column, the `camera`
excluder). Embeddings are identity centre + noise (seeded), float32, --dim wide; --scale
shrinks every count (MSMT17 at 1/8 ... 1).

By default it times `evaluation.evaluate_embeddings` in this process (median of --repeats
runs, min-max, and the process's peak memory). With --process it writes the CSVs and HDF5
files (into --workdir) and times `evaluate.py` as a user runs it: a subprocess under
/usr/bin/time -v, from start to JSON written, for both AP rules (--repeats runs each,
alternated), with each run's maximum resident set size. Either way a sample of queries is
checked against the exact formulas: direct float64 distances sum((q - g)^2), a stable
argsort, and scikit-learn's average_precision_score. With --rerank it times k-reciprocal
re-ranking with the paper's defaults instead (the exact-formula check is of the plain
distances, so it is off).
"""
import argparse
import dataclasses
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import benchlib
import excluders
from synthetic_problems import LAYOUTS, synthetic_problem, write_problem
from tripletreid.evaluation import evaluate_embeddings
from tripletreid.reranking import RerankOptions

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


def float64_matmul_gflops(size=2048, repeats=3):
    """This machine's float64 matrix-product rate now (best of `repeats`): the distance
    product's floor is 2 x queries x gallery x dim FLOP at this rate."""
    a = np.random.default_rng(0).standard_normal((size, size))
    best = float('inf')
    for _ in range(repeats):
        start = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - start)
    return round(2 * size ** 3 / best / 1e9, 1)


def in_process(args, layout, rerank):
    """Time evaluate_embeddings here; return (figures, result, problem)."""
    query, query_embs, gallery, gallery_embs = synthetic_problem(layout, args.dim, args.seed)
    seconds, cpu_seconds = [], []
    for _ in range(args.repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        excluder = excluders.create(layout.excluder, gallery)
        result = evaluate_embeddings(query_embs, gallery_embs, query, gallery, excluder,
                                     'euclidean', args.batch_size, rerank=rerank)
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu_start)
    figures = {'seconds': benchlib.summary(seconds),
               'cpu_seconds': benchlib.summary(cpu_seconds),
               'peak_rss_mib': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    return figures, result, (query, query_embs, gallery, gallery_embs)


def run_evaluate(command):
    """Run evaluate.py under /usr/bin/time -v: (wall seconds, max RSS in MiB, load average
    before, CPU seconds: user + system, which a busy machine inflates less than the wall)."""
    load = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run(['/usr/bin/time', '-v', *command], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f'{" ".join(command)} failed:\n{done.stderr[-3000:]}')
    def field(name):
        return float(re.search(rf'{name}: ([\d.]+)', done.stderr).group(1))

    cpu = field(r'User time \(seconds\)') + field(r'System time \(seconds\)')
    return seconds, field(r'Maximum resident set size \(kbytes\)') / 1024, load, cpu


def as_a_user(args, layout, rerank, folder):
    """Time evaluate.py as a subprocess, the --ap_rules alternated (the sklearn one only with
    --rerank); return (figures, the sklearn (else market) run's result, problem)."""
    print(f'writing the synthetic problem into {folder}', file=sys.stderr)
    query, gallery = write_problem(layout, args.dim, args.seed, folder)
    output = os.path.join(folder, 'result.json')
    command = [sys.executable, os.path.join(args.root, 'evaluate.py'),
               '--excluder', layout.excluder, '--metric', 'euclidean',
               '--query_dataset', query.csv_path, '--gallery_dataset', gallery.csv_path,
               '--query_embeddings', query.csv_path[:-4] + '.h5',
               '--gallery_embeddings', gallery.csv_path[:-4] + '.h5',
               '--batch_size', str(args.batch_size), '--filename', output, '--overwrite']
    if rerank is not None:
        command.append('--rerank')
    rules = {rule: flags for rule, flags in (('sklearn', []), ('market', ['--use_market_ap']))
             if args.ap_rules in ('both', rule) and not (rerank and rule == 'market')}
    runs, results = {rule: [] for rule in rules}, {}
    for number in range(args.repeats):
        for rule, flags in rules.items():
            runs[rule].append(run_evaluate(command + flags))
            print(f'run {number + 1}/{args.repeats}, {rule}: {runs[rule][-1][0]:.2f} s, '
                  f'{runs[rule][-1][1]:.0f} MiB', file=sys.stderr, flush=True)
            with open(output) as f:
                results[rule] = json.load(f)
    figures = {'evaluate_command': command, 'ap_rules': {rule: {
        'seconds': benchlib.summary([run[0] for run in rule_runs]),
        'peak_rss_mib': benchlib.summary([run[1] for run in rule_runs], 1),
        'load_average_before': [round(run[2], 2) for run in rule_runs],
        'cpu_seconds': benchlib.summary([run[3] for run in rule_runs]),
        'mAP': results[rule]['mAP']} for rule, rule_runs in runs.items()}}
    problem = []
    for dataset in (query, gallery):
        with h5py.File(dataset.csv_path[:-4] + '.h5', 'r') as f:
            problem += [dataset, f['emb'][()]]
    return figures, results.get('sklearn', results.get('market')), problem


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--dataset', choices=sorted(LAYOUTS), default='market1501')
    parser.add_argument('--scale', type=float, default=1.0,
                        help='Every count times this (0.125, 0.25, 0.5: the growth with N).')
    parser.add_argument('--dim', type=int, default=128, help='Embedding size.')
    parser.add_argument('--batch_size', type=int, default=256)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--check_queries', type=int, default=200,
                        help='Queries compared with the exact formulas (0: none).')
    parser.add_argument('--rerank', action='store_true',
                        help='Time k-reciprocal re-ranking (k1 20, k2 6, lambda 0.3).')
    parser.add_argument('--process', action='store_true',
                        help='Time evaluate.py as a subprocess, start to JSON written.')
    parser.add_argument('--ap_rules', choices=('both', 'sklearn', 'market'), default='both',
                        help='With --process: the AP rules timed (default: %(default)s).')
    parser.add_argument('--workdir',
                        help='With --process: the folder for the synthetic files (default: a '
                             'temporary one, removed at the end).')
    parser.add_argument('--root', default=benchlib.ROOT,
                        help='With --process: the checkout whose evaluate.py runs (default: '
                             'this one; another for a before/after comparison).')
    parser.add_argument('--repeats', type=int, default=3,
                        help='Evaluations timed (the figure is their median, with min-max).')
    benchlib.add_output_flags(parser, 'evaluate')
    args = parser.parse_args()
    if args.quick:
        args.check_queries, args.repeats = min(args.check_queries, 20), 1
    layout = LAYOUTS[args.dataset].scaled(args.scale)
    rerank = RerankOptions() if args.rerank else None
    exact = not args.rerank and not (args.process and args.ap_rules == 'market')  # sklearn AP
    check_queries = min(args.check_queries, layout.queries) if exact else 0

    gflops = float64_matmul_gflops()
    if args.process:
        with tempfile.TemporaryDirectory(prefix='bench_evaluate_') as temporary:
            figures, result, problem = as_a_user(args, layout, rerank,
                                                 args.workdir or temporary)
    else:
        figures, result, problem = in_process(args, layout, rerank)
    query, query_embs, gallery, gallery_embs = problem
    excluder = excluders.create(layout.excluder, gallery)
    sample = np.random.default_rng(args.seed).choice(layout.queries, check_queries,
                                                     replace=False)
    check = reference_check(result, query, query_embs, gallery, gallery_embs, excluder, sample)
    name = '_'.join(['evaluate', *(['process'] if args.process else []),
                     *([] if args.dataset == 'market1501' else [args.dataset]),
                     *([] if args.dim == 128 else [f'{args.dim}d']),
                     *([] if args.scale == 1 else [f'scale{args.scale:g}']),
                     *(['rerank'] if args.rerank else [])])
    benchlib.write_results({
        'dataset': args.dataset, 'scale': args.scale, 'layout': dataclasses.asdict(layout),
        'dim': args.dim, 'batch_size': args.batch_size,
        'distance_product_gflop': round(2 * layout.queries * layout.gallery * args.dim / 1e9, 1),
        'matmul_gflops_float64': gflops, **figures,
        'mAP': result['mAP'], 'top1': result['CMC'][0], 'mINP': result['mINP'],
        'skipped': len(result['skipped_queries']),
        'rerank': result['rerank'], 'checked_queries': check_queries, **check,
    }, args, name)


if __name__ == '__main__':
    main()
