#!/usr/bin/env python3
"""Pictures of a healthy and of a collapsed training: loss and embedding spread by step.

    python studies/health_curves.py --output docs

Trains `lunet` (fc1024 head, 64x32, P=8, K=4, soft margin) twice on the real CUHK03 crops of
../shared/data (the first 100 identities of the train split), the runs identical but for the
learning rate: 1e-3 learns, 0.1 collapses. Then
draws `training_health_healthy.png` and `training_health_collapsed.png` from the TensorBoard
scalars of the runs: the loss against its collapse value, the spread of the embeddings against
the collapse threshold, and the steps flagged as collapsed. About a minute per run on 2 cores.
"""
import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from studies.cuhk03 import DEFAULT_DATA, write_csv
from tripletreid import health, training
from tripletreid.training_logs import read_scalars

RUNS = {'healthy': 1e-3, 'collapsed': 0.1}  # name: learning rate
TAGS = ('loss', 'health/distance_spread', 'health/collapsed')


def identities_csv(data, path, identities):
    """The CSV of the first `identities` people of the CUHK03 train split."""
    with open(write_csv(os.path.join(data, 'train'), path)) as f:
        rows = [row for row in f if int(row.split(',')[0]) < identities]
    with open(path, 'w') as f:
        f.writelines(rows)
    return path


def train_run(train_set, data, root, learning_rate, steps):
    """Train one run into `root`; return its TensorBoard scalars {tag: {step: value}}."""
    training.run_flags(['--experiment_root', root, '--train_set', train_set,
                        '--image_root', os.path.join(data, 'train'), '--model_name', 'lunet',
                        '--head_name', 'fc1024', '--embedding_dim', '32', '--batch_p', '8',
                        '--batch_k', '4', '--net_input_height', '64', '--net_input_width', '32',
                        '--learning_rate', str(learning_rate), '--train_iterations', str(steps),
                        '--decay_start_iteration', '-1', '--checkpoint_frequency', '0',
                        '--loading_threads', '2', '--seed', '0'])
    return read_scalars(root, *TAGS)


def plot(scalars, title, path):
    """Loss (log scale) and spread by step into the PNG `path`; flagged steps shaded red."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter

    figure = Figure(figsize=(6, 4.2), dpi=80)
    FigureCanvasAgg(figure)  # the Agg backend, without touching pyplot's global state
    loss_axes, spread_axes = figure.subplots(2, 1, sharex=True)
    flagged = scalars['health/collapsed']
    for axes, tag, limit, label in (
            (loss_axes, 'loss', health.collapse_loss('soft'), 'collapse value softplus(0)'),
            (spread_axes, 'health/distance_spread', health.HealthMonitor('soft').min_spread,
             'collapse threshold')):
        steps = sorted(scalars[tag])
        axes.plot(steps, [scalars[tag][s] for s in steps], linewidth=0.8, color='tab:blue')
        axes.axhline(limit, color='black', linestyle='--', linewidth=0.8, label=label)
        if any(flagged.values()):
            axes.fill_between(steps, 0, 1, where=[flagged[s] > 0 for s in steps],
                              color='tab:red', alpha=0.15, linewidth=0,
                              transform=axes.get_xaxis_transform(), label='flagged as collapsed')
        axes.grid(True, alpha=0.3)
        axes.legend(loc='upper right', fontsize=8)
    loss_axes.set(yscale='log', ylabel='mean loss', title=title)
    loss_axes.yaxis.set_major_locator(FixedLocator([0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100]))
    loss_axes.yaxis.set_major_formatter(FormatStrFormatter('%g'))
    loss_axes.yaxis.set_minor_formatter(NullFormatter())
    spread_axes.set(ylabel='embedding spread', xlabel='step', ylim=(0, None))
    figure.tight_layout()
    figure.savefig(path, format='png')


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data', default=DEFAULT_DATA, help='The cuhk03-detected folder.')
    parser.add_argument('--output', default='docs', help='Folder for the two pictures.')
    parser.add_argument('--steps', type=int, default=400)
    parser.add_argument('--identities', type=int, default=100)
    options = parser.parse_args()
    os.makedirs(options.output, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        train_set = identities_csv(options.data, os.path.join(work, 'train.csv'),
                                   options.identities)
        for name, learning_rate in RUNS.items():
            scalars = train_run(train_set, options.data, os.path.join(work, name),
                                learning_rate, options.steps)
            plot(scalars, f'{name}: lunet on CUHK03, learning rate {learning_rate:g}',
                 os.path.join(options.output, f'training_health_{name}.png'))


if __name__ == '__main__':
    main()
