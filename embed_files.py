#!/usr/bin/env python3
"""Embed a plain list of image files with a trained experiment, as the official trinet_embed.py.

No CSV and no identities: one image path per line (relative to the current directory; blank
lines are skipped), from a file or from stdin (`-`). Output: one line per image,
`path,v1,...,vD` (the path quoted if it holds a comma), to stdout or to `--output file.csv`;
or, when --output ends in .h5, an HDF5 file with `emb` [N, D] in list order and `paths`, plus
`emb_aug` and `augmentation_types` as embed.py writes them.

Images are resized to the network input size of args.json, or embedded in several test-time
views with embed.py's flags (e.g. `--flip_augment --crop_augment five --aggregator mean`,
the ten views of the official script).
"""
import argparse
import csv
import sys


from tripletreid import cli, experiment, files, provenance

STDIO = '-'  # the list from stdin, the embeddings to stdout
HDF5_SUFFIX = '.h5'


def build_parser():
    parser = cli.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add('image_list', help='File of image paths, one per line; - reads them from stdin.')
    experiment.add_experiment_flags(parser)
    add('--output', default=STDIO,
        help='- (stdout, the default), a CSV file, or an HDF5 file (ending in .h5).')
    add('--overwrite', action='store_true', help='Replace an existing output file.')
    experiment.add_view_flags(parser)
    return parser


def check_output(args):
    """Refuse an output that cannot be written now, before embedding every image."""
    if args.output == STDIO:
        return
    files.check_output(args.output, args.overwrite)


def write_csv(output, paths, emb):
    """`path,v1,...,vD` per image; each value the shortest text that reads back as its float32."""
    def write(stream):
        writer = csv.writer(stream, lineterminator='\n')
        writer.writerows([path, *map(str, row)] for path, row in zip(paths, emb))

    if output == STDIO:
        write(sys.stdout)
        sys.stdout.flush()
        return
    with files.atomic_path(output) as tmp:
        with open(tmp, 'w', newline='', encoding='utf-8') as f:
            write(f)


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_output(args)
    cli.quiet_tensorflow()
    from tripletreid import csv_dataset, inference, pipeline
    spec, trained = experiment.read_experiment(args.experiment_root)
    views = inference.Views(args.flip_augment, args.crop_augment)
    inference.check_views(views, args.aggregator, trained.get('crop_augment'))
    images = csv_dataset.read_list(args.image_list)
    pipeline.check_readable(images, '', args.loading_threads, args.quiet)
    model, checkpoint = inference.load_model(args.experiment_root, spec, args.checkpoint)
    if not args.quiet:
        print(f'Embedding {len(images)} images of {images.csv_path} with {checkpoint}',
              file=sys.stderr)
    names = views.names()
    emb_aug = inference.embed(model, images.fids, spec, views, args.batch_size,
                              args.loading_threads, args.quiet)
    if args.output.endswith(HDF5_SUFFIX):
        print_ = provenance.fingerprint(spec, names, args.aggregator, checkpoint)
        inference.write_embeddings(args.output, emb_aug, names, args.aggregator,
                                   {provenance.FINGERPRINT: provenance.dumps(print_)},
                                   paths=provenance.encode_paths(images.fids))
    else:
        write_csv(args.output, images.fids, inference.aggregate(emb_aug, args.aggregator))
    if not args.quiet and args.output != STDIO:
        print(f'Wrote {args.output}: {len(images)} x {spec.embedding_dim}, views: '
              f'{", ".join(names)}', file=sys.stderr)


if __name__ == '__main__':
    cli.run(main)
