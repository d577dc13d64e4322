#!/usr/bin/env python3
"""An embedding trained with plain `model.fit` and this project's triplet losses.

For Keras users (who had tensorflow-addons' triplet losses): scikit-learn's bundled handwritten
digits (nothing is downloaded), PK batches from a tf.data.Dataset (`tripletreid.pk_batches`), a
`keras.losses.Loss` of `tripletreid.keras_losses` in `model.compile`, and the retrieval figures
of the test split (every test image querying the others) from the `RetrievalEvaluation`
callback, which scores as evaluate.py does, before training and after every epoch.

    python examples/keras_fit.py
    python examples/keras_fit.py --loss batch_semi_hard --margin 1.0 --metric sqeuclidean
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras
import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from tripletreid import cli
from tripletreid.keras_callbacks import RetrievalEvaluation
from tripletreid.keras_losses import TripletLoss
from tripletreid.losses import LOSSES
from tripletreid.metrics import METRICS
from tripletreid.pk_batches import pk_batches


def build_parser():
    parser = cli.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add('--loss', default='batch_hard', choices=sorted(LOSSES),
        help='The triplet loss, as train.py\'s --loss (default: %(default)s).')
    add('--margin', default='soft', type=cli.margin_value,
        help='`soft` (softplus), `none`, or a float margin for the hinge (default: soft).')
    add('--metric', default='euclidean', choices=METRICS)
    add('--epochs', default=10, type=cli.positive_int, help='Epochs (default: %(default)s).')
    add('--steps_per_epoch', default=100, type=cli.positive_int, metavar='N',
        help='PK batches per epoch (default: %(default)s).')
    add('--batch_p', default=10, type=cli.positive_int,
        help='Digits per batch, at most 10 (default: %(default)s).')
    add('--batch_k', default=8, type=cli.positive_int,
        help='Images per digit (default: %(default)s).')
    add('--learning_rate', default=1e-3, type=cli.positive_float,
        help='Adam\'s learning rate (default: %(default)s).')
    add('--seed', default=0, type=cli.nonnegative_int,
        help='Seed of the split, the weights and the batches (default: %(default)s).')
    add('--log_dir', metavar='DIR', help='Write TensorBoard logs (loss, mAP, top-k) here.')
    return parser


def load_split(seed):
    """Pixels in [0, 1] and digits of a stratified 2:1 train/test split: (x, y) twice."""
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data.astype(np.float32) / 16, digits.target, test_size=1 / 3,
        stratify=digits.target, random_state=seed)
    return (x_train, y_train), (x_test, y_test)


def compiled_model(args):
    """64 pixels -> a 16-D embedding, compiled with the chosen triplet loss."""
    keras.utils.set_random_seed(args.seed)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(128, activation='relu'),
                              keras.layers.Dense(16)])
    seed = {'seed': args.seed} if args.loss == 'batch_sample' else {}
    model.compile(keras.optimizers.Adam(args.learning_rate),
                  loss=TripletLoss(args.loss, args.margin, args.metric, **seed))
    return model


def training_batches(x, y, args):
    """Endless PK batches of the training split, as a Keras user's tf.data pipeline."""
    return pk_batches(tf.data.Dataset.from_tensor_slices((x, y)), args.batch_p, args.batch_k,
                      args.seed)


def describe(result):
    """mAP and rank-1 (here leave-one-out 1-NN accuracy)."""
    return f'mAP {result["mAP"]:.1%}, rank-1 {result["CMC"][0]:.1%}'


def main(argv=None):
    args = build_parser().parse_args(argv)
    (x_train, y_train), (x_test, y_test) = load_split(args.seed)
    batches = training_batches(x_train, y_train, args)  # checks --batch_p
    model = compiled_model(args)
    retrieval = RetrievalEvaluation((x_test, y_test), metric=args.metric, log_dir=args.log_dir)
    before = retrieval.evaluate(model)
    print(f'untrained: {describe(before)}  ({len(y_test)} test digits, chance 10%)')
    # TensorBoard first: it writes the loss, the callback its own figures, once each.
    callbacks = ([keras.callbacks.TensorBoard(args.log_dir)] if args.log_dir else []) + [retrieval]
    history = model.fit(batches, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                        callbacks=callbacks, shuffle=False, verbose=0)
    after = retrieval.evaluate(model)
    print(f'  trained: {describe(after)}  ({args.epochs} epochs of {args.steps_per_epoch} '
          f'batches, final loss {history.history["loss"][-1]:.3f})')
    return {'untrained': before, 'trained': after, 'history': history.history}


if __name__ == '__main__':
    cli.run(main)
