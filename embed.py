#!/usr/bin/env python3
"""Embed the images of a CSV with a trained experiment; write them to an HDF5 file.

The network, head, input sizes and preprocessing come from the experiment's args.json.
Output datasets, as the official: `emb` [N, D] in CSV order; with more than one test-time view
also `emb_aug` [views, N, D]; and `augmentation_types`, the view names. Beyond the official:
`paths`, the CSV path of each row (evaluate.py and search.py refuse the file with another CSV),
and the attribute `fingerprint`, the model and views that made them. `--shard I/N` embeds the
I-th of N consecutive parts of the CSV (attributes `shard`, `first_row`, `dataset_rows`), for
`search.py index --embeddings part1.h5 ... partN.h5 --dataset the.csv`.
"""
import os
import sys

from tripletreid import cli, experiment, files, provenance


def build_parser():
    parser = cli.ArgumentParser(description=__doc__)
    add = parser.add_argument
    experiment.add_experiment_flags(parser)
    add('--dataset', required=True, help='CSV of the images to embed.')
    experiment.add_image_root_flag(parser)
    add('--filename', default=None,
        help='HDF5 output, relative to the experiment root (default: <csv name>_embeddings.h5).')
    add('--overwrite', action='store_true', help='Replace an existing output file.')
    add('--shard', type=cli.shard, metavar='I/N', default=None,
        help='Embed only the I-th of N consecutive parts of the CSV (1 <= I <= N); the default '
             'file name gets _shard<I>of<N>.')
    add('--projector', metavar='DIR', default=None,
        help='Also write, into this new or empty folder, what TensorBoard\'s Embedding '
             'Projector reads (`tensorboard --logdir DIR`): the embeddings, their identity, '
             'camera and path, and a sprite of thumbnails.')
    experiment.add_view_flags(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    cli.quiet_tensorflow()
    from tripletreid import csv_dataset, inference, pipeline
    spec, trained = experiment.read_experiment(args.experiment_root)
    image_root = args.image_root or trained.get('image_root')
    views = inference.Views(args.flip_augment, args.crop_augment)
    inference.check_views(views, args.aggregator, trained.get('crop_augment'))
    suffix = f'_shard{args.shard[0]}of{args.shard[1]}' if args.shard else ''
    filename = os.path.join(args.experiment_root, args.filename or os.path.splitext(
        os.path.basename(args.dataset))[0] + f'_embeddings{suffix}.h5')
    files.check_output(filename, args.overwrite)
    if args.projector:
        from tripletreid import projector
        projector.check_directory(args.projector)
    dataset = csv_dataset.read_csv(args.dataset)
    attrs = {}
    if args.shard:
        rows = csv_dataset.shard_rows(len(dataset), *args.shard)
        attrs = {provenance.SHARD: f'{args.shard[0]}/{args.shard[1]}',
                 provenance.FIRST_ROW: rows.start, provenance.DATASET_ROWS: len(dataset)}
        dataset = csv_dataset.subset(dataset, rows)
    pipeline.check_readable(dataset, image_root, args.loading_threads, args.quiet)
    model, checkpoint = inference.load_model(args.experiment_root, spec, args.checkpoint)
    if not args.quiet:
        print(f'Embedding {len(dataset)} images of {args.dataset} with {checkpoint}',
              file=sys.stderr)
    names = views.names()
    emb_aug = inference.embed(model, pipeline.image_paths(dataset.fids, image_root), spec, views,
                              args.batch_size, args.loading_threads, args.quiet)
    attrs[provenance.FINGERPRINT] = provenance.dumps(
        provenance.fingerprint(spec, names, args.aggregator, checkpoint))
    inference.write_embeddings(filename, emb_aug, names, args.aggregator, attrs,
                               paths=provenance.encode_paths(dataset.fids))
    if args.projector:
        projector.write(args.projector, inference.aggregate(emb_aug, args.aggregator), dataset,
                        image_root, spec.net_size, args.loading_threads, args.quiet)
        if not args.quiet:
            print(f'Wrote the Embedding Projector\'s files into {args.projector}; see them with '
                  f'tensorboard --logdir {args.projector}', file=sys.stderr)
    if not args.quiet:
        print(f'Wrote {filename}: {len(dataset)} x {spec.embedding_dim}, views: '
              f'{", ".join(names)}', file=sys.stderr)


if __name__ == '__main__':
    cli.run(main)
