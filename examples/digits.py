#!/usr/bin/env python3
"""Sanity check: a 2-D embedding of handwritten digits trained with the batch-hard triplet loss.

The MNIST picture of metric-learning write-ups, on scikit-learn's bundled digits (1,797 8x8
images, 10 classes; nothing is downloaded). A small MLP is trained with this project's own
PK batches, training step, loss and optimiser, so a clean picture means they work together.
The test split is evaluated as evaluate.py would, every test image querying the others
(`diagonal` excluder), before and after training; the trained test embedding is drawn.

    python examples/digits.py --output digits.png
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras
import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from excluders.diagonal import DiagonalExcluder
from tripletreid import cli, evaluation, files
from tripletreid.csv_dataset import Dataset
from tripletreid.metrics import METRICS
from tripletreid.pipeline import PKSampler
from tripletreid.schedules import make_optimizer, make_schedule
from tripletreid.training import make_train_step

NUM_CLASSES = 10
TEST_FRACTION = 1 / 3


def build_parser():
    parser = cli.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add('--output', required=True, help='PNG file for the scatter plot of the test embedding.')
    add('--overwrite', action='store_true', help='Replace --output if it exists.')
    add('--steps', default=2000, type=cli.positive_int, dest='train_iterations', metavar='N',
        help='Training steps (default: %(default)s).')
    add('--seed', default=0, type=cli.nonnegative_int,
        help='Seed of the split, the weights and every batch (default: %(default)s).')
    add('--margin', default='soft', type=cli.margin_value,
        help='`soft` (softplus), `none`, or a float margin for the hinge (default: soft).')
    add('--metric', default='euclidean', choices=METRICS)
    add('--batch_p', default=10, type=cli.positive_int,
        help=f'Classes per batch, at most {NUM_CLASSES} (default: %(default)s).')
    add('--batch_k', default=8, type=cli.positive_int,
        help='Images per class (default: %(default)s).')
    add('--learning_rate', default=1e-3, type=cli.positive_float,
        help='Adam\'s rate, decayed to 0.001x over the second half (default: %(default)s).')
    return parser


def load_split(seed):
    """Pixels in [0, 1] and labels of a stratified train/test split: (x, y) twice."""
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data.astype(np.float32) / 16, digits.target, test_size=TEST_FRACTION,
        stratify=digits.target, random_state=seed)
    return (x_train, y_train), (x_test, y_test)


def build_model():
    """64 pixels -> 2-D embedding. Linear at the end: the loss alone shapes the plane."""
    return keras.Sequential([keras.Input((64,)), keras.layers.Dense(128, activation='relu'),
                             keras.layers.Dense(128, activation='relu'), keras.layers.Dense(2)])


def fit(model, sampler, x, args):
    """Train with the PK batches, step and Adam of train.py; return the final mean loss."""
    images = tf.constant(x)
    optimizer = make_optimizer(make_schedule(args.learning_rate, args.train_iterations,
                                             decay_start_iteration=args.train_iterations // 2))
    step = make_train_step(model, optimizer, 'batch_hard', args.margin, args.metric, args.seed)

    @tf.function
    def batch(number):
        files, labels = sampler.batch(number)
        return tf.gather(images, files), labels, files

    for number in range(args.train_iterations):
        losses = step(*batch(tf.constant(number, tf.int64)))['losses']
    return float(tf.reduce_mean(losses))


def retrieval(embeddings, labels, metric):
    """evaluate.py's result, each test image a query against all the others."""
    dataset = Dataset('digits test split', labels.astype(str),
                      np.arange(len(labels)).astype(str))
    return evaluation.evaluate_embeddings(embeddings, embeddings, dataset, dataset,
                                          DiagonalExcluder(dataset), metric)


def describe(result):
    """mAP and top-1, which is leave-one-out 1-NN accuracy here."""
    return f'mAP {result["mAP"]:.1%}, 1-NN accuracy {result["CMC"][0]:.1%}'


def save_scatter(embeddings, labels, title, path):
    """The embedding as points coloured by digit, each cluster named just beyond its edge
    on the side away from the middle of the plot, so that the name hides no points."""
    from matplotlib import patheffects
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 6.5), dpi=100, layout='constrained')
    FigureCanvasAgg(figure)  # the Agg backend, without touching pyplot's global state
    axes = figure.add_subplot()
    middle = np.median(embeddings, axis=0)
    for digit in range(NUM_CLASSES):
        points = embeddings[labels == digit]
        axes.scatter(*points.T, s=12, alpha=0.6, color=f'C{digit}', label=str(digit))
        centre = np.median(points, axis=0)
        outward = (centre - middle) / (np.linalg.norm(centre - middle) + 1e-12)
        edge = centre + outward * np.percentile((points - centre) @ outward, 95)
        axes.annotate(str(digit), edge, xytext=16 * outward, textcoords='offset points',
                      fontsize=15, weight='bold', ha='center', va='center', color=f'C{digit}',
                      path_effects=[patheffects.withStroke(linewidth=3, foreground='white')])
    axes.set(title=title, xlabel='embedding dimension 1', ylabel='embedding dimension 2',
             aspect='equal')
    axes.margins(0.08)
    axes.legend(title='digit', loc='center left', bbox_to_anchor=(1.01, 0.5),
                markerscale=2.5, frameon=False)
    with files.atomic_path(path) as tmp:
        figure.savefig(tmp, format='png')


def main(argv=None):
    args = build_parser().parse_args(argv)
    files.check_output(args.output, args.overwrite)
    (x_train, y_train), (x_test, y_test) = load_split(args.seed)
    sampler = PKSampler(y_train, args.batch_p, args.batch_k, args.seed)  # checks --batch_p
    keras.utils.set_random_seed(args.seed)
    model = build_model()
    before = retrieval(model(x_test).numpy(), y_test, args.metric)
    print(f'untrained: {describe(before)}  ({len(y_test)} test images, chance 10%)')
    began = time.perf_counter()
    loss = fit(model, sampler, x_train, args)
    embeddings = model(x_test).numpy()
    after = retrieval(embeddings, y_test, args.metric)
    print(f'  trained: {describe(after)}  ({args.train_iterations} steps in '
          f'{time.perf_counter() - began:.0f} s, final loss {loss:.3f})')
    save_scatter(embeddings, y_test, f'{len(y_test)} test digits after {args.train_iterations} '
                 f'steps of batch-hard training\n{describe(after)} (untrained: '
                 f'{describe(before)})', args.output)
    print(f'Scatter plot of the test embedding: {args.output}')
    return {'untrained': before, 'trained': after}


if __name__ == '__main__':
    cli.run(main)
