"""MARS (Zheng et al., ECCV 2016), the video dataset: frames for training, tracklets for testing.

The dataset folder holds `bbox_train/<pid>/` and `bbox_test/<pid>/` with the frames, named
`<pid>C<camera>T<tracklet>F<frame>.jpg` (`0001C1T0001F001.jpg`; pid `0000` the distractors and
`00-1` the junk), and `info/` with `train_name.txt` and `test_name.txt` (the frames in order),
`tracks_train_info.mat` and `tracks_test_info.mat` (one row per tracklet: first and last frame,
1-based rows of the name list, identity, camera) and `query_IDX.mat` (the query tracklets, 1-based
rows of the test tracks), as the official MARS-evaluation code reads them.

Every CSV row is a frame: `identity,path,camera,tracklet`, the tracklet being its row in the
tracks file. The official evaluation ranks, for each query tracklet, every test tracklet
(the queries themselves included), ignoring junk (-1) and the query identity's tracklets from
the query camera; the distractors (0000) are ordinary non-matching gallery tracklets. So the
gallery CSV (`mars_test.csv`) holds every test tracklet; `evaluate.py --tracklets column
--excluder mars` then scores the protocol.
"""
import os
import re

import numpy as np

from data.builders import Row, check_listed, finish, output_paths, read_text_lines, warn
from data.matfiles import integer_matrix
from tripletreid.errors import InputError

NAME = re.compile(r'^(?P<pid>\d{4}|00-1)C(?P<camera>\d+)T\d+F\d+\.jpg$')
JUNK = -1


def _identity(pid):
    """The CSV identity of a MARS pid: `0001`, `0000` (distractors), `-1` (junk)."""
    return '-1' if pid == JUNK else f'{pid:04d}'


def _names(path):
    """[(line, frame name)] of a MARS name list, every name checked."""
    names = read_text_lines(path)
    for line, name in names:
        if not NAME.match(name):
            raise InputError(f'{path}:{line}: {name!r} is not a MARS frame name like '
                             '0001C1T0001F001.jpg')
    if not names:
        raise InputError(f'{path}: the list is empty')
    return names


def _tracklet_rows(tracks, tracks_path, names, names_path, folder, rows_of=None):
    """The frame rows of the tracklets `rows_of` (0-based rows of `tracks`; all by default).

    Each tracklet's frames must exist in the name list and carry the tracklet's identity and
    camera, else the error names the tracks file's row and the name list's line.
    """
    rows = []
    for r in range(len(tracks)) if rows_of is None else rows_of:
        start, end, pid, camera = (int(value) for value in tracks[r])
        where = f'{tracks_path}: row {r + 1}'
        if not 1 <= start <= end <= len(names):
            raise InputError(f'{where}: frames {start}..{end} are not rows of {names_path} '
                             f'(1..{len(names)})')
        for line, name in names[start - 1:end]:
            match = NAME.match(name)
            named_pid = JUNK if match.group('pid') == '00-1' else int(match.group('pid'))
            if (named_pid, int(match.group('camera'))) != (pid, camera):
                raise InputError(f'{where} gives identity {pid} and camera {camera}, but frame '
                                 f'{names_path}:{line} is {name}')
            rows.append(Row(_identity(pid), f'{folder}/{name[:4]}/{name}', str(camera),
                            f'{r + 1:05d}'))
    return rows


def build_mars(dataset_root, output_dir, overwrite=False, check=False, threads=8,
               skip_unmatched=False):
    """Write `mars_train.csv` (the training frames; junk tracklets left out), `mars_query.csv`
    (the frames of the query tracklets) and `mars_test.csv` (the frames of every test tracklet,
    the official gallery). Returns {csv_path: rows}; paths relative to `dataset_root`.
    """
    del skip_unmatched  # every MARS name is checked against the tracks files
    info = os.path.join(dataset_root, 'info')
    paths = output_paths(output_dir, 'mars', ('train', 'query', 'test'), overwrite)
    files = {name: os.path.join(info, name) for name in (
        'train_name.txt', 'test_name.txt', 'tracks_train_info.mat', 'tracks_test_info.mat',
        'query_IDX.mat')}
    train_names = _names(files['train_name.txt'])
    test_names = _names(files['test_name.txt'])
    train_tracks = integer_matrix(files['tracks_train_info.mat'], 'track_train_info', 4)
    test_tracks = integer_matrix(files['tracks_test_info.mat'], 'track_test_info', 4)
    query_index = integer_matrix(files['query_IDX.mat'], 'query_IDX').ravel()
    bad = (query_index < 1) | (query_index > len(test_tracks))
    if bad.any():
        raise InputError(f'{files["query_IDX.mat"]}: query {query_index[bad][0]} is not a row of '
                         f'{files["tracks_test_info.mat"]} (1..{len(test_tracks)})')
    if len(np.unique(query_index)) != len(query_index):
        raise InputError(f'{files["query_IDX.mat"]}: a query tracklet is listed twice')

    junk = train_tracks[:, 2] == JUNK
    if junk.any():
        warn(f'left out {int(junk.sum())} junk tracklet(s) (identity -1) of the training set')
    train = _tracklet_rows(train_tracks, files['tracks_train_info.mat'], train_names,
                           files['train_name.txt'], 'bbox_train', np.flatnonzero(~junk))
    query = _tracklet_rows(test_tracks, files['tracks_test_info.mat'], test_names,
                           files['test_name.txt'], 'bbox_test', query_index - 1)
    gallery = _tracklet_rows(test_tracks, files['tracks_test_info.mat'], test_names,
                             files['test_name.txt'], 'bbox_test')
    for names, names_path, folder in ((train_names, files['train_name.txt'], 'bbox_train'),
                                      (test_names, files['test_name.txt'], 'bbox_test')):
        check_listed(dataset_root, [f'{folder}/{name[:4]}/{name}' for _, name in names],
                     [f'{names_path}:{line}' for line, _ in names])
    outputs = [(paths['train'], dataset_root, train, True),
               (paths['query'], dataset_root, query, True),
               (paths['test'], dataset_root, gallery, True)]
    return finish(outputs, check, threads)
