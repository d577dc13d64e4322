#!/usr/bin/env python3
"""The README's pictures of the demo: activation maps, training curves, the embedding projector.

    python studies/docs_pictures.py --output docs

Runs demo.py (its default settings: seed 0, 600 steps; a few minutes on 2 cores) in a temporary
folder, embeds the demo's query images with `embed.py --projector` (the demo's views: centre
crop and its mirror), and writes into --output:
`cmc.png`, `activation_maps.png` and `training_curves.png` as the demo made them,
`ranked_list.jpg`, the first four rows of its `ranked_list.png`, and `projector.png`, the
projector's files seen flat: the first two principal components of `embeddings.tsv`, each image
drawn at its point with its thumbnail cut from `sprite.png` (TensorBoard shows the same in 3-D).
Only the synthetic demo set is drawn: pictures of real person crops stay out of the repository.
"""
import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tripletreid import pictures, projector

ROOT = sys.path[0]
RANKED_ROWS = 4  # of the demo's ranked list, shown in the README


def run(*command):
    subprocess.run([sys.executable, *command], cwd=ROOT, check=True)


def thumbnails(directory, count):
    """The first `count` thumbnails of the projector's sprite, as RGB arrays."""
    sprite = cv2.cvtColor(cv2.imread(os.path.join(directory, projector.SPRITE)),
                          cv2.COLOR_BGR2RGB)
    with open(os.path.join(directory, projector.CONFIG)) as f:
        width, height = (int(line.split(':')[1]) for line in f
                         if 'single_image_dim' in line)
    per_row = math.ceil(math.sqrt(count))
    return [sprite[(i // per_row) * height:(i // per_row + 1) * height,
                   (i % per_row) * width:(i % per_row + 1) * width] for i in range(count)]


def draw_projection(directory, path):
    """The embeddings of the projector folder on their first two principal components, each
    image's thumbnail at its point, into the PNG `path`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    embeddings = np.loadtxt(os.path.join(directory, projector.TENSORS), delimiter='\t')
    centred = embeddings - embeddings.mean(axis=0)
    _, _, axes_ = np.linalg.svd(centred, full_matrices=False)
    points = centred @ axes_[:2].T
    figure = Figure(figsize=(9, 7), dpi=100, layout='constrained')
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.scatter(points[:, 0], points[:, 1], s=2, color='grey')
    for point, image in zip(points, thumbnails(directory, len(points))):
        axes.add_artist(AnnotationBbox(OffsetImage(image, zoom=0.45), point, frameon=False))
    axes.set(title='demo query images on the first two principal components of their '
                   'embeddings', xlabel='component 1', ylabel='component 2')
    axes.margins(0.08)
    figure.savefig(path, format='png')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--output', default=os.path.join(ROOT, 'docs'))
    args = parser.parse_args()
    os.makedirs(args.output, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        demo = os.path.join(work, 'demo')
        run('demo.py', '--output', demo)
        dataset = os.path.join(demo, 'dataset')
        run('embed.py', '--experiment_root', os.path.join(demo, 'experiment'),
            '--dataset', os.path.join(dataset, 'market1501_query.csv'), '--image_root', dataset,
            '--flip_augment', '--crop_augment', 'center', '--aggregator', 'mean',  # the demo's
            '--projector', os.path.join(work, 'projector'), '--quiet')
        for name in ('cmc.png', 'activation_maps.png'):
            shutil.copy(os.path.join(demo, name), args.output)
        ranked = cv2.imread(os.path.join(demo, 'ranked_list.png'))
        cv2.imwrite(os.path.join(args.output, 'ranked_list.jpg'),
                    ranked[:RANKED_ROWS * pictures.cell_height()], [cv2.IMWRITE_JPEG_QUALITY, 90])
        shutil.copy(os.path.join(demo, 'experiment', 'training_curves.png'), args.output)
        draw_projection(os.path.join(work, 'projector'), os.path.join(args.output,
                                                                      'projector.png'))
    print(f'Wrote cmc.png, ranked_list.jpg, activation_maps.png, training_curves.png and '
          f'projector.png into {args.output}')


if __name__ == '__main__':
    main()
