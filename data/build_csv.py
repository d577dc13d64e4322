"""Write the dataset CSVs (`identity,relative/path[,camera]`, no header) from image folders.

Usage (from the repository root; `python data/build_csv.py ...` works too):

    python -m data.build_csv market1501 DATASET_ROOT OUTPUT_DIR
    python -m data.build_csv duke DATASET_ROOT OUTPUT_DIR
    python -m data.build_csv folders ROOT OUTPUT_CSV
    python -m data.build_csv pattern ROOT OUTPUT_CSV --pattern REGEX

`market1501` and `duke` write `<prefix>_train.csv`, `<prefix>_query.csv` and `<prefix>_test.csv`
exactly as the official repository's `data/` CSVs: the identity as it stands in the file name
(`0002`, `0000` distractors and `-1` junk kept), paths relative to DATASET_ROOT, sorted, no camera
column (the Market/Duke excluders of the evaluation read cameras from the file names).

`folders` takes one sub-folder of ROOT per identity (images may sit deeper inside it).
`pattern` takes the identity, and optionally the camera (then written as the third column), from
the named groups `identity` and `camera` of REGEX, searched (`re.search`, so anchor it with `^`/`$`
where needed) in each image's path relative to ROOT with `/` separators, e.g.
`--pattern '^(?P<identity>[^/]+)/cam(?P<camera>\\d+)_'`.

Hidden files and folders (names starting with `.`) are ignored. Nothing is overwritten unless
`--overwrite` is given; `--check_images` decodes every image first and refuses unreadable ones.
"""
import argparse
import os
import sys

if __package__ in (None, ''):  # run as `python data/build_csv.py`: the clone's modules importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data.builders import (build_duke, build_folders, build_market1501, build_pattern,
                           compile_pattern)
from tripletreid.cli import ArgumentParser, positive_int, run


def parse_args(argv=None):
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument('--overwrite', action='store_true',
                        help='replace existing CSVs instead of refusing')
    common.add_argument('--check_images', action='store_true',
                        help='decode every image and refuse if any cannot be read')
    common.add_argument('--threads', type=positive_int, default=min(8, os.cpu_count() or 1),
                        help='threads for --check_images')
    common.add_argument('--skip_unmatched', action='store_true',
                        help='leave out (with a warning) images whose path gives no identity, '
                             'instead of refusing')
    parser = ArgumentParser(description=__doc__.split('\n\n')[0])
    commands = parser.add_subparsers(dest='command', required=True)
    for name, dataset in (('market1501', 'Market-1501'), ('duke', 'DukeMTMC-reID')):
        sub = commands.add_parser(name, parents=[common],
                                  help=f'the official train/query/test CSVs of {dataset}')
        sub.add_argument('dataset_root', help='the folder holding bounding_box_train/ etc.')
        sub.add_argument('output_dir', help='where the three CSVs are written')
    sub = commands.add_parser('folders', parents=[common], help='one sub-folder per identity')
    sub.add_argument('root')
    sub.add_argument('output_csv')
    sub = commands.add_parser('pattern', parents=[common],
                              help='identity (and camera) from a regular expression on the path')
    sub.add_argument('root')
    sub.add_argument('output_csv')
    sub.add_argument('--pattern', required=True,
                     help='regex with the named group `identity` and optionally `camera`, '
                          'searched in the path relative to ROOT (`/` separators)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    options = dict(overwrite=args.overwrite, check=args.check_images, threads=args.threads,
                   skip_unmatched=args.skip_unmatched)
    if args.command == 'market1501':
        build_market1501(args.dataset_root, args.output_dir, **options)
    elif args.command == 'duke':
        build_duke(args.dataset_root, args.output_dir, **options)
    elif args.command == 'folders':
        build_folders(args.root, args.output_csv, **options)
    else:
        build_pattern(args.root, args.output_csv, compile_pattern(args.pattern), **options)


if __name__ == '__main__':
    run(main)
