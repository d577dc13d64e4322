"""Write the dataset CSVs (`identity,relative/path[,camera[,tracklet]]`, no header) of a dataset.

Usage (from the repository root; `python data/build_csv.py ...` works too):

    python -m data.build_csv market1501 DATASET_ROOT OUTPUT_DIR
    python -m data.build_csv duke DATASET_ROOT OUTPUT_DIR
    python -m data.build_csv msmt17 DATASET_ROOT OUTPUT_DIR [--with_val]
    python -m data.build_csv cuhk03 DATASET_ROOT OUTPUT_DIR [--boxes labeled] [--classic_split K]
    python -m data.build_csv mars DATASET_ROOT OUTPUT_DIR
    python -m data.build_csv veri DATASET_ROOT OUTPUT_DIR
    python -m data.build_csv vehicleid DATASET_ROOT OUTPUT_DIR
    python -m data.build_csv merge OUTPUT_CSV --source NAME CSV IMAGE_ROOT ... [--image_root DIR]
    python -m data.build_csv folders ROOT OUTPUT_CSV [--camera_pattern REGEX]
    python -m data.build_csv pattern ROOT OUTPUT_CSV --pattern REGEX
    python -m data.build_csv holdout TRAIN_CSV OUTPUT_DIR --identities N [--seed S]

`market1501` and `duke` write `<prefix>_train.csv`, `<prefix>_query.csv` and `<prefix>_test.csv`
exactly as the official repository's `data/` CSVs: the identity as it stands in the file name
(`0002`, `0000` distractors and `-1` junk kept), paths relative to DATASET_ROOT, sorted, no camera
column (the Market/Duke excluders of the evaluation read cameras from the file names).

The other datasets follow their official layouts and protocols (see each module of data/):
`msmt17` (V1 or V2 folder, from its list files; `--with_val` trains on train + val), `cuhk03`
(CUHK03-NP's `detected/` or `labeled/`, or with `--classic_split K` split K of the 20 of
`cuhk-03.mat`), `mars` (frames with their tracklet as a fourth column; the gallery is every test
tracklet), `veri` (VeRi-776) and `vehicleid` (train and the 800/1600/2400 test lists). They write
the camera column where the dataset has cameras, and print per CSV the numbers of rows (images),
identities, cameras (and tracklets) to compare with the published statistics. `merge` joins
several CSVs into one training set, identities prefixed by the dataset's name.

`folders` takes one sub-folder of ROOT per identity (images may sit deeper inside it), and with
`--camera_pattern` the camera from the named group `camera` of a regular expression searched in
each path as `pattern` does, e.g. `--camera_pattern '_c(?P<camera>\\d+)'`.
`pattern` takes the identity, and optionally the camera (then written as the third column), from
the named groups `identity` and `camera` of REGEX, searched (`re.search`, so anchor it with `^`/`$`
where needed) in each image's path relative to ROOT with `/` separators, e.g.
`--pattern '^(?P<identity>[^/]+)/cam(?P<camera>\\d+)_'`.

`holdout` carves a validation split from a training CSV (data/holdout.py): N identities drawn
with the seed leave it, one image per camera of each becomes a validation query and the others
its gallery; it writes `<prefix>_train.csv` (the rest, to train on), `<prefix>_query.csv` and
`<prefix>_gallery.csv`, e.g. for `tune_reranking.py`.

Hidden files and folders (names starting with `.`) are ignored. Nothing is overwritten unless
`--overwrite` is given; `--check_images` decodes every image first and refuses unreadable ones.
"""
import argparse
import os
import sys

if __package__ in (None, ''):  # run as `python data/build_csv.py`: the clone's modules importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data.builders import (build_duke, build_folders, build_market1501, build_pattern,
                           compile_camera_pattern, compile_pattern)
from data.cuhk03 import BOXES, build_cuhk03_classic, build_cuhk03np
from data.holdout import build_holdout
from data.mars import build_mars
from data.merge import build_merged
from data.msmt17 import build_msmt17
from data.vehicles import build_vehicleid, build_veri
from tripletreid.cli import ArgumentParser, nonnegative_int, positive_int, run
from tripletreid.errors import InputError


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
    datasets = (
        ('market1501', 'the official train/query/test CSVs of Market-1501',
         'bounding_box_train/ etc.'),
        ('duke', 'the official train/query/test CSVs of DukeMTMC-reID',
         'bounding_box_train/ etc.'),
        ('msmt17', 'MSMT17 V1 or V2 from its list files: train, query, test (gallery)',
         'list_*.txt and train/, test/ (V1) or mask_train_v2/, mask_test_v2/ (V2)'),
        ('cuhk03', 'CUHK03-NP (767/700 identities): train, query, test; or a classic split',
         'labeled/ and detected/ (CUHK03-NP), or cuhk03_release/cuhk-03.mat (classic)'),
        ('mars', 'MARS video: training frames, query and gallery frames with tracklets',
         'bbox_train/, bbox_test/ and info/'),
        ('veri', 'VeRi-776 vehicles: train, query, test (gallery)',
         'image_train/, image_query/ and image_test/'),
        ('vehicleid', 'VehicleID vehicles: train and the 800/1600/2400 test lists',
         'image/ and train_test_split/'),
    )
    subs = {}
    for name, help_text, holds in datasets:
        sub = subs[name] = commands.add_parser(name, parents=[common], help=help_text,
                                               description=help_text)
        sub.add_argument('dataset_root', help=f'the folder holding {holds}')
        sub.add_argument('output_dir', help='where the CSVs are written')
    subs['msmt17'].add_argument('--with_val', action='store_true',
                                help='train on list_train.txt and list_val.txt (by default the '
                                     'training set is list_train.txt only, as most papers)')
    subs['cuhk03'].add_argument('--boxes', choices=BOXES, default='detected',
                                help='detector or hand-drawn boxes (default: %(default)s)')
    subs['cuhk03'].add_argument(
        '--classic_split', type=positive_int, metavar='K',
        help='the classic protocol instead: split K (1..20) of cuhk-03.mat, whose images are '
             'extracted to --image_dir; writes cuhk03_<boxes>_split<K>_{train,test}.csv')
    subs['cuhk03'].add_argument(
        '--image_dir', metavar='DIR',
        help='with --classic_split: where the images go (default: '
             'OUTPUT_DIR/cuhk03_<boxes>_images; the CSV paths are relative to it)')
    sub = commands.add_parser('merge', parents=[common],
                              help='one training CSV from several datasets\' CSVs')
    sub.add_argument('output_csv', help='the CSV to write')
    sub.add_argument('--source', nargs=3, action='append', required=True,
                     metavar=('NAME', 'CSV', 'IMAGE_ROOT'),
                     help='a dataset: its name (the prefix of its identities), its CSV and the '
                          'folder its paths are relative to; give --source once per dataset')
    sub.add_argument('--image_root', metavar='DIR',
                     help='write paths relative to DIR (train with --image_root DIR); by '
                          'default they are absolute')
    sub = commands.add_parser('folders', parents=[common], help='one sub-folder per identity')
    sub.add_argument('root', help='the folder holding one sub-folder of images per identity '
                                  '(named by the identity)')
    sub.add_argument('output_csv', help='the CSV to write')
    sub.add_argument('--camera_pattern', metavar='REGEX',
                     help='regex with the named group `camera`, searched in the path relative '
                          'to ROOT (`/` separators), e.g. "_c(?P<camera>\\d+)"; the camera '
                          'becomes the third column')
    sub = commands.add_parser('pattern', parents=[common],
                              help='identity (and camera) from a regular expression on the path')
    sub.add_argument('root', help='the folder searched (recursively) for images')
    sub.add_argument('output_csv', help='the CSV to write')
    sub.add_argument('--pattern', required=True,
                     help='regex with the named group `identity` and optionally `camera`, '
                          'searched in the path relative to ROOT (`/` separators)')
    sub = commands.add_parser('holdout', help='a validation split carved from a training CSV',
                              description='Hold out identities of a training CSV as validation '
                                          'queries and gallery (see data/holdout.py).')
    sub.add_argument('train_csv', help='the training CSV (identity,path[,camera])')
    sub.add_argument('output_dir', help='where the CSVs are written')
    sub.add_argument('--identities', type=positive_int, required=True, metavar='N',
                     help='how many identities to hold out')
    sub.add_argument('--seed', type=nonnegative_int, default=0,
                     help='seed of the draw of identities and queries (default: %(default)s)')
    sub.add_argument('--prefix', default='holdout',
                     help='the CSVs are <prefix>_{train,query,gallery}.csv (default: '
                          '%(default)s)')
    sub.add_argument('--overwrite', action='store_true',
                     help='replace existing CSVs instead of refusing')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.command == 'holdout':
        build_holdout(args.train_csv, args.output_dir, args.identities, args.seed, args.prefix,
                      args.overwrite)
        return
    options = dict(overwrite=args.overwrite, check=args.check_images, threads=args.threads,
                   skip_unmatched=args.skip_unmatched)
    simple = {'market1501': build_market1501, 'duke': build_duke, 'mars': build_mars,
              'veri': build_veri, 'vehicleid': build_vehicleid}
    if args.command in simple:
        simple[args.command](args.dataset_root, args.output_dir, **options)
    elif args.command == 'msmt17':
        build_msmt17(args.dataset_root, args.output_dir, args.with_val, **options)
    elif args.command == 'cuhk03' and args.classic_split:
        del options['skip_unmatched']
        build_cuhk03_classic(args.dataset_root, args.output_dir, args.classic_split,
                             args.boxes, args.image_dir, **options)
    elif args.command == 'cuhk03':
        if args.image_dir:
            raise InputError('--image_dir applies with --classic_split only')
        build_cuhk03np(args.dataset_root, args.output_dir, args.boxes, **options)
    elif args.command == 'merge':
        del options['skip_unmatched']
        build_merged(args.output_csv, args.source, args.image_root, **options)
    elif args.command == 'folders':
        camera = compile_camera_pattern(args.camera_pattern) if args.camera_pattern else None
        build_folders(args.root, args.output_csv, camera, **options)
    else:
        build_pattern(args.root, args.output_csv, compile_pattern(args.pattern), **options)


if __name__ == '__main__':
    run(main)
