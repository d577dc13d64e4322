"""What an embeddings file knows of where it came from: the image of each row, and the model.

Every embeddings file written now (embed.py, embed_files.py, a search index) holds `paths`,
the image path of each row as the CSV (or list) gives it, so a file given with another CSV is
refused rather than evaluated row by row against the wrong images. Files written before (and
the official code's) hold no paths: they still load, with a warning that they cannot be
checked. The model's fingerprint (network, head, sizes, test-time views, aggregator,
checkpoint step) is stored as the JSON attribute `fingerprint`, so that an index refuses
embeddings of another model.
"""
import json
import os
import re
import sys

import numpy as np

from tripletreid.errors import InputError

PATHS = 'paths'
FINGERPRINT = 'fingerprint'
SHARD = 'shard'          # attribute "I/N" of embed.py --shard
DATASET_ROWS = 'dataset_rows'  # attribute: rows of the whole CSV a shard is part of
FIRST_ROW = 'first_row'  # attribute: the CSV row of a shard's first embedding


def encode_paths(fids):
    """The paths as UTF-8 bytes, what HDF5 stores."""
    return np.char.encode(np.asarray(fids, dtype=str), 'utf-8')


def decode_paths(stored):
    return np.char.decode(np.asarray(stored, dtype=bytes), 'utf-8')


def stored_paths(h5file):
    """The `paths` of an open HDF5 file as str, or None if it holds none."""
    if PATHS not in h5file:
        return None
    return decode_paths(h5file[PATHS][()])


def check_rows(path, paths, dataset):
    """Refuse the embeddings file `path` (its stored `paths`, or None) if its rows are not the
    images of `dataset`, in order; warn that a file without paths cannot be checked."""
    if paths is None:
        print(f'warning: {path} stores no image paths (written before they were, or by the '
              f'official code): its rows cannot be checked against {dataset.csv_path}',
              file=sys.stderr)
        return
    if len(paths) != len(dataset):
        raise InputError(f'{path} holds the embeddings of {len(paths)} images, but '
                         f'{dataset.csv_path} has {len(dataset)} rows: they belong to another '
                         f'CSV')
    differ = np.flatnonzero(paths != dataset.fids)
    if len(differ):
        i = differ[0]
        raise InputError(f'{path} belongs to another CSV than {dataset.csv_path}: its row {i} '
                         f'is {paths[i]}, {dataset.where(i)} is {dataset.fids[i]} '
                         f'({len(differ)} rows differ)')


def checkpoint_step(checkpoint):
    """The step of a checkpoint prefix `.../checkpoint-<step>` (None if it has none)."""
    match = re.search(r'-(\d+)$', os.path.basename(checkpoint or ''))
    return int(match.group(1)) if match else None


def fingerprint(spec, view_names, aggregator, checkpoint):
    """The model and test-time views behind embeddings, as a dict of plain values:
    `spec` a ModelSpec, `view_names` the Views' names, `checkpoint` the checkpoint prefix."""
    return {
        'model_name': spec.model_name, 'head_name': spec.head_name,
        'embedding_dim': int(spec.embedding_dim),
        'input_size': [int(spec.net_input_height), int(spec.net_input_width)],
        'pre_crop_size': [int(spec.pre_crop_height), int(spec.pre_crop_width)],
        'last_stride': int(spec.last_stride),
        'views': list(view_names), 'aggregator': aggregator if len(view_names) > 1 else None,
        'checkpoint_step': checkpoint_step(checkpoint),
    }


def dumps(print_):
    return json.dumps(print_, sort_keys=True)


def loads(text, path):
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        raise InputError(f'{path}: its model fingerprint is not valid JSON') from None
    if not isinstance(value, dict):
        raise InputError(f'{path}: its model fingerprint is not a JSON object')
    return value


def stored_fingerprint(h5file, path):
    """The fingerprint dict of an open HDF5 file, or None if it has none."""
    text = h5file.attrs.get(FINGERPRINT)
    if text is None:
        return None
    return loads(text.decode() if isinstance(text, bytes) else text, path)


def difference(ours, theirs):
    """The first key (sorted) where two fingerprints differ, as `key: A vs B`, or None."""
    for key in sorted(set(ours) | set(theirs)):
        if ours.get(key) != theirs.get(key):
            return f'{key} {ours.get(key)!r} vs {theirs.get(key)!r}'
    return None


def views_of(print_):
    """(flip, crop) of the Views whose names a fingerprint lists."""
    names = print_['views']
    flip = any(name.startswith('original_flip') for name in names)
    crop = names[0].split('_', 1)[1]
    if crop in ('top_left', 'top_right', 'bottom_left', 'bottom_right') or len(
            {name.split('_', 2 if name.startswith('original_flip') else 1)[-1]
             for name in names}) == 5:
        crop = 'five'
    return flip, {'resize': None, 'center': 'center', 'avgpool': 'avgpool'}.get(crop, crop)
