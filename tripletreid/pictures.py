"""Pictures of an evaluation as PNG files: the CMC curve and ranked lists of gallery matches.

Kept apart from evaluate.py, which imports it only when pictures are asked for, so that
demos can draw them too. matplotlib is imported only when a curve is drawn.
"""
import dataclasses
import typing

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
TEXT_COLOR = (40, 40, 40)
FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.4       # 11 pixels high: small, and legible at 100%
LINE_HEIGHT = 14
CAPTION_LINES = 2      # under each image: rank and identity; camera and distance


def save_cmc_curve(curves, path, max_rank=50, title='CMC'):
    """Plot top-k accuracy for k = 1..max_rank into the PNG file `path`.

    `curves` is one CMC (a sequence) or {label: CMC}, the labels (e.g. the run's name and
    mAP) in a legend.
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
    if None not in labelled:
        axes.legend(loc='lower right')
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format='png')


@dataclasses.dataclass(frozen=True)
class Images:
    """One side of ranked lists: each image's full path, identity and camera (None, or ''
    for one, where unknown), for the captions."""
    paths: typing.Sequence
    pids: typing.Sequence = None
    cams: typing.Sequence = None

    def label(self, i):
        """(identity, camera) of image `i` as caption text, '?' where unknown."""
        return tuple('?' if values is None or str(values[i]) == '' else str(values[i])
                     for values in (self.pids, self.cams))


def ranked_captions(queries, gallery, ranked, distances):
    """The caption lines of each cell of the ranked lists, query first: its identity and
    camera; each match's rank, identity, camera and distance (none for an empty cell)."""
    rows = []
    for q, (indices, dists) in enumerate(zip(ranked, distances)):
        pid, cam = queries.label(q)
        cells = [[f'query {pid}', f'cam {cam}']]
        for rank, (index, distance) in enumerate(zip(indices, dists), start=1):
            if index < 0:
                cells.append([])
                continue
            pid, cam = gallery.label(index)
            cells.append([f'#{rank} {pid}', f'cam {cam} d {distance:.3g}'])
        rows.append(cells)
    return rows


def save_ranked_lists(queries, gallery, ranked, is_match, distances, path):
    """One row per query into the PNG file `path`: the query (grey frame), then the gallery
    images `ranked` (indices into `gallery`, -1 for none) framed green where `is_match` and
    red where not, each captioned (`ranked_captions`) with its `distances`. `queries` and
    `gallery` are `Images`; a missing image is an InputError (callers check them first)."""
    rows = []
    captions = ranked_captions(queries, gallery, ranked, distances)
    for q, (indices, matches) in enumerate(zip(ranked, is_match)):
        cells = [_cell(queries.paths[q], QUERY_COLOR, captions[q][0]),
                 np.full((cell_height(), QUERY_GAP, 3), 255, dtype=np.uint8)]
        cells += [_cell(gallery.paths[index] if index >= 0 else None,
                        MATCH_COLOR if match else MISS_COLOR, caption)
                  for index, match, caption in zip(indices, matches, captions[q][1:])]
        rows.append(np.hstack(cells))
    ok, png = cv2.imencode('.png', np.vstack(rows))
    if not ok:
        raise InputError(f'{path}: could not encode the ranked-list picture')
    with atomic_path(path) as tmp:
        png.tofile(tmp)


def cell_height():
    """The height of one row of the ranked list: an image in its frame and its caption."""
    return TILE_SIZE[1] + 2 * (FRAME + GAP) + CAPTION_LINES * LINE_HEIGHT


def _cell_width():
    return TILE_SIZE[0] + 2 * (FRAME + GAP)


def _cell(path, color, caption):
    """The image at `path` resized, framed in `color`, surrounded by white, with the
    `caption` lines below; blank if `path` is None."""
    cell = np.full((cell_height(), _cell_width(), 3), 255, dtype=np.uint8)
    if path is None:
        return cell
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f'{path}: missing or not an image (needed for the ranked list)')
    image = cv2.resize(image, TILE_SIZE, interpolation=cv2.INTER_AREA)
    framed = cv2.copyMakeBorder(image, *[FRAME] * 4, cv2.BORDER_CONSTANT, value=color)
    top = cv2.copyMakeBorder(framed, *[GAP] * 4, cv2.BORDER_CONSTANT, value=WHITE)
    cell[:top.shape[0]] = top
    for line, text in enumerate(caption):
        baseline = top.shape[0] + (line + 1) * LINE_HEIGHT - 3
        cv2.putText(cell, _fit(text, _cell_width() - 4), (2, baseline), FONT, FONT_SCALE,
                    TEXT_COLOR, 1, cv2.LINE_AA)
    return cell


def _fit(text, width):
    """`text`, cut short with '..' where it is wider than `width` pixels."""
    fitted = text
    while len(fitted) > 2 and cv2.getTextSize(fitted, FONT, FONT_SCALE, 1)[0][0] > width:
        text = text[:-1]
        fitted = text + '..'
    return fitted
