"""A PNG of the first training batches as the network gets them (`train.py --show_batches`).

Each batch is a title line and P rows of K images, the identity's name at the left of its row,
every image exactly the pipeline's pixels (rounded to 8 bits) after resizing, flip, crop and
random erasing: what a user checks before spending hours on a training with those settings.
"""
import os

import cv2
import numpy as np

from tripletreid.errors import InputError
from tripletreid.files import atomic_path, check_output

GAP = 2          # white pixels between images
PAD = 6          # white pixels around a text
FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.4
INK = (0, 0, 0)


def check_path(path):
    """Fail before any work if the PNG `path` cannot be written or exists already."""
    check_output(path, overwrite=True)
    if os.path.exists(path):
        raise InputError(f'--show_batches {path} exists already; remove it or choose another '
                         f'name')


def text_size(text):
    (width, height), baseline = cv2.getTextSize(text, FONT, FONT_SCALE, 1)
    return width, height + baseline


def batch_picture(images, names, title, batch_k, label_width, width):
    """The picture of one batch: `images` [P*K, H, W, 3] RGB in 0..255, identity-major, and the
    identity name of each row, under `title`; `width` pixels wide."""
    tile_h, tile_w = images.shape[1:3]
    rows = len(images) // batch_k
    title_h = text_size(title)[1] + 2 * PAD
    picture = np.full((title_h + rows * (tile_h + GAP), width, 3), 255, np.uint8)
    _write(picture, title, PAD, title_h - PAD)
    pixels = np.clip(np.round(images), 0, 255).astype(np.uint8)
    for index, image in enumerate(pixels):
        row, column = divmod(index, batch_k)
        top = title_h + row * (tile_h + GAP)
        left = label_width + column * (tile_w + GAP)
        picture[top:top + tile_h, left:left + tile_w] = image
        if column == 0:
            _write(picture, names[index], PAD, top + (tile_h + text_size(names[index])[1]) // 2)
    return picture


def _write(picture, text, left, bottom):
    cv2.putText(picture, text, (left, bottom), FONT, FONT_SCALE, INK, 1, cv2.LINE_AA)


def save_batches(path, batches, pids, count, seed):
    """Write the first `count` of `batches` (the pipeline's `(images, labels, rows)` of
    `seed`, from step 1 on) into the PNG `path`, each row labelled with `pids[row]`, its
    identity."""
    taken = [[t.numpy() for t in batch] for batch, _ in zip(batches, range(count))]
    names = [[str(pids[row]) for row in rows] for _, _, rows in taken]
    ks = [len(labels) // len(np.unique(labels)) for _, labels, _ in taken]
    titles = [f'seed {seed}, step {step}: P={len(batch) // k}, K={k}'
              for step, (batch, k) in enumerate(zip(names, ks), 1)]
    label_width = max(text_size(name)[0] for batch in names for name in batch) + 2 * PAD
    width = max([label_width + k * (images.shape[2] + GAP) for (images, _, _), k in
                 zip(taken, ks)] + [text_size(title)[0] + 2 * PAD for title in titles])
    pictures = [batch_picture(images, batch, title, k, label_width, width)
                for (images, _, _), batch, title, k in zip(taken, names, titles, ks)]
    ok, png = cv2.imencode('.png', cv2.cvtColor(np.vstack(pictures), cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputError(f'{path}: could not encode the batches picture')
    with atomic_path(path) as tmp:
        png.tofile(tmp)
