#!/usr/bin/env python3
"""Accuracy per CPU-minute: which backbone should a user without a GPU train from scratch?
Each contender (a backbone at an input size and precision) trains on the CUHK03 crops of
../shared/data for the same wall-clock budget with one recipe of `studies/cuhk03.py` (fc1024
head, 128-D, soft margin, P=18 K=4, Adam 1e-3, decay from 2/3 of the run; by default with the
batch-all triplet loss, under which OSNet starts from scratch where the batch-hard one
collapses), and is evaluated cross-camera on `val/` (flip + centre crop views).

    python studies/cpu_budget.py --work /tmp/budget --output bench/results/studies
    python studies/cpu_budget.py --recipe official --contenders lunet:64x32:mixed_bfloat16 ...

A budget is a number of steps, fixed before the run: a short calibration run of each contender
(--calibration_steps) measures its step (wall-clock, end to end) and what the run costs besides
its steps (start-up, the image check, tracing, the final checkpoint), and the contender then
trains for as many steps as fill --minutes. The steps being fixed, the learning-rate schedule
is that of a run of that length, and a busier machine lengthens a run without changing its
result: each JSON gives the run's measured wall-clock and CPU seconds beside the budget, and
the load.

Writes `budget_<recipe>_<contender>.json` per contender (one whose JSON exists is read, not
trained again) and `budget_<recipe>_summary.json`: each contender's scores and its mAP minus
the first contender's.
"""
import argparse
import json
import math
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras

from nets import NETS
from studies.cuhk03 import RECIPES, evaluate_val, study_parser, train_net
from tripletreid.experiment import MIXED_PRECISION

TRACING_STEPS = 10  # left out of the step time: the first steps trace the tf.function
# Each at the precision it trains fastest in, where that precision is proven (bfloat16 for
# lunet, studies/precision.py; OSNet's depthwise convolutions are slower in it at x0_25).
DEFAULT_CONTENDERS = ('osnet_x0_25:128x64', 'lunet:64x32:mixed_bfloat16', 'osnet_x0_5:128x64')


def contender(text):
    """'name:HxW[:precision]' to (name, height, width, precision), precision as train.py's
    --mixed_precision (default none)."""
    match = re.fullmatch(r'(\w+):(\d+)x(\d+)(?::(\w+))?', text)
    if not match or match[1] not in NETS or (match[4] or 'none') not in MIXED_PRECISION:
        raise argparse.ArgumentTypeError(
            f'{text!r}: expected BACKBONE:HEIGHTxWIDTH[:PRECISION] with a backbone of '
            f'{", ".join(NETS)} and a precision of {", ".join(MIXED_PRECISION)}')
    return match[1], int(match[2]), int(match[3]), match[4] or 'none'


def label(spec):
    name, height, width, precision = spec
    return f'{name}_{height}x{width}' + ('' if precision == 'none' else '_' + precision)


def timed_training(data, folder, spec, iterations, seed, recipe):
    """Train `spec` for `iterations` into `folder`: the experiment, the wall-clock and CPU
    seconds of the whole train.py run, and the wall-clock seconds a step took after tracing,
    from one step's end to the next (what a step costs with its input and logging)."""
    name, height, width, precision = spec
    os.makedirs(folder)
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        experiment = train_net(data, folder, iterations, size=(height, width), seed=seed,
                               recipe=recipe, model_name=name,
                               extra_flags=['--mixed_precision', precision])
    finally:  # training sets the policy for the whole process: evaluate (and go on) in float32
        keras.mixed_precision.set_global_policy('float32')
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return experiment, wall, cpu, step_seconds(experiment)


def step_seconds(experiment):
    """Mean wall-clock seconds per step after the tracing steps, from the times TensorBoard
    stamped on each step's summaries."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(experiment, size_guidance={'tensors': 0})
    events.Reload()
    stamps = {event.step: event.wall_time for event in events.Tensors('loss')}
    last = max(stamps)
    return (stamps[last] - stamps[TRACING_STEPS]) / (last - TRACING_STEPS)


def budget_steps(overhead_seconds, step_seconds, budget_seconds):
    """The steps that, with the run's fixed costs, fill the budget."""
    return math.floor((budget_seconds - overhead_seconds) / step_seconds)


def one_contender(options, spec):
    """Calibrate, train for the budget and evaluate one contender; its JSON-ready result."""
    folder = os.path.join(options.work, f'{options.recipe}_{label(spec)}')
    load_before = os.getloadavg()
    _, wall, _, step = timed_training(options.data, os.path.join(folder, 'calibration'), spec,
                                      options.calibration_steps, options.seed, options.recipe)
    overhead = wall - options.calibration_steps * step
    iterations = budget_steps(overhead, step, options.minutes * 60)
    experiment, wall, cpu, run_step = timed_training(
        options.data, os.path.join(folder, 'budget'), spec, iterations, options.seed,
        options.recipe)
    result = {'backbone': spec[0], 'input_size': list(spec[1:3]),
              'mixed_precision': spec[3], 'recipe': options.recipe, 'seed': options.seed,
              'budget_seconds': options.minutes * 60,
              'calibration': {'steps': options.calibration_steps, 'step_seconds': step,
                              'overhead_seconds': overhead},
              'train_iterations': iterations, 'experiment': experiment,
              'train_wall_seconds': wall, 'train_cpu_seconds': cpu,
              'step_seconds': run_step, 'load_average_1_5_15_before': load_before,
              'load_average_1_5_15_after': os.getloadavg()}
    for kind, normalize in (('raw', False), ('normalized', True)):
        scores = evaluate_val(options.data, os.path.join(folder, 'budget'), experiment,
                              f'checkpoint-{iterations}', normalize=normalize)
        result[kind] = {'mAP': scores['mAP'], 'rank-1': scores['CMC'][0],
                        'rank-5': scores['CMC'][4], 'mINP': scores['mINP']}
    return result


def summary(results):
    """Each contender's scores, and its mAP minus the first contender's (in points)."""
    first = next(iter(results.values()))
    return {name: {'train_iterations': run['train_iterations'],
                   'train_wall_seconds': run['train_wall_seconds'],
                   **{kind: run[kind] for kind in ('raw', 'normalized')},
                   'mAP_points_over_first': {
                       kind: 100 * (run[kind]['mAP'] - first[kind]['mAP'])
                       for kind in ('raw', 'normalized')}}
            for name, run in results.items()}


def main():
    parser = study_parser(__doc__)
    parser.add_argument('--contenders', nargs='+', type=contender,
                        default=[contender(text) for text in DEFAULT_CONTENDERS],
                        help='BACKBONE:HEIGHTxWIDTH[:PRECISION] each (precision as '
                             "train.py's --mixed_precision, default none); the first is the "
                             f'reference. Default: {" ".join(DEFAULT_CONTENDERS)}.')
    parser.add_argument('--minutes', type=float, default=20.0, help='The budget of each.')
    parser.add_argument('--calibration_steps', type=int, default=50)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--recipe', choices=sorted(RECIPES), default='batch_all',
                        help="studies/cuhk03.py's, for every contender (default: %(default)s: "
                             'the official one with the batch-all triplet loss; OSNet '
                             'collapses under the batch-hard one from scratch).')
    options = parser.parse_args()
    if options.calibration_steps <= TRACING_STEPS:
        parser.error(f'--calibration_steps must be above the {TRACING_STEPS} tracing steps')
    os.makedirs(options.output, exist_ok=True)
    results = {}
    for spec in options.contenders:
        path = os.path.join(options.output, f'budget_{options.recipe}_{label(spec)}.json')
        if not os.path.exists(path):
            result = one_contender(options, spec)
            with open(path, 'w') as f:
                json.dump(result, f, indent=2)
        with open(path) as f:
            results[label(spec)] = json.load(f)
    report = {'contenders': summary(results),
              'settings': {**vars(options), 'contenders': [label(c) for c in options.contenders]}}
    with open(os.path.join(options.output, f'budget_{options.recipe}_summary.json'), 'w') as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))


if __name__ == '__main__':
    main()
