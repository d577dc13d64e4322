#!/usr/bin/env python3
"""Does --mixed_precision mixed_bfloat16 train as well as float32? lunet on the CUHK03 crops of
../shared/data, the official recipe of `studies/cuhk03.py` (64x32, fc1024 head, 128-D, P=18
K=4), the same steps in both precisions for each seed, evaluated cross-camera on `val/`.

    python studies/precision.py --work /tmp/precision --output bench/results/studies

Runs go one after the other, the precisions alternating within a seed (float32 s0, bfloat16
s0, float32 s1, ...), so that a change in the load of a shared machine hits both alike. Each
run writes `precision_<precision>_s<seed>.json` to --output: mAP, rank-1, rank-5 and mINP on
the raw and the unit-length embeddings (flip + centre crop views, as `studies/cuhk03.py`), the
median seconds of a training step from its TensorBoard events (the first steps, which trace,
left out) and the load average. A run whose JSON exists is read, not trained again.
`precision_summary.json` then holds the means and the per-seed figures of both precisions,
the bfloat16 - float32 differences of the means, and the float32 / bfloat16 step-time ratio
(the speed-up) of each seed and its median.

Under mixed_bfloat16 the network computes in bfloat16, but train.py casts its features to
float32 before the distances, the mining and the loss (`training.make_train_step`); every run
is evaluated in float32, as embed.py runs a model whatever its training precision.

Measured 2026-12-02 on 2 shared cores (load 3-17; bench/results/studies): mean mAP 16.11%
(float32) and 15.85% (bfloat16) on the raw embeddings, 17.48% and 17.45% on the unit-length
ones; rank-1 13.89% and 13.82%; float32's mAP 15.8-16.4 over the seeds. Step time ratio
1.30-1.63 (median 1.43) under that load; 20 minutes a run.
"""
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras

from studies.cuhk03 import evaluate_val, study_parser, train_net
from tripletreid.training_logs import read_scalars

PRECISIONS = {'float32': 'none', 'bfloat16': 'mixed_bfloat16'}  # name: --mixed_precision
METRICS = ('mAP', 'rank-1', 'rank-5', 'mINP')
TRACING_STEPS = 10  # left out of the step time: the first steps trace the tf.function


def scores(result):
    return {'mAP': result['mAP'], 'rank-1': result['CMC'][0], 'rank-5': result['CMC'][4],
            'mINP': result['mINP']}


def one_run(data, work, precision, seed, iterations):
    """Train and evaluate one run in a new folder of `work`; its JSON-ready result."""
    folder = os.path.join(work, f'{precision}_s{seed}')
    os.makedirs(folder)
    load_before = os.getloadavg()
    began = time.time()
    try:
        experiment = train_net(data, folder, iterations, seed=seed,
                                 extra_flags=['--mixed_precision', PRECISIONS[precision]])
    finally:  # training sets the policy for the whole process: evaluate (and go on) in float32
        keras.mixed_precision.set_global_policy('float32')
    train_seconds = time.time() - began
    steps = read_scalars(experiment, 'timings/seconds_per_iteration')
    seconds = [s for step, s in steps['timings/seconds_per_iteration'].items()
               if step > TRACING_STEPS]
    result = {'precision': precision, 'mixed_precision_flag': PRECISIONS[precision],
              'seed': seed, 'train_iterations': iterations, 'experiment': experiment,
              'train_seconds': train_seconds, 'step_seconds_median': statistics.median(seconds),
              'load_average_1_5_15_before': load_before,
              'load_average_1_5_15_after': os.getloadavg()}
    for name, normalize in (('raw', False), ('normalized', True)):
        result[name] = scores(evaluate_val(data, folder, experiment,
                                           f'checkpoint-{iterations}', normalize=normalize))
    return result


def summary(runs, seeds):
    """Means and per-seed scores of each precision, their differences, and the speed-up."""
    report = {'seeds': seeds, 'per_seed': {}, 'mean': {}, 'bfloat16_minus_float32': {}}
    for precision in PRECISIONS:
        per_seed = [runs[precision, seed] for seed in seeds]
        report['per_seed'][precision] = {
            kind: {metric: [run[kind][metric] for run in per_seed] for metric in METRICS}
            for kind in ('raw', 'normalized')}
        report['per_seed'][precision]['step_seconds_median'] = [
            run['step_seconds_median'] for run in per_seed]
        report['mean'][precision] = {
            kind: {metric: statistics.mean(values) for metric, values in lists.items()}
            for kind, lists in report['per_seed'][precision].items()
            if kind != 'step_seconds_median'}
    report['bfloat16_minus_float32'] = {
        kind: {metric: report['mean']['bfloat16'][kind][metric]
               - report['mean']['float32'][kind][metric] for metric in METRICS}
        for kind in ('raw', 'normalized')}
    speedups = [runs['float32', seed]['step_seconds_median']
                / runs['bfloat16', seed]['step_seconds_median'] for seed in seeds]
    report['speedup_float32_over_bfloat16_step'] = {'per_seed': speedups,
                                                     'median': statistics.median(speedups)}
    return report


def main():
    parser = study_parser(__doc__)
    parser.add_argument('--train_iterations', type=int, default=1000)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    options = parser.parse_args()
    os.makedirs(options.output, exist_ok=True)
    runs = {}
    for seed in options.seeds:
        for precision in PRECISIONS:
            path = os.path.join(options.output, f'precision_{precision}_s{seed}.json')
            if not os.path.exists(path):
                result = one_run(options.data, options.work, precision, seed,
                                 options.train_iterations)
                with open(path, 'w') as f:
                    json.dump(result, f, indent=2)
            with open(path) as f:
                runs[precision, seed] = json.load(f)
    report = summary(runs, options.seeds)
    report['settings'] = vars(options)
    with open(os.path.join(options.output, 'precision_summary.json'), 'w') as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))


if __name__ == '__main__':
    main()
