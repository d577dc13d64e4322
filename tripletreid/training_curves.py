"""Training curves as one PNG, for those who look at a file on a remote machine rather than at
TensorBoard: the loss, the batch precision, the fraction of active triplets and the learning
rate, by step.

They come from the TensorBoard event files training writes every step (train.log's line lacks
the top-1, the active count and the learning rate), read with TensorBoard's own reader. Training
draws them when it stops; `curves.py` draws them for a running experiment.
"""
import logging
import os

import numpy as np

from tripletreid import experiment
from tripletreid.curriculum import Curriculum
from tripletreid.errors import InputError
from tripletreid.files import atomic_path
from tripletreid.training_logs import IDENTITY_LOSSES, read_scalars

FILENAME = 'training_curves.png'
SMOOTHED_POINTS = 50  # a moving average over len/50 steps is drawn over noisy curves


def read_curves(experiment_root):
    """{name: (steps, values)} of an experiment's logged scalars, in step order: `loss` (the
    batch's mean triplet loss), the identity losses (`IDENTITY_LOSSES`) that trained, `top1` and
    `prec_at_k` (batch precision, as fractions), `active` (the fraction of the batch's anchors
    whose triplet loss is above 1e-5) and `learning_rate`. A step logged twice (a resumed run
    repeats the steps after its last checkpoint) has its last value."""
    trained = experiment.load_args_json(os.path.join(experiment_root, 'args.json'))
    batch_k = trained['batch_k']
    tags = {'loss': 'loss', 'top1': 'batch_top1', 'prec_at_k': f'batch_prec_at_{batch_k - 1}',
            'active': 'active_count', 'learning_rate': 'learning_rate'}
    tags.update({name: name for name in IDENTITY_LOSSES
                 if trained.get(f'{name}_weight')})
    # TensorBoard's reader logs at INFO where it stops in each event file, a line in train.log.
    logging.getLogger('tensorboard').setLevel(logging.WARNING)
    try:
        scalars = read_scalars(experiment_root, *tags.values())
    except KeyError:
        raise InputError(f'{experiment_root}: no training step logged yet (no TensorBoard '
                         'scalars in it)') from None
    curves = {}
    for name, tag in tags.items():
        steps = np.array(sorted(scalars[tag]), dtype=np.int64)
        curves[name] = steps, np.array([scalars[tag][step] for step in steps])
    curriculum = Curriculum(trained['batch_p'], batch_k, trained.get('curriculum_steps', 0),
                            trained.get('curriculum_start_p'), trained.get('curriculum_start_k'))
    steps, counts = curves['active']
    batch_sizes = [np.prod(curriculum.sizes(step - 1)) for step in steps]
    curves['active'] = steps, counts / np.array(batch_sizes, dtype=np.float64)
    return curves


def draw(curves, title):
    """A matplotlib Figure of the `read_curves` result: four panels (loss, batch precision in
    %, active triplets in %, learning rate on a log scale) over a shared step axis."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 6), dpi=100)  # fixed margins: a constrained layout costs 2x
    figure.subplots_adjust(left=0.08, right=0.98, top=0.9, bottom=0.08, hspace=0.25, wspace=0.2)
    FigureCanvasAgg(figure)  # the Agg backend, without touching pyplot's global state
    loss, precision, active, rate = figure.subplots(2, 2, sharex=True).flat
    figure.suptitle(title)
    _plot(loss, *curves['loss'], 'triplet loss (batch mean)')
    for name in IDENTITY_LOSSES:
        if name in curves:
            _plot(loss, *curves[name], name.replace('_', ' '))
    _plot(precision, curves['top1'][0], 100 * curves['top1'][1], 'top-1')
    _plot(precision, curves['prec_at_k'][0], 100 * curves['prec_at_k'][1],
          'precision at K-1')
    _plot(active, curves['active'][0], 100 * curves['active'][1], None)
    rate.plot(*curves['learning_rate'], color='C0')
    rate.set_yscale('log')
    for axes, name in ((loss, 'loss'), (precision, 'batch precision (%)'),
                       (active, 'active triplets (% of anchors)'), (rate, 'learning rate')):
        axes.set_title(name)
        axes.grid(True, alpha=0.3)
    precision.set_ylim(0, 100.5)
    active.set_ylim(0, 100.5)
    for axes in (loss, precision):
        if axes.get_legend_handles_labels()[0]:
            axes.legend(loc='best', fontsize='small')
    for axes in (active, rate):
        axes.set_xlabel('step')
    return figure


def _plot(axes, steps, values, label):
    """The values by step, with their moving average over a fiftieth of the run on top when
    there are enough steps for one (the raw curve then fades)."""
    window = len(steps) // SMOOTHED_POINTS
    line, = axes.plot(steps, values, linewidth=0.8, alpha=0.35 if window > 1 else 1.0,
                      label=None if window > 1 else label)
    if window > 1:
        smoothed = np.convolve(values, np.ones(window) / window, mode='valid')
        axes.plot(steps[window - 1:], smoothed, color=line.get_color(), linewidth=1.6,
                  label=label)


def save(experiment_root, path=None):
    """Draw the experiment's curves into the PNG `path` (default: training_curves.png in the
    experiment root); return the path."""
    path = path or os.path.join(experiment_root, FILENAME)
    curves = read_curves(experiment_root)
    name = os.path.basename(os.path.abspath(experiment_root))
    figure = draw(curves, f'{name}: {curves["loss"][0][-1]} steps')
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format='png')
    return path
