#!/usr/bin/env python3
"""Draw an experiment's training curves into a PNG, also while it is training.

Four panels by step: the triplet loss (and the identity losses when trained), the batch
precision (top-1 and at K-1), the fraction of active triplets and the learning rate, read from
the TensorBoard event files in the experiment root (no TensorBoard server needed). Training
draws the same picture, training_curves.png in the experiment root, whenever it stops.
"""
import os
import sys

from tripletreid import cli, files


def build_parser():
    parser = cli.ArgumentParser(description=__doc__)
    add = parser.add_argument
    add('--experiment_root', required=True, type=cli.readable_directory,
        help='The experiment, finished or still training.')
    add('--output', default=None,
        help='The PNG file to write (default: training_curves.png in the experiment root).')
    add('--overwrite', action='store_true', help='Replace an existing output file.')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    cli.quiet_tensorflow()
    from tripletreid import training_curves
    output = args.output or os.path.join(args.experiment_root, training_curves.FILENAME)
    files.check_output(output, args.overwrite)
    training_curves.save(args.experiment_root, output)
    print(f'Wrote {output}', file=sys.stderr)


if __name__ == '__main__':
    cli.run(main)
