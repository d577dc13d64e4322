"""Write the synthetic demo dataset (`data/demo_set.py`): Market-1501 layout and CSVs.

    python -m data.demo OUTPUT_ROOT [--train_ids 100] [--test_ids 50] [--seed 0]
"""
import argparse
import os
import sys

if __package__ in (None, ''):  # run as `python data/demo.py`: the clone's modules importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data.demo_set import make_demo_dataset
from tripletreid.cli import ArgumentParser, nonnegative_int, positive_int, run


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__.split('\n\n')[0],
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('root', help='a new or empty folder for the dataset')
    parser.add_argument('--train_ids', type=positive_int, default=100)
    parser.add_argument('--test_ids', type=positive_int, default=50)
    parser.add_argument('--images_per_camera', type=positive_int, default=3,
                        help='per identity and camera; test identities get one more (the query)')
    parser.add_argument('--cameras', type=positive_int, default=6)
    parser.add_argument('--height', type=positive_int, default=128)
    parser.add_argument('--width', type=positive_int, default=64)
    parser.add_argument('--distractors', type=nonnegative_int, default=20,
                        help='`0000` people in the gallery who are never queried')
    parser.add_argument('--junk', type=nonnegative_int, default=20,
                        help='`-1` bad boxes in the gallery, ignored by the evaluation')
    parser.add_argument('--seed', type=nonnegative_int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    summary = make_demo_dataset(
        args.root, args.train_ids, args.test_ids, args.images_per_camera, args.cameras,
        args.height, args.width, args.seed, args.distractors, args.junk)
    print(f'{args.root}: ' + ', '.join(f'{n} images in {folder}/'
                                       for folder, n in sorted(summary['images'].items())))


if __name__ == '__main__':
    run(main)
