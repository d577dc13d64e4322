"""Generate a small synthetic person re-identification dataset in the Market-1501 layout.

Usage (from the repository root):

    python -m data.demo OUTPUT_ROOT [--train_ids 100] [--test_ids 50] [--seed 0]

It writes `bounding_box_train/`, `query/`, `bounding_box_test/` with Market-1501 file names
(`PPPP_cCsS_FFFFFF_NN.jpg`) and the three CSVs `market1501_{train,query,test}.csv`, so that the
training and evaluation scripts can be tried in minutes on a CPU without downloading anything.

The people are cartoon figures drawn with OpenCV. An identity is a combination of clothing and
body cues (upper/lower colours from a small shared palette, pattern, sleeves, trousers/shorts/
skirt, hair, hat, bag, build); each camera has its own lighting, scale, blur, noise and
background, and each image its own pose, position, view (front/back) and JPEG quality. No single
cue tells identities apart, and nothing constant over an image (background, colour cast) belongs
to an identity, so a network has to learn the combinations, across cameras, as on real data.
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
