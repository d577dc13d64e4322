#!/usr/bin/env python3
"""Activation maps: where a trained network looks in the images of a CSV, as one PNG grid.

Each image is shown beside itself under the energy of the backbone's last feature map (at each
position the sum over channels of the squared activations, upsampled and normalised per image
from its minimum to its maximum, as torchreid's visualize_actmap): a network that learnt the
person is strong on the person, not on the background. The images are resized to the network
input of args.json, as embed.py does without test-time augmentation; --count rows spread evenly
over the CSV are drawn (all of them if the CSV has fewer).
"""
import sys

from tripletreid import cli, csv_dataset, experiment, files


def build_parser():
    parser = cli.ArgumentParser(description=__doc__)
    add = parser.add_argument
    experiment.add_experiment_flags(parser)
    add('--dataset', required=True, help='CSV of the images (identity,path[,camera]).')
    experiment.add_image_root_flag(parser)
    add('--output', required=True, help='The PNG file to write.')
    add('--overwrite', action='store_true', help='Replace an existing output file.')
    add('--count', type=cli.positive_int, default=24,
        help='How many images to draw, spread evenly over the CSV (default: %(default)s).')
    add('--columns', type=cli.positive_int, default=6,
        help='Images per row of the grid (default: %(default)s).')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    files.check_output(args.output, args.overwrite)
    dataset = csv_dataset.read_csv(args.dataset)
    spec, trained = experiment.read_experiment(args.experiment_root)
    image_root = args.image_root or trained.get('image_root')
    cli.quiet_tensorflow()
    from tripletreid import activation_maps, inference, pipeline
    chosen = activation_maps.choose(dataset, args.count)
    pipeline.check_readable(chosen, image_root, threads=2, quiet=True)
    model, checkpoint = inference.load_model(args.experiment_root, spec, args.checkpoint)
    activation_maps.draw_dataset(model, spec.net_size, chosen, image_root, args.output,
                                 args.columns)
    print(f'Wrote {args.output}: activation maps of {len(chosen)} images of {args.dataset} '
          f'with {checkpoint}', file=sys.stderr)


if __name__ == '__main__':
    cli.run(main)
