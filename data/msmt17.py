"""MSMT17 (Wei et al., CVPR 2018) from its list files, V1 or V2.

The dataset folder (`MSMT17_V1/` or `MSMT17_V2/`) holds `list_train.txt`, `list_val.txt`,
`list_query.txt` and `list_gallery.txt`, one `<pid folder>/<name>.jpg <pid>` per line, and the
images: V1 in `train/` (train and val lists) and `test/` (query and gallery lists), V2 in
`mask_train_v2/` and `mask_test_v2/` (the same names, faces blurred). Names read
`<pid>_<index>_<camera>_<date><time>_<n>_<m>.jpg`, e.g. `0000_000_01_0303morning_0015_0.jpg`:
the third field is the camera (01..15). Training and test identities are numbered apart (both
from 0) and are different people.
"""
import os
import re

from data.builders import (Row, check_listed, finish, leave_out_unmatched, output_paths,
                           read_list_file)
from tripletreid.errors import InputError

VERSIONS = (('MSMT17_V1', 'train', 'test'), ('MSMT17_V2', 'mask_train_v2', 'mask_test_v2'))
NAME = re.compile(r'^(?:[^/]+/)?\d+_\d+_(?P<camera>\d+)_[^/]+\.jpg$')
EXAMPLE = '0000/0000_000_01_0303morning_0015_0.jpg 0'
EXPECTED = 'an MSMT17 image like 0000/0000_000_01_0303morning_0015_0.jpg'


def _folder(dataset_root, name):
    """The sub-folder `name` of `dataset_root`, whatever its case (`mask_train_V2` happens), or
    None."""
    for entry in os.listdir(dataset_root):
        if entry.lower() == name and os.path.isdir(os.path.join(dataset_root, entry)):
            return entry
    return None


def image_folders(dataset_root):
    """(version, train folder, test folder) of the MSMT17 layout found in `dataset_root`."""
    if not os.path.isdir(dataset_root):
        raise InputError(f'{dataset_root}: no such folder')
    for version, train, test in VERSIONS:
        found = _folder(dataset_root, train), _folder(dataset_root, test)
        if all(found):
            return (version, *found)
    inside = [v for v, _, _ in VERSIONS if os.path.isdir(os.path.join(dataset_root, v))]
    hint = f'; give {os.path.join(dataset_root, inside[0])} instead' if inside else ''
    raise InputError(f'{dataset_root}: neither train/ and test/ (MSMT17_V1) nor mask_train_v2/ '
                     f'and mask_test_v2/ (MSMT17_V2) found{hint}')


def _rows(dataset_root, folder, list_name, skip_unmatched):
    """The rows of one list file: identity as listed, camera from the name, path
    `<folder>/<listed path>`; every listed image must exist."""
    list_path = os.path.join(dataset_root, list_name)
    entries = read_list_file(list_path, EXAMPLE)
    rows, where, unmatched = [], [], []
    for entry in entries:
        match = NAME.match(entry.name)
        if match is None:
            unmatched.append((f'{list_path}:{entry.line}', entry.name))
            continue
        rows.append(Row(entry.label, f'{folder}/{entry.name}', match.group('camera')))
        where.append(f'{list_path}:{entry.line}')
    leave_out_unmatched(unmatched, len(entries), 'images', skip_unmatched, EXPECTED)
    check_listed(dataset_root, [row.path for row in rows], where)
    return rows


def build_msmt17(dataset_root, output_dir, with_val=False, overwrite=False, check=False,
                 threads=8, skip_unmatched=False):
    """Write `msmt17_{train,query,test}.csv` (`identity,path,camera`; test is the gallery) from
    an MSMT17 V1 or V2 folder; `with_val` adds `list_val.txt` to the training set.

    Returns {csv_path: rows}. Rows keep the list files' order; paths are relative to
    `dataset_root`, identities as the lists give them.
    """
    _, train_folder, test_folder = image_folders(dataset_root)
    paths = output_paths(output_dir, 'msmt17', ('train', 'query', 'test'), overwrite)
    train = _rows(dataset_root, train_folder, 'list_train.txt', skip_unmatched)
    if with_val:
        train += _rows(dataset_root, train_folder, 'list_val.txt', skip_unmatched)
    query = _rows(dataset_root, test_folder, 'list_query.txt', skip_unmatched)
    gallery = _rows(dataset_root, test_folder, 'list_gallery.txt', skip_unmatched)
    outputs = [(paths['train'], dataset_root, train, True),
               (paths['query'], dataset_root, query, True),
               (paths['test'], dataset_root, gallery, True)]
    return finish(outputs, check, threads)
