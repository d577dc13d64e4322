#!/usr/bin/env python3
"""Export a trained experiment as a model that runs without this project.

The exported model takes uint8 RGB images of any size, [batch, height, width, 3], resizes them
to the network input size of args.json (bilinear, as embed.py without test-time augmentation,
so the embeddings match it), preprocesses them and returns float32 embeddings [batch, D].

Formats: a TensorFlow SavedModel directory, for `tf.saved_model.load` (signature
`serving_default`: input `images`, output `embeddings`), a `.keras` file of core Keras
layers only, for `keras.models.load_model` (input `images`, output `embeddings`), a LiteRT
`.tflite` file (float32, or quantised with --quantize) for ai-edge-litert's interpreter, and an
`.onnx` file for ONNX Runtime; all four keep dynamic batch and image sizes.

Every export checks itself before it is renamed into place: it embeds sample images (the
--verify_images CSV, or synthetic images) in its own runtime and with embed.py's code, and
prints the largest relative difference; above 1e-4 for float32 (or --max_difference) it is
refused and nothing is written; a quantised one states its tolerance, and warns beyond it.
With --verify_query and --verify_gallery it also prints the export's mAP and rank-1 beside the
original's.
"""
import argparse
import sys

import excluders
from tripletreid import cli, experiment, files
from tripletreid.errors import InputError

FORMATS = ('savedmodel', 'keras', 'both', 'tflite', 'onnx')
QUANTIZATIONS = ('none', 'float16', 'dynamic_int8', 'int8')  # exporting.QUANTIZATIONS


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
        help='What to write (default: from the name: .keras, .tflite, .onnx, else savedmodel). '
             'tflite and onnx need pip install -e ".[export]".')
    add('--overwrite', action='store_true', help='Replace existing outputs.')
    add('--quantize', choices=QUANTIZATIONS, default='none',
        help='tflite only: float16 weights, dynamic_int8 (int8 weights, float activations) '
             'or int8 (every op int8, calibrated on --representative); the input stays uint8 '
             'and the output float32.')
    add('--representative', default=None,
        help='With --quantize int8: CSV of images (below --image_root) to calibrate on.')
    add('--representative_count', default=100, type=cli.positive_int,
        help='Images of --representative used (a seeded sample).')
    add('--image_root', type=cli.readable_directory, default=None,
        help='Folder the paths of --representative and the --verify_* CSVs are relative to.')
    add('--verify_images', default=None,
        help='CSV of images to check the export on (default: synthetic images).')
    add('--verify_query', default=None, help='CSV of queries: also print mAP and rank-1.')
    add('--verify_gallery', default=None, help='CSV of the gallery of --verify_query.')
    add('--verify_excluder', choices=sorted(excluders.EXCLUDERS), default=None,
        help='Which gallery entries a --verify_query query ignores (as evaluate.py '
             '--excluder).')
    add('--max_difference', default=None, type=cli.positive_float,
        help='Refuse the export above this relative difference from embed.py (default: 1e-4 '
             'for float32; quantised exports are kept beyond their stated tolerance, 0.05 '
             'float16, 0.25 dynamic_int8, 1 int8, with a warning).')
    return parser


def check_flags(args):
    """Refuse flag combinations that cannot work, before anything loads."""
    format_ = args.format or ('tflite' if args.output.endswith('.tflite') else None)
    if args.quantize != 'none' and format_ != 'tflite':
        raise InputError(f'--quantize {args.quantize} applies to --format tflite only')
    if (args.quantize == 'int8') != (args.representative is not None):
        raise InputError('--quantize int8 needs --representative CSV (the images to calibrate '
                         'on), and --representative needs --quantize int8')
    if (args.verify_query is None) != (args.verify_gallery is None):
        raise InputError('--verify_query and --verify_gallery go together')
    if (args.verify_query is None) != (args.verify_excluder is None):
        raise InputError('--verify_excluder goes with --verify_query and --verify_gallery, '
                         'and they need it')


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_flags(args)
    cli.quiet_tensorflow()
    from tripletreid import export_checks, exporting, inference, runtimes
    paths = exporting.output_paths(args.output, args.format)
    for format_ in paths:
        runtimes.require(format_)
    for path in paths.values():
        files.check_output(path, args.overwrite)
    spec, trained = experiment.read_experiment(args.experiment_root)
    representative = None
    if args.representative:
        _, representative_paths = export_checks.read_image_csv(
            args.representative, args.image_root, '--representative')
        representative = export_checks.representative_images(representative_paths,
                                                              args.representative_count)
    model, checkpoint = inference.load_model(args.experiment_root, spec, args.checkpoint)
    checker = export_checks.Checker(
        model, spec, args.verify_images, args.image_root, args.verify_query,
        args.verify_gallery, args.verify_excluder, trained.get('metric', 'euclidean'))
    results = []

    def verify(format_, tmp):
        results.append(checker.check(format_, tmp, args.quantize, args.max_difference))

    for format_, path in paths.items():
        seconds = exporting.export(model, format_, path, spec.net_size, verify, args.quantize,
                                   representative)
        kind = '' if args.quantize == 'none' else f' ({args.quantize})'
        print(f'Exported {checkpoint} ({spec.model_name} + {spec.head_name}, input '
              f'{spec.net_input_height}x{spec.net_input_width}, {spec.embedding_dim}-D) to '
              f'{path}: {format_}{kind}, {exporting.size_mb(path):.1f} MB, {seconds:.1f} s',
              file=sys.stderr)
        for line in export_checks.describe(results[-1]):
            print(line, file=sys.stderr)


if __name__ == '__main__':
    cli.run(main)
