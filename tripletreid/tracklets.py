"""Tracklets of video datasets (MARS, any other): the frames of one tracklet become one entry.

A tracklet is named by the fourth CSV column (`identity,path,camera,tracklet`; spec `column`)
or by the named group `tracklet` of a regular expression searched in each path as written in
the CSV (e.g. `(?P<tracklet>\\d{4}C\\d+T\\d+)F\\d+` for MARS names). Its embedding aggregates the
embeddings of its frames with one of `aggregators.AGGREGATORS` (the frames take the place of
test-time views); its identity and camera are those of its frames, which must all agree.
"""

import numpy as np

from tripletreid.aggregators import AGGREGATORS
from tripletreid.cli import named_pattern
from tripletreid.csv_dataset import Dataset
from tripletreid.errors import InputError

COLUMN = 'column'


def compile_spec(spec):
    """`column`, or the compiled regular expression of `--tracklets`, which must name a
    group `tracklet`."""
    if spec == COLUMN:
        return COLUMN
    return named_pattern('--tracklets', spec, 'tracklet', alternative='`column`')


def tracklet_keys(dataset, spec):
    """The tracklet of each row of `dataset` (`spec`: `column` or a compiled regex)."""
    if spec == COLUMN:
        if dataset.tracklets is None:
            raise InputError(f'{dataset.csv_path}: --tracklets column needs a fourth CSV column '
                             '(identity,path,camera,tracklet)')
        return dataset.tracklets
    keys = []
    for i, fid in enumerate(dataset.fids):
        match = spec.search(fid)
        if match is None or not match.group('tracklet'):
            raise InputError(f'{dataset.where(i)}: --tracklets {spec.pattern!r} finds no '
                             f'tracklet in "{fid}"')
        keys.append(match.group('tracklet'))
    return np.array(keys)


def _check_constant(dataset, values, what, keys, first, inverse):
    """Refuse a tracklet whose frames disagree on `values` (identities or cameras)."""
    if values is None:
        return
    differ = np.flatnonzero(values != values[first][inverse])
    if len(differ):
        i, j = differ[0], first[inverse[differ[0]]]
        raise InputError(f'{dataset.where(i)}: tracklet {keys[i]} has {what} {values[i]} here '
                         f'but {values[j]} at {dataset.where(j)}')


def aggregate(dataset, embeddings, spec, aggregator='mean'):
    """(tracklet Dataset, tracklet embeddings) of the frame rows `dataset` and `embeddings`.

    Tracklets come in the order of their first frame; each entry takes the identity, camera,
    CSV line and path of that first frame (so that excluders reading file names and the ranked
    list picture work as for images) and its `tracklets` holds the tracklet names.
    """
    keys = tracklet_keys(dataset, compile_spec(spec) if isinstance(spec, str) else spec)
    names, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    _check_constant(dataset, dataset.pids, 'identity', keys, first, inverse)
    _check_constant(dataset, dataset.cams, 'camera', keys, first, inverse)
    combine = AGGREGATORS[aggregator]
    by_tracklet = np.argsort(inverse, kind='stable')
    frames = np.split(by_tracklet, np.cumsum(np.bincount(inverse, minlength=len(names)))[:-1])
    pooled = np.stack([combine(embeddings[rows][:, None, :])[0] for rows in frames])
    order = np.argsort(first, kind='stable')  # from sorted names to first appearance
    rows = first[order]

    def take(values):
        return None if values is None else values[rows]

    tracklets = Dataset(dataset.csv_path, take(dataset.pids), take(dataset.fids),
                        take(dataset.cams), take(dataset.lines), names[order])
    return tracklets, pooled[order]
