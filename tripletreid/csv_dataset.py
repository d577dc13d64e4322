"""Reading and checking the dataset CSVs: `identity,relative/path[,camera]` per line.

This module does not import TensorFlow: evaluation reads CSVs too and must start fast.
"""
import csv
import dataclasses
import io
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tripletreid.errors import InputError

_HEADER_WORDS = {'path', 'paths', 'file', 'filename', 'fid', 'fids', 'image', 'images',
                 'relative_path', 'img', 'filepath'}
_IMAGE_MAGIC = (b'\xff\xd8\xff', b'\x89PNG\r\n\x1a\n', b'BM', b'GIF87a', b'GIF89a')


@dataclasses.dataclass
class Dataset:
    """The rows of one CSV: identities (`pids`), relative file names (`fids`), cameras or None,
    tracklets (the optional fourth column: rows of one tracklet share it) or None."""
    csv_path: str
    pids: np.ndarray
    fids: np.ndarray
    cams: np.ndarray = None
    lines: np.ndarray = None  # the CSV line number of each row, for error messages
    tracklets: np.ndarray = None

    def where(self, i):
        """`file:line` of row `i`, for error messages."""
        return f'{self.csv_path}:{self.lines[i] if self.lines is not None else i + 1}'

    def __len__(self):
        return len(self.fids)


def decode_utf8(data, where):
    """`data` as text. A leading byte order mark (Excel's "CSV UTF-8", Notepad) is dropped, or
    it would become part of the first identity; bytes that are not UTF-8 are an `InputError`
    naming `where` and the line (counted in the whole file, not in a decoder's buffer).
    """
    try:
        return data.decode('utf-8-sig')
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b'\n') + 1
        raise InputError(f'{where}:{line}: not valid UTF-8') from None


def _read_rows(csv_path):
    """[(line where the row starts, cells)] of the CSV file; CRLF line endings are fine."""
    try:
        with open(csv_path, 'rb') as f:
            text = decode_utf8(f.read(), csv_path)
    except FileNotFoundError:
        raise InputError(f'{csv_path}: no such file') from None
    except IsADirectoryError:
        raise InputError(f'{csv_path}: is a directory, not a CSV file') from None
    except PermissionError:
        raise InputError(f'{csv_path}: not readable') from None
    reader = csv.reader(io.StringIO(text, newline=''))
    rows, line = [], 1
    try:
        for row in reader:
            rows.append((line, row))
            line = reader.line_num + 1  # a quoted field may span lines
    except csv.Error as error:
        raise InputError(f'{csv_path}:{line}: malformed CSV ({error})') from None
    return rows


def read_csv(csv_path):
    """Parse a dataset CSV strictly; every problem is an `InputError` naming file and line.

    Identities are arbitrary strings (quoted if they hold a comma). An optional third column
    gives the camera, used by the `camera` excluder for custom cross-camera evaluation, and an
    optional fourth the tracklet (video datasets: `evaluate.py --tracklets column`).
    """
    numbered = [(line, row) for line, row in _read_rows(csv_path)
                if any(cell.strip() for cell in row)]
    if not numbered:
        raise InputError(f'{csv_path}: the CSV has no rows')
    width = len(numbered[0][1])
    for line, row in numbered:
        _check_cells(csv_path, line, row)
        if len(row) not in (2, 3, 4):
            raise InputError(f'{csv_path}:{line}: expected `identity,path`, '
                             f'`identity,path,camera` or `identity,path,camera,tracklet`, '
                             f'found {len(row)} column(s)')
        if len(row) != width:
            raise InputError(f'{csv_path}:{line}: {len(row)} columns where line '
                             f'{numbered[0][0]} has {width}')
        if not row[0].strip() or not row[1].strip():
            raise InputError(f'{csv_path}:{line}: empty identity or path')
        if width >= 3 and not row[2].strip():
            raise InputError(f'{csv_path}:{line}: empty camera')
        if width == 4 and not row[3].strip():
            raise InputError(f'{csv_path}:{line}: empty tracklet')
    first_line, first = numbered[0]
    if first[1].strip().lower() in _HEADER_WORDS:
        raise InputError(f'{csv_path}:{first_line}: looks like a header row ({",".join(first)});'
                         f' the CSV must hold data rows only')
    columns = list(zip(*(row for _, row in numbered)))
    pids = np.array([cell.strip() for cell in columns[0]])
    fids = np.array([cell.strip() for cell in columns[1]])
    cams = np.array([cell.strip() for cell in columns[2]]) if width >= 3 else None
    tracklets = np.array([cell.strip() for cell in columns[3]]) if width == 4 else None
    lines = np.array([line for line, _ in numbered])
    return Dataset(csv_path, pids, fids, cams, lines, tracklets)


def shard_rows(count, index, shards):
    """The rows of the `index`-th (1-based) of `shards` consecutive parts of `count` rows, as
    a slice; the parts differ in size by one row at most."""
    return slice((index - 1) * count // shards, index * count // shards)


def subset(dataset, rows):
    """The rows `rows` (a slice or indices) of `dataset`, with their CSV line numbers."""
    def part(values):
        return None if values is None else values[rows]

    return Dataset(dataset.csv_path, part(dataset.pids), part(dataset.fids),
                   part(dataset.cams), part(dataset.lines), part(dataset.tracklets))


def _check_cells(csv_path, line, row):
    """Refuse what only a broken file gives: a line break inside a cell, or a NUL."""
    if any('\n' in cell or '\r' in cell for cell in row):
        raise InputError(f'{csv_path}:{line}: unclosed quote (a quoted cell runs past the end '
                         f'of its line)')
    if any('\0' in cell for cell in row):
        raise InputError(f'{csv_path}:{line}: NUL character (UTF-16 or binary? the CSV must be '
                         f'UTF-8 text)')


def _problem(path):
    """Why the image file at `path` cannot be used, or None if its header looks right."""
    try:
        with open(path, 'rb') as f:
            head = f.read(8)
    except FileNotFoundError:
        return 'missing'
    except IsADirectoryError:
        return 'a directory'
    except OSError as error:
        return f'unreadable ({error.strerror})'
    except ValueError:  # a NUL in the name (open() refuses it)
        return 'not a valid file name'
    if not head:
        return 'empty'
    if not head.startswith(_IMAGE_MAGIC):
        return 'not a JPEG, PNG, BMP or GIF image'
    return None


def check_images(dataset, image_root, threads=8):
    """Check that every file of `dataset` exists below `image_root` and is an image.

    Reads only the first bytes of each file (fast even for large sets); images that fail to
    decode further on are reported by the pipeline with their file name.
    """
    paths = [os.path.join(image_root, fid) for fid in dataset.fids]
    with ThreadPoolExecutor(max(1, threads)) as pool:
        problems = list(pool.map(_problem, paths))
    bad = [(i, p) for i, p in enumerate(problems) if p]
    if bad:
        i, problem = bad[0]
        more = f' (and {len(bad) - 1} more)' if len(bad) > 1 else ''
        raise InputError(f'{dataset.where(i)}: image {paths[i]} is {problem}{more}')


def read_list(name):
    """The paths of a list file (one per line; blank lines skipped; `-` reads stdin) and their
    line numbers, as a dataset without identities."""
    where = '<stdin>' if name == '-' else name
    try:
        if name == '-':
            data = sys.stdin.buffer.read()
        else:
            with open(name, 'rb') as f:
                data = f.read()
    except (FileNotFoundError, IsADirectoryError, PermissionError) as error:
        raise InputError(f'{where}: {error.strerror}') from None
    text = decode_utf8(data, where)
    rows = [(number, line.strip()) for number, line in enumerate(text.split('\n'), start=1)
            if line.strip()]
    if not rows:
        raise InputError(f'{where}: no image paths in the list')
    lines, paths = zip(*rows)
    return Dataset(where, pids=None, fids=np.array(paths), lines=np.array(lines))
