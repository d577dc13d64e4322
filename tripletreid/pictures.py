"""Pictures of an evaluation as PNG files: the CMC curve and ranked lists of gallery matches.

Kept apart from evaluate.py, which imports it only when pictures are asked for, so that
demos can draw them too. matplotlib is imported only when a curve is drawn.
"""
import os

import cv2
import numpy as np

from tripletreid.errors import InputError
from tripletreid.files import atomic_path

TILE_SIZE = (64, 128)  # width, height of each person image
FRAME = 4              # frame thickness in pixels
GAP = 4                # white space around each framed image
QUERY_GAP = 16         # extra white space between the query and its matches
QUERY_COLOR = (128, 128, 128)  # BGR
MATCH_COLOR = (0, 170, 0)
MISS_COLOR = (0, 0, 220)
WHITE = (255, 255, 255)


def save_cmc_curve(curves, path, max_rank=50, title='CMC'):
    """Plot top-k accuracy for k = 1..max_rank into the PNG file `path`.

    `curves` is one CMC (a sequence) or {label: CMC} to compare several in one picture.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labelled = curves if isinstance(curves, dict) else {None: curves}
    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)  # the Agg backend, without touching pyplot's global state
    axes = figure.add_subplot()
    longest = 1
    for label, cmc in labelled.items():
        ranks = np.arange(1, min(max_rank, len(cmc)) + 1)
        longest = max(longest, ranks[-1])
        axes.plot(ranks, 100 * np.asarray(cmc[:len(ranks)]), marker='.', label=label)
    axes.set(xlabel='rank k', ylabel='queries with a true match in the top k (%)',
             title=title, xlim=(0.5, longest + 0.5), ylim=(0, 100.5))
    axes.grid(True, alpha=0.3)
    if len(labelled) > 1:
        axes.legend(loc='lower right')
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format='png')


def save_ranked_lists(image_root, query_fids, gallery_fids, ranked, is_match, path):
    """One row per query into the PNG file `path`: the query (grey frame), then the gallery
    images `ranked` (indices into `gallery_fids`, -1 for none) framed green where `is_match`
    and red where not. Images are read from `image_root`; a missing one is an InputError."""
    rows = []
    for query_fid, indices, matches in zip(query_fids, ranked, is_match):
        cells = [_cell(image_root, query_fid, QUERY_COLOR),
                 np.full((_cell_height(), QUERY_GAP, 3), 255, dtype=np.uint8)]
        cells += [_cell(image_root, gallery_fids[index] if index >= 0 else None,
                        MATCH_COLOR if match else MISS_COLOR)
                  for index, match in zip(indices, matches)]
        rows.append(np.hstack(cells))
    ok, png = cv2.imencode('.png', np.vstack(rows))
    if not ok:
        raise InputError(f'{path}: could not encode the ranked-list picture')
    with atomic_path(path) as tmp:
        png.tofile(tmp)


def _cell_height():
    return TILE_SIZE[1] + 2 * (FRAME + GAP)


def _cell(image_root, fid, color):
    """The image `fid` resized, framed in `color` and surrounded by white; blank if None."""
    if fid is None:
        return np.full((_cell_height(), TILE_SIZE[0] + 2 * (FRAME + GAP), 3), 255,
                       dtype=np.uint8)
    path = os.path.join(image_root, fid)
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f'{path}: missing or not an image (needed for the ranked list)')
    image = cv2.resize(image, TILE_SIZE, interpolation=cv2.INTER_AREA)
    framed = cv2.copyMakeBorder(image, *[FRAME] * 4, cv2.BORDER_CONSTANT, value=color)
    return cv2.copyMakeBorder(framed, *[GAP] * 4, cv2.BORDER_CONSTANT, value=WHITE)
