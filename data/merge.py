"""One training CSV from several datasets' CSVs, to train on Market-1501 + DukeMTMC-reID + MSMT17
at once: identities (and cameras, tracklets) get the dataset's name as a prefix, so that
`0002` of one dataset and `0002` of another stay two people, and every path is made absolute or
relative to one common image root."""
import os
import re

from data.builders import Row, finish, warn
from tripletreid.csv_dataset import read_csv
from tripletreid.errors import InputError
from tripletreid.files import refuse_overwrite

SOURCE_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9.-]*$')


def _path(image_root, fid, common_root):
    """`fid` (relative to `image_root` or absolute) as an absolute path, or relative to
    `common_root` if given, with `/` separators."""
    path = os.path.abspath(os.path.join(image_root, fid))
    if common_root is not None:
        path = os.path.relpath(path, common_root)
    return path.replace(os.sep, '/')


def build_merged(output_csv, sources, image_root=None, overwrite=False, check=False,
                 threads=8):
    """Write `output_csv` from `sources`, [(name, csv path, image root of that CSV)]: identity
    `<name>_<identity>`, paths absolute or, with `image_root`, relative to it. The camera column
    is kept (as `<name>_<camera>`) only if every source has one, the tracklet column likewise.

    Returns the rows. Names are letters, digits, `.` and `-` (no `_`, which would let two
    datasets' identities meet), each used once.
    """
    if not overwrite:
        refuse_overwrite(output_csv)
    if image_root is not None and not os.path.isdir(image_root):
        raise InputError(f'--image_root {image_root}: no such folder')
    common_root = None if image_root is None else os.path.abspath(image_root)
    datasets = []
    for name, csv_path, root in sources:
        if not SOURCE_NAME.match(name):
            raise InputError(f'--source {name} {csv_path}: the name must be letters, digits, '
                             '`.` or `-` (it prefixes the identities as <name>_<identity>)')
        if name in [seen for seen, _, _ in datasets]:
            raise InputError(f'--source {name}: the name is given twice')
        if not os.path.isdir(root):
            raise InputError(f'--source {name} {csv_path} {root}: no such image folder')
        datasets.append((name, read_csv(csv_path), root))
    with_camera = all(dataset.cams is not None for _, dataset, _ in datasets)
    with_tracklet = with_camera and all(dataset.tracklets is not None
                                        for _, dataset, _ in datasets)
    if not with_camera and any(dataset.cams is not None for _, dataset, _ in datasets):
        lacking = [dataset.csv_path for _, dataset, _ in datasets if dataset.cams is None]
        warn(f'camera column left out: {", ".join(lacking)} has none')
    rows = []
    for name, dataset, root in datasets:
        for i, (pid, fid) in enumerate(zip(dataset.pids, dataset.fids)):
            rows.append(Row(f'{name}_{pid}', _path(root, fid, common_root),
                            f'{name}_{dataset.cams[i]}' if with_camera else None,
                            f'{name}_{dataset.tracklets[i]}' if with_tracklet else None))
    return finish([(output_csv, common_root or '', rows, with_camera)], check, threads)[output_csv]
