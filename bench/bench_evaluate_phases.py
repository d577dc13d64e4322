#!/usr/bin/env python3
"""Where evaluate.py's time goes at Market-1501 (or MSMT17) size: each phase of one run, in a
fresh Python process as a user's, in wall and CPU seconds.

    python bench/bench_evaluate_phases.py --output bench/results/evaluate_phases.json

The phases are those of `evaluate.py`'s `main`, the same functions in the same order:
importing its modules, reading the two CSVs, building the excluder (it parses the gallery's
file names), reading the HDF5 embeddings, `evaluate_embeddings` (split into the distance
products of `metrics.Distances`, the excluder's masks, the scoring of `score_queries`: ranks,
AP, INP, and the rest: the query keys, the identity matches, the result), and writing the
JSON. Every repeat is a new process, both AP rules alternated; a figure is the median with
min-max. The synthetic files are those `bench_evaluate.py --process` times. The interpreter's
own start, before this file runs, is outside the phases (`bench_evaluate.py --process` times the
whole process).
"""
import json
import os
import sys
import time

START = time.perf_counter(), time.process_time()  # before the project's imports
BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
sys.path.insert(0, os.path.dirname(BENCH))


class Clock:
    """Wall and CPU seconds per phase: `lap` closes the phase since the last lap, `around`
    wraps a function so that its calls add to a phase of their own."""

    def __init__(self):
        self.last = START
        self.phases = {}

    def lap(self, name):
        now = time.perf_counter(), time.process_time()
        self.add(name, now[0] - self.last[0], now[1] - self.last[1])
        self.last = now

    def add(self, name, wall, cpu):
        total = self.phases.setdefault(name, [0.0, 0.0])
        total[0] += wall
        total[1] += cpu

    def around(self, name, function):
        def timed(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - wall, time.process_time() - cpu)
        return timed


def child(folder, excluder_name, ap_rule):
    """One evaluate.py run, phase by phase; prints {phase: [wall, cpu]} as JSON."""
    clock = Clock()
    import excluders
    from tripletreid import evaluation, files, metrics
    from tripletreid.csv_dataset import read_csv
    clock.lap('import')
    query = read_csv(os.path.join(folder, 'query.csv'))
    gallery = read_csv(os.path.join(folder, 'gallery.csv'))
    clock.lap('read CSVs')
    excluder = excluders.create(excluder_name, gallery)
    clock.lap('build excluder')
    query_embs, gallery_embs = evaluation.load_query_and_gallery(
        os.path.join(folder, 'query.h5'), os.path.join(folder, 'gallery.h5'), query, gallery)
    clock.lap('read HDF5')
    metrics.Distances.__call__ = clock.around('distances', metrics.Distances.__call__)
    metrics.score_queries = clock.around('score', metrics.score_queries)
    type(excluder).__call__ = clock.around('masks', type(excluder).__call__)
    result = evaluation.evaluate_embeddings(query_embs, gallery_embs, query, gallery, excluder,
                                            'euclidean', ap_rule=ap_rule)
    clock.lap('evaluate_embeddings')
    files.write_json(os.path.join(folder, f'phases_{ap_rule}.json'), result)
    clock.lap('write JSON')
    whole = clock.phases.pop('evaluate_embeddings')
    inside = [clock.phases[name] for name in ('distances', 'masks', 'score')]
    clock.phases['evaluate_embeddings, the rest'] = [
        whole[i] - sum(part[i] for part in inside) for i in (0, 1)]
    print(json.dumps(clock.phases))


def main():
    import argparse
    import subprocess
    import tempfile

    import benchlib
    from synthetic_problems import LAYOUTS, write_problem
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--dataset', choices=sorted(LAYOUTS), default='market1501')
    parser.add_argument('--dim', type=int, default=128)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--repeats', type=int, default=5, help='Runs per AP rule.')
    benchlib.add_output_flags(parser, 'evaluate_phases')
    options = parser.parse_args()
    layout = LAYOUTS[options.dataset].scaled(0.1 if options.quick else 1)
    runs = {'sklearn': [], 'market': []}
    with tempfile.TemporaryDirectory(prefix='bench_phases_') as folder:
        write_problem(layout, options.dim, options.seed, folder)
        for _ in range(1 if options.quick else options.repeats):
            for rule, phases in runs.items():
                done = subprocess.run([sys.executable, os.path.abspath(__file__), '--child',
                                       folder, layout.excluder, rule],
                                      capture_output=True, text=True, check=True)
                phases.append(json.loads(done.stdout.splitlines()[-1]))
    figures = {rule: {name: {kind: benchlib.summary([run[name][i] for run in phases])
                             for i, kind in enumerate(('wall_seconds', 'cpu_seconds'))}
                      for name in phases[0]} for rule, phases in runs.items()}
    for rule, phases in runs.items():
        figures[rule]['total'] = {kind: benchlib.summary([sum(p[i] for p in run.values())
                                                          for run in phases])
                                  for i, kind in enumerate(('wall_seconds', 'cpu_seconds'))}
    benchlib.write_results({'dataset': options.dataset, 'dim': options.dim,
                            'layout': vars(layout), 'load_average_after': os.getloadavg(),
                            'ap_rules': figures}, options, 'evaluate_phases')


if __name__ == '__main__':
    if sys.argv[1:2] == ['--child']:
        child(*sys.argv[2:5])
    else:
        main()
