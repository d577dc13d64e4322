"""The dataset CSV builders of `python -m data.build_csv`: the official splits of Market-1501
and DukeMTMC-reID, one sub-folder per identity, or identities (and cameras) from a regular
expression on the file paths; and what the builders of the other datasets (msmt17.py, cuhk03.py,
mars.py, vehicles.py, merge.py) share: list files, file checks, atomic writing, summaries."""
import collections
import csv
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor

import PIL.Image

from tripletreid import progress
from tripletreid.cli import named_pattern
from tripletreid.errors import InputError, cannot_write
from tripletreid.files import atomic_path, refuse_overwrite

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')
SPLITS = (('train', 'bounding_box_train'), ('query', 'query'), ('test', 'bounding_box_test'))
MARKET1501_NAME = re.compile(r'^(?P<identity>-1|\d+)_c(?P<camera>\d+)s\d+_\d+_\d+')
DUKE_NAME = re.compile(r'^(?P<identity>-1|\d+)_c(?P<camera>\d+)_f\d+')
FOLDER_PATH = re.compile(r'^(?P<identity>[^/]+)/')
SHOWN = 5  # how many file names an error or warning lists before giving only the count

Row = collections.namedtuple('Row', 'identity path camera tracklet', defaults=(None,))
ListEntry = collections.namedtuple('ListEntry', 'line name label')


def _names(paths):
    """The first few of `paths` and the count, so that one message line stays readable."""
    more = f' and {len(paths) - SHOWN} more' if len(paths) > SHOWN else ''
    return ', '.join(paths[:SHOWN]) + more


def warn(message):
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
    return named_pattern('--pattern', pattern, 'identity')


def compile_camera_pattern(pattern):
    """Compile a user's `--camera_pattern`, which must name a `camera` group."""
    return named_pattern('--camera_pattern', pattern, 'camera')


def match_rows(paths, regex, what, skip_unmatched=False, camera_regex=None):
    """One `Row` per path from the `identity` group of `regex`, and the `camera` group of
    `camera_regex` (default: of `regex`, if it has one), each searched in the path.

    A path that does not match, or gives an empty identity or camera, is an error naming it
    (`what` says where the paths are), or with `skip_unmatched` a warning: never silently lost.
    """
    rows, unmatched = [], []
    if camera_regex is None and 'camera' in regex.groupindex:
        camera_regex = regex
    for path in paths:
        match = regex.search(path)
        camera = match if camera_regex is regex else camera_regex and camera_regex.search(path)
        if match and match.group('identity') and (camera_regex is None or (
                camera and camera.group('camera'))):
            rows.append(Row(match.group('identity'), path, camera and camera.group('camera')))
        else:
            unmatched.append(path)
    if unmatched:
        patterns = ' and '.join(f'`{r.pattern}`' for r in dict.fromkeys((regex, camera_regex))
                                if r is not None)
        message = (f'{what}: {len(unmatched)} of {len(paths)} image(s) do not match '
                   f'{patterns}: {_names(unmatched)}')
        if not rows:
            raise InputError(message + '; no image gives an identity')
        if not skip_unmatched:
            raise InputError(message + '; pass --skip_unmatched to leave them out')
        warn('left out ' + message)
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

    bar = progress.bar(len(paths), f'Checking the images of {root}')
    failed = []
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for bad in pool.map(fails, paths):
            failed.append(bad)
            bar.update()
    bar.close()
    return [path for path, bad in zip(paths, failed) if bad]


def check_decodable(root, rows, threads=8):
    """Refuse the rows if any image does not decode: a training run would die on it later."""
    bad = undecodable(root, [row.path for row in rows], threads)
    if bad:
        raise InputError(f'{root}: {len(bad)} of {len(rows)} image(s) cannot be decoded: '
                         f'{_names(bad)}')


def write_csv(path, rows, with_camera):
    """Write `rows` atomically; the csv module quotes identities that hold commas. The tracklet
    column follows the camera where the rows have tracklets."""
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
            width = 2 + bool(with_camera) + (bool(rows) and rows[0].tracklet is not None)
            writer.writerows(row[:width] for row in rows)


def counted(count, singular, plural=None):
    """`1 identity`, `2 identities`: a count and its noun."""
    return f'{count} {singular if count == 1 else plural or singular + "s"}'


def summary(path, rows):
    """The one-line report of a written CSV."""
    identities = counted(len({row.identity for row in rows}), 'identity', 'identities')
    cameras = {row.camera for row in rows} - {None}
    camera_text = f', {counted(len(cameras), "camera")}' if cameras else \
        ', no camera information'
    tracklets = {row.tracklet for row in rows} - {None}
    tracklet_text = f', {counted(len(tracklets), "tracklet")}' if tracklets else ''
    return f'{path}: {counted(len(rows), "row")}, {identities}{camera_text}{tracklet_text}'


def finish(outputs, check, threads):
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


def output_paths(output_dir, prefix, splits, overwrite):
    """{split: `<output_dir>/<prefix>_<split>.csv`}, refused if one exists and not `overwrite`."""
    paths = {split: os.path.join(output_dir, f'{prefix}_{split}.csv') for split in splits}
    if not overwrite:
        for path in paths.values():
            refuse_overwrite(path)
    return paths


def build_splits(dataset_root, output_dir, prefix, name_regex, splits=SPLITS, extension='.jpg',
                 with_camera=False, overwrite=False, check=False, threads=8,
                 skip_unmatched=False):
    """Write `<prefix>_<split>.csv` of a Market-1501-style dataset to `output_dir`, one per
    `(split, folder)` of `splits` (folders relative to `dataset_root`).

    Returns {csv_path: rows}. Follows the official CSVs: identity as in the file name, paths
    `<split folder>/<file><extension>`, sorted; the camera column only `with_camera`.
    """
    paths = output_paths(output_dir, prefix, [split for split, _ in splits], overwrite)
    outputs = []
    for split, folder in splits:
        names = list_images(os.path.join(dataset_root, folder), (extension,), recursive=False)
        rows = match_rows(names, name_regex, os.path.join(dataset_root, folder), skip_unmatched)
        rows = [row._replace(path=f'{folder}/{row.path}') for row in rows]
        outputs.append((paths[split], dataset_root, rows, with_camera))
    return finish(outputs, check, threads)


def required_file(path, what=''):
    """`path`, refused with one line if it is not a file (`what` says what it should hold)."""
    if not os.path.isfile(path):
        problem = 'not a file' if os.path.exists(path) else 'no such file'
        raise InputError(f'{path}: {problem}{what and f" (expected {what})"}')
    return path


def read_text_lines(path):
    """[(line number, stripped text)] of the non-blank lines of a UTF-8 text file."""
    required_file(path)
    try:
        with open(path, 'rb') as f:
            text = f.read().decode('utf-8-sig')
    except UnicodeDecodeError:
        raise InputError(f'{path}: not UTF-8 text') from None
    except OSError as error:
        raise InputError(f'{path}: cannot read ({error.strerror})') from None
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1)
            if line.strip()]


def read_list_file(path, example):
    """The `ListEntry(line, name, label)` of a list file of `<image> <label>` lines (MSMT17's
    `list_*.txt`, VehicleID's `*_list*.txt`); the label must be an integer. `example` shows a
    good line in the error of a malformed one."""
    entries = []
    for number, text in read_text_lines(path):
        fields = text.split()
        if len(fields) != 2 or not re.fullmatch(r'-?\d+', fields[1]):
            raise InputError(f'{path}:{number}: expected `<image> <integer label>` like '
                             f'`{example}`, found {text!r}')
        entries.append(ListEntry(number, *fields))
    if not entries:
        raise InputError(f'{path}: the list is empty')
    return entries


def check_listed(root, paths, where):
    """Refuse the first of `paths` (relative to `root`) that is not a file, naming
    `where[i]` (the list file and line that named it). Each folder is listed once."""
    listings = {}
    for i, path in enumerate(paths):
        folder, name = os.path.split(os.path.join(root, path))
        if folder not in listings:
            try:
                listings[folder] = set(os.listdir(folder))
            except OSError:
                listings[folder] = set()
        if name not in listings[folder]:
            raise InputError(f'{where[i]}: {os.path.join(root, path)} is missing')


def leave_out_unmatched(unmatched, total, what, skip_unmatched, expected):
    """Refuse the `(where, name)` pairs whose names are not the dataset's (the first one named,
    with its file and line), or with `skip_unmatched` warn that they are left out."""
    if not unmatched:
        return
    where, name = unmatched[0]
    if not skip_unmatched or len(unmatched) == total:
        more = f' ({len(unmatched)} of {total} names in all)' if len(unmatched) > 1 else ''
        hint = '' if len(unmatched) == total else '; pass --skip_unmatched to leave them out'
        raise InputError(f'{where}: {name!r} is not {expected}{more}{hint}')
    warn(f'left out {len(unmatched)} of {total} {what} that are not {expected}: '
          f'{_names([name for _, name in unmatched])}')


def build_market1501(dataset_root, output_dir, **options):
    """`market1501_{train,query,test}.csv` from a Market-1501 root (see `build_splits`)."""
    return build_splits(dataset_root, output_dir, 'market1501', MARKET1501_NAME, **options)


def build_duke(dataset_root, output_dir, **options):
    """`dukeMTMC_{train,query,test}.csv` from a DukeMTMC-reID root (see `build_splits`)."""
    return build_splits(dataset_root, output_dir, 'dukeMTMC', DUKE_NAME, **options)


def build_pattern(root, output_csv, regex, camera_regex=None, overwrite=False, check=False,
                  threads=8, skip_unmatched=False):
    """Write one CSV of all images below `root`, identities (and cameras) taken by `regex`
    (cameras by `camera_regex` if given; see `match_rows`).

    Returns the rows; the camera column is written exactly when there is a `camera` group.
    """
    if not overwrite:
        refuse_overwrite(output_csv)
    rows = match_rows(list_images(root), regex, root, skip_unmatched, camera_regex)
    with_camera = camera_regex is not None or 'camera' in regex.groupindex
    return finish([(output_csv, root, rows, with_camera)], check, threads)[output_csv]


def build_folders(root, output_csv, camera_regex=None, **options):
    """One CSV from one sub-folder per identity (the folder name) below `root`, cameras from
    `camera_regex` (`--camera_pattern`) if given.

    Images lying directly in `root` belong to no identity and count as unmatched.
    """
    return build_pattern(root, output_csv, FOLDER_PATH, camera_regex, **options)
