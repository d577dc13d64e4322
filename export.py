#!/usr/bin/env python3
"""Export a trained experiment as a model that runs without this project.

The exported model takes uint8 RGB images of any size, [batch, height, width, 3], resizes them
to the network input size of args.json (bilinear, as embed.py without test-time augmentation,
so the embeddings match it), preprocesses them and returns float32 embeddings [batch, D].

Formats: a TensorFlow SavedModel directory, for `tf.saved_model.load` (signature
`serving_default`: input `images`, output `embeddings`), and a `.keras` file of core Keras
layers only, for `keras.models.load_model` (input `images`, output `embeddings`).
"""
import argparse
import sys

from tripletreid import cli, experiment, files

FORMATS = ('savedmodel', 'keras', 'both')


def build_parser():
    parser = cli.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    experiment.add_experiment_flags(parser)
    add = parser.add_argument
    add('--output', required=True,
        help='Where to write: the SavedModel directory, or the Keras file (ending in .keras); '
             'with --format both, the SavedModel directory, and the Keras file is '
             '<output>.keras.')
    add('--format', choices=FORMATS, default=None,
        help='What to write (default: keras if --output ends in .keras, else savedmodel).')
    add('--overwrite', action='store_true', help='Replace existing outputs.')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    cli.quiet_tensorflow()
    from tripletreid import exporting, inference
    paths = exporting.output_paths(args.output, args.format)
    for path in paths.values():
        files.check_output(path, args.overwrite)
    spec, _ = experiment.read_experiment(args.experiment_root)
    model, checkpoint = inference.load_model(args.experiment_root, spec, args.checkpoint)
    for format_, path in paths.items():
        seconds = exporting.export(model, format_, path, spec.net_size)
        print(f'Exported {checkpoint} ({spec.model_name} + {spec.head_name}, input '
              f'{spec.net_input_height}x{spec.net_input_width}, {spec.embedding_dim}-D) to '
              f'{path}: {format_}, {exporting.size_mb(path):.1f} MB, {seconds:.1f} s',
              file=sys.stderr)


if __name__ == '__main__':
    cli.run(main)
