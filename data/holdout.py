"""A validation split carved from a training CSV: `python -m data.build_csv holdout`.

Some training identities are held out and split into validation queries and gallery, so that
evaluation settings (the re-ranking parameters of `tune_reranking.py`) are chosen without the
test set. As in the test protocols (Market-1501, CUHK03), each held-out identity gives one
query image per camera and the gallery all its other images; evaluated with `--excluder
camera`, a query then only counts matches from the other cameras. Without a camera column each
identity gives one query, evaluated with `--excluder diagonal` (query and gallery share no
image). Only identities that can be matched that way are held out: seen by two cameras or
more, or without cameras at least two images.
"""
import numpy as np

from data.builders import Row, finish, output_paths
from tripletreid.csv_dataset import read_csv
from tripletreid.errors import InputError

SPLITS = ('train', 'query', 'gallery')


def _rows(dataset):
    """The `Row`s of a read CSV, in its order."""
    cams = dataset.cams if dataset.cams is not None else [None] * len(dataset)
    return [Row(pid, fid, cam) for pid, fid, cam in zip(dataset.pids, dataset.fids, cams)]


def _groups(rows):
    """{identity: {camera (None without cameras): [row indices]}} in CSV order."""
    groups = {}
    for i, row in enumerate(rows):
        groups.setdefault(row.identity, {}).setdefault(row.camera, []).append(i)
    return groups


def _matchable(cameras):
    """Whether an identity's query can have a valid match (see the module docstring)."""
    if None in cameras:
        return len(cameras[None]) >= 2
    return len(cameras) >= 2


def split_holdout(rows, identities, seed, where):
    """(train rows, query rows, gallery rows): `identities` matchable identities drawn with
    `seed` are held out; of each, one image per camera (drawn too) is a query and the rest
    gallery. Every part keeps the CSV order. `where` names the CSV in errors."""
    groups = _groups(rows)
    candidates = sorted(pid for pid, cameras in groups.items() if _matchable(cameras))
    if identities >= len(groups):
        raise InputError(f'{where}: --identities {identities} would leave no identity to train '
                         f'on ({len(groups)} in all)')
    if identities > len(candidates):
        needs = 'images from two cameras' if rows[0].camera else 'two images'
        raise InputError(f'{where}: --identities {identities}, but only {len(candidates)} '
                         f'identities have {needs}')
    rng = np.random.default_rng(seed)
    held = rng.choice(len(candidates), size=identities, replace=False)
    queries = set()
    for index in sorted(held):
        for images in groups[candidates[index]].values():
            queries.add(images[rng.integers(len(images))])
    held_ids = {candidates[index] for index in held}
    train = [row for row in rows if row.identity not in held_ids]
    query = [row for i, row in enumerate(rows) if i in queries]
    gallery = [row for i, row in enumerate(rows)
               if row.identity in held_ids and i not in queries]
    return train, query, gallery


def build_holdout(train_csv, output_dir, identities, seed, prefix='holdout', overwrite=False):
    """Write `<prefix>_{train,query,gallery}.csv` to `output_dir` (see `split_holdout`); the
    paths stay relative to the training CSV's image root. Returns {csv_path: rows}."""
    dataset = read_csv(train_csv)
    if dataset.tracklets is not None:
        raise InputError(f'{train_csv}: has a tracklet column; a holdout splits images, '
                         'which would cut tracklets apart')
    paths = output_paths(output_dir, prefix, SPLITS, overwrite)
    parts = split_holdout(_rows(dataset), identities, seed, train_csv)
    with_camera = dataset.cams is not None
    written = finish([(paths[split], None, rows, with_camera)
                      for split, rows in zip(SPLITS, parts)], check=False, threads=1)
    excluder = 'camera' if with_camera else 'diagonal'
    print(f'Train on {paths["train"]}; evaluate {paths["query"]} against {paths["gallery"]} '
          f'with --excluder {excluder}.')
    return written
