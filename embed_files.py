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

import common

common.quiet_tensorflow()

import numpy as np  # noqa: E402

import embed  # noqa: E402
from common import InputError  # noqa: E402
from data import csv_dataset, pipeline  # noqa: E402

STDIO = '-'
HDF5_SUFFIX = '.h5'


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add('image_list', help='File of image paths, one per line; - reads them from stdin.')
    embed.add_experiment_flags(parser)
    add('--output', default=STDIO,
        help='- (stdout, the default), a CSV file, or an HDF5 file (ending in .h5).')
    add('--overwrite', action='store_true', help='Replace an existing output file.')
    embed.add_view_flags(parser)
    return parser


def read_list(name):
    """The paths of the list and their line numbers, as a dataset without identities."""
    where = '<stdin>' if name == STDIO else name
    try:
        if name == STDIO:
            data = sys.stdin.buffer.read()
        else:
            with open(name, 'rb') as f:
                data = f.read()
    except (FileNotFoundError, IsADirectoryError, PermissionError) as error:
        raise InputError(f'{where}: {error.strerror}') from None
    text = csv_dataset.decode_utf8(data, where)
    rows = [(number, line.strip()) for number, line in enumerate(text.split('\n'), start=1)
            if line.strip()]
    if not rows:
        raise InputError(f'{where}: no image paths in the list')
    lines, paths = zip(*rows)
    return csv_dataset.Dataset(where, pids=None, fids=np.array(paths), lines=np.array(lines))


def check_output(args):
    """Refuse an output that cannot be written now, before embedding every image."""
    if args.output == STDIO:
        return
    common.check_output(args.output, args.overwrite)


def write_csv(output, paths, emb):
    """`path,v1,...,vD` per image; each value the shortest text that reads back as its float32."""
    def write(stream):
        writer = csv.writer(stream, lineterminator='\n')
        writer.writerows([path, *map(str, row)] for path, row in zip(paths, emb))

    if output == STDIO:
        write(sys.stdout)
        sys.stdout.flush()
        return
    with common.atomic_path(output) as tmp:
        with open(tmp, 'w', newline='', encoding='utf-8') as f:
            write(f)


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_output(args)
    embed.check_views(args, embed.experiment_args(args))
    images = read_list(args.image_list)
    csv_dataset.check_images(images, '', args.loading_threads)
    pipeline.check_decodable(images, '', args.loading_threads)
    model, checkpoint = embed.load_model(args)
    if not args.quiet:
        print(f'Embedding {len(images)} images of {images.csv_path} with {checkpoint}',
              file=sys.stderr)
    names = embed.view_names(args)
    emb_aug = embed.embed(args, model, images.fids)
    if args.output.endswith(HDF5_SUFFIX):
        embed.write_embeddings(args.output, emb_aug, names, args.aggregator,
                               paths=np.char.encode(images.fids, 'utf-8'))
    else:
        write_csv(args.output, images.fids, embed.aggregate(emb_aug, args.aggregator))
    if not args.quiet and args.output != STDIO:
        print(f'Wrote {args.output}: {len(images)} x {args.embedding_dim}, views: '
              f'{", ".join(names)}', file=sys.stderr)


if __name__ == '__main__':
    common.run_cli(main)
