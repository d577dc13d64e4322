"""Files for TensorBoard's Embedding Projector: `tensorboard --logdir DIR` then shows the
embeddings in 3-D (PCA, t-SNE, UMAP) with a thumbnail of each image.

DIR holds `embeddings.tsv` (one embedding a line), `metadata.tsv` (a header, then the identity,
camera and path of each line), `sprite.png` (the thumbnails in a square grid, row by row, as the
projector cuts it) and `projector_config.pbtxt`, which ties them together and gives the size of
one thumbnail. The projector needs no checkpoint when the config names a tensors file.
"""
import math
import os

import cv2
import numpy as np

from tripletreid import pipeline, progress
from tripletreid.errors import InputError
from tripletreid.files import atomic_path

TENSOR_NAME = 'embeddings'
TENSORS, METADATA, SPRITE = 'embeddings.tsv', 'metadata.tsv', 'sprite.png'
CONFIG = 'projector_config.pbtxt'  # the name the projector plugin looks for
MAX_SPRITE = 8192       # pixels on a side: the largest sprite the projector takes
THUMBNAIL_HEIGHT = 64   # the thumbnails' height when the sprite has room for it


def check_directory(directory):
    """Refuse, before any work, a projector folder that holds files already (never
    overwritten) or that cannot be made."""
    if os.path.isdir(directory) and os.listdir(directory):
        raise InputError(f'--projector {directory} is not empty; remove it or choose another')
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise InputError(f'--projector {directory} is a file, not a folder')
    parent = os.path.dirname(os.path.abspath(directory))
    if not os.path.isdir(parent):
        raise InputError(f'--projector {directory}: no such directory {parent}')


def thumbnail_size(count, net_size):
    """(height, width) of each of `count` thumbnails: THUMBNAIL_HEIGHT, or less so that the
    square grid fits in MAX_SPRITE pixels, with the network input's aspect ratio."""
    per_row = math.ceil(math.sqrt(count))
    height = min(THUMBNAIL_HEIGHT, MAX_SPRITE // per_row)
    width = min(height * net_size[1] // net_size[0], MAX_SPRITE // per_row)
    if height < 1 or width < 1:
        raise InputError(f'{count} images do not fit in the projector\'s sprite of '
                         f'{MAX_SPRITE}x{MAX_SPRITE} pixels')
    return height, width


def sprite(paths, size, threads=8, quiet=False):
    """The thumbnails of `paths` at `size` (height, width) in a square grid of ceil(sqrt(N))
    a row, row by row, white where there is no image: an RGB uint8 array."""
    per_row = math.ceil(math.sqrt(len(paths)))
    height, width = size
    grid = np.full((per_row * height, per_row * width, 3), 255, np.uint8)
    bar = progress.bar(len(paths), 'Sprite', quiet=quiet)
    done = 0
    for batch in pipeline.image_batches(paths, size, threads=threads):
        for image in np.uint8(np.clip(np.round(batch.numpy()), 0, 255)):
            row, column = divmod(done, per_row)
            grid[row * height:(row + 1) * height, column * width:(column + 1) * width] = image
            done += 1
        bar.update(len(batch))
    bar.close()
    return grid


def metadata_lines(dataset):
    """The metadata TSV of a CSV `Dataset`: a header, then identity, camera (blank without a
    camera column) and path of each row. A tab or line break inside a cell would shift the
    projector's columns, so it becomes a space."""
    cameras = dataset.cams if dataset.cams is not None else [''] * len(dataset)
    cells = [('identity', 'camera', 'path')] + list(zip(dataset.pids, cameras, dataset.fids))
    return ['\t'.join(' '.join(str(cell).split('\t')).replace('\n', ' ').replace('\r', ' ')
                      for cell in row) + '\n' for row in cells]


def config_text(thumbnail):
    """projector_config.pbtxt, written with the plugin's own message type."""
    from google.protobuf import text_format
    from tensorboard.plugins import projector

    config = projector.ProjectorConfig()
    embedding = config.embeddings.add()
    embedding.tensor_name = TENSOR_NAME
    embedding.tensor_path = TENSORS
    embedding.metadata_path = METADATA
    embedding.sprite.image_path = SPRITE
    embedding.sprite.single_image_dim.extend([thumbnail[1], thumbnail[0]])  # width, height
    return text_format.MessageToString(config)


def write(directory, embeddings, dataset, image_root, net_size, threads=8, quiet=False):
    """Write the projector's files for `embeddings` [N, D] of the rows of the CSV `Dataset`
    (images under `image_root`) into `directory` (new, or empty: see `check_directory`)."""
    check_directory(directory)
    os.makedirs(directory, exist_ok=True)
    size = thumbnail_size(len(dataset), net_size)
    grid = sprite(pipeline.image_paths(dataset.fids, image_root), size, threads, quiet)
    ok, png = cv2.imencode('.png', cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputError(f'{directory}: could not encode the sprite image')
    texts = {METADATA: ''.join(metadata_lines(dataset)), CONFIG: config_text(size)}
    with atomic_path(os.path.join(directory, TENSORS)) as tmp:
        # %.9g: the shortest format that gives every float32 back exactly.
        np.savetxt(tmp, np.asarray(embeddings, np.float32), fmt='%.9g', delimiter='\t')
    with atomic_path(os.path.join(directory, SPRITE)) as tmp:
        png.tofile(tmp)
    for name, text in texts.items():  # the config last: without it the folder shows nothing
        with atomic_path(os.path.join(directory, name)) as tmp:
            with open(tmp, 'w', encoding='utf-8') as f:
                f.write(text)
