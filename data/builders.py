"""The dataset CSV builders of `python -m data.build_csv`: the official splits of Market-1501
and DukeMTMC-reID, one sub-folder per identity, or identities (and cameras) from a regular
expression on the file paths."""
import collections
import csv
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor

import PIL.Image

from tripletreid.errors import InputError, cannot_write
from tripletreid.files import atomic_path, refuse_overwrite

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')
SPLITS = (('train', 'bounding_box_train'), ('query', 'query'), ('test', 'bounding_box_test'))
MARKET1501_NAME = re.compile(r'^(?P<identity>-1|\d+)_c(?P<camera>\d+)s\d+_\d+_\d+')
DUKE_NAME = re.compile(r'^(?P<identity>-1|\d+)_c(?P<camera>\d+)_f\d+')
FOLDER_PATH = re.compile(r'^(?P<identity>[^/]+)/')
SHOWN = 5  # how many file names an error or warning lists before giving only the count

Row = collections.namedtuple('Row', 'identity path camera')


def _names(paths):
    """The first few of `paths` and the count, so that one message line stays readable."""
    more = f' and {len(paths) - SHOWN} more' if len(paths) > SHOWN else ''
    return ', '.join(paths[:SHOWN]) + more


def _warn(message):
    print(f'{os.path.basename(sys.argv[0])}: warning: {message}', file=sys.stderr)


def list_images(folder, extensions=IMAGE_EXTENSIONS, recursive=True):
    """Sorted image paths below `folder`, relative to it with `/` separators.

    Refuses a missing or empty folder and one without images, as each of these means a wrong
    path on the command line, which would otherwise give an empty CSV and fail much later.
    """
    if not os.path.exists(folder):
        raise InputError(f'{folder}: no such folder')
    if not os.path.isdir(folder):
        raise InputError(f'{folder}: not a folder')
    if not os.listdir(folder):
        raise InputError(f'{folder}: the folder is empty')
    images, others = [], 0
    for directory, subfolders, files in os.walk(folder, followlinks=True):
        subfolders[:] = [d for d in subfolders if not d.startswith('.')] if recursive else []
        relative = os.path.relpath(directory, folder).replace(os.sep, '/')
        for name in files:
            if name.startswith('.'):
                continue
            if name.lower().endswith(extensions):
                images.append(name if relative == '.' else f'{relative}/{name}')
            else:
                others += 1
    if not images:
        where = ' (sub-folders included)' if recursive else ''
        raise InputError(f'{folder}: no {"/".join(extensions)} images found{where}; '
                         f'{others} other file(s)')
    return sorted(images)


def compile_pattern(pattern):
    """Compile a user's `--pattern`, which must name an `identity` group."""
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise InputError(f'--pattern {pattern!r}: not a regular expression ({error})') from None
    if 'identity' not in regex.groupindex:
        raise InputError(f'--pattern {pattern!r} has no named group `(?P<identity>...)`')
    return regex


def match_rows(paths, regex, what, skip_unmatched=False):
    """One `Row` per path from the `identity` (and `camera`) groups of `regex`.

    A path that does not match, or gives an empty identity or camera, is an error naming it
    (`what` says where the paths are), or with `skip_unmatched` a warning: never silently lost.
    """
    rows, unmatched = [], []
    has_camera = 'camera' in regex.groupindex
    required = ('identity', 'camera') if has_camera else ('identity',)
    for path in paths:
        match = regex.search(path)
        if match and all(match.group(group) for group in required):
            rows.append(Row(match.group('identity'), path,
                            match.group('camera') if has_camera else None))
        else:
            unmatched.append(path)
    if unmatched:
        message = (f'{what}: {len(unmatched)} of {len(paths)} image(s) do not match '
                   f'`{regex.pattern}`: {_names(unmatched)}')
        if not rows:
            raise InputError(message + '; no image gives an identity')
        if not skip_unmatched:
            raise InputError(message + '; pass --skip_unmatched to leave them out')
        _warn('left out ' + message)
    return rows


def undecodable(root, paths, threads=8):
    """The paths (relative to `root`) whose files do not decode completely, in order.

    Pillow, unlike OpenCV, refuses a truncated JPEG instead of returning a partial image.
    """
    def fails(path):
        try:
            with PIL.Image.open(os.path.join(root, path)) as image:
                image.load()
        except (OSError, SyntaxError, ValueError, PIL.Image.DecompressionBombError):
            return True
        return False

    with ThreadPoolExecutor(max(1, threads)) as pool:
        failed = list(pool.map(fails, paths))
    return [path for path, bad in zip(paths, failed) if bad]


def check_decodable(root, rows, threads=8):
    """Refuse the rows if any image does not decode: a training run would die on it later."""
    bad = undecodable(root, [row.path for row in rows], threads)
    if bad:
        raise InputError(f'{root}: {len(bad)} of {len(rows)} image(s) cannot be decoded: '
                         f'{_names(bad)}')


def write_csv(path, rows, with_camera):
    """Write `rows` atomically; the csv module quotes identities that hold commas."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except FileExistsError:
        raise InputError(f'{path}: cannot write ({folder} is a file, not a folder)') from None
    except OSError as error:
        raise cannot_write(path, error) from None
    with atomic_path(path) as tmp:
        with open(tmp, 'w', newline='', encoding='utf-8') as f:
            writer = csv.writer(f, lineterminator='\n')
            writer.writerows(row if with_camera else row[:2] for row in rows)


def summary(path, rows):
    """The one-line report of a written CSV."""
    identities = len({row.identity for row in rows})
    cameras = {row.camera for row in rows} - {None}
    camera_text = f', {len(cameras)} cameras' if cameras else ', no camera information'
    return f'{path}: {len(rows)} rows, {identities} identities{camera_text}'


def _finish(outputs, check, threads):
    """Check (optionally) and write all `(csv_path, root, rows, with_camera)`; print summaries.

    Images are checked for every output before the first is written, so a refusal leaves none.
    """
    if check:
        for _, root, rows, _ in outputs:
            check_decodable(root, rows, threads)
    for path, _, rows, with_camera in outputs:
        write_csv(path, rows, with_camera)
        print(summary(path, rows))
    return {path: rows for path, _, rows, _ in outputs}


def build_splits(dataset_root, output_dir, prefix, name_regex, overwrite=False,
                 check=False, threads=8, skip_unmatched=False):
    """Write `<prefix>_{train,query,test}.csv` of a Market-1501-style dataset to `output_dir`.

    Returns {csv_path: rows}. Follows the official CSVs: identity as in the file name, paths
    `<split folder>/<file>.jpg`, sorted, no camera column.
    """
    paths = {split: os.path.join(output_dir, f'{prefix}_{split}.csv') for split, _ in SPLITS}
    if not overwrite:
        for path in paths.values():
            refuse_overwrite(path)
    outputs = []
    for split, folder in SPLITS:
        names = list_images(os.path.join(dataset_root, folder), ('.jpg',), recursive=False)
        rows = match_rows(names, name_regex, os.path.join(dataset_root, folder), skip_unmatched)
        rows = [row._replace(path=f'{folder}/{row.path}') for row in rows]
        outputs.append((paths[split], dataset_root, rows, False))
    return _finish(outputs, check, threads)


def build_market1501(dataset_root, output_dir, **options):
    """`market1501_{train,query,test}.csv` from a Market-1501 root (see `build_splits`)."""
    return build_splits(dataset_root, output_dir, 'market1501', MARKET1501_NAME, **options)


def build_duke(dataset_root, output_dir, **options):
    """`dukeMTMC_{train,query,test}.csv` from a DukeMTMC-reID root (see `build_splits`)."""
    return build_splits(dataset_root, output_dir, 'dukeMTMC', DUKE_NAME, **options)


def build_pattern(root, output_csv, regex, overwrite=False, check=False, threads=8,
                  skip_unmatched=False):
    """Write one CSV of all images below `root`, identities (and cameras) taken by `regex`.

    Returns the rows; the camera column is written exactly when `regex` has a `camera` group.
    """
    if not overwrite:
        refuse_overwrite(output_csv)
    rows = match_rows(list_images(root), regex, root, skip_unmatched)
    outputs = [(output_csv, root, rows, 'camera' in regex.groupindex)]
    return _finish(outputs, check, threads)[output_csv]


def build_folders(root, output_csv, **options):
    """One CSV from one sub-folder per identity (the folder name) below `root`.

    Images lying directly in `root` belong to no identity and count as unmatched.
    """
    return build_pattern(root, output_csv, FOLDER_PATH, **options)
