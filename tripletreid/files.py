"""Safe output: every result is written under a temporary name, then renamed, and every output
is checked before any work is done."""
import contextlib
import json
import os
import tempfile

from tripletreid.errors import InputError, cannot_write


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path`; rename it to `path` only if the block succeeds.

    A crash or Ctrl+C inside the block leaves the old file (or no file), never a truncated one;
    a failed write (a full disk, a read-only folder) is an `InputError` naming `path`.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp',
                                   dir=directory)
    except OSError as error:
        raise cannot_write(path, error) from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results should be as readable as any
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as error:
        raise cannot_write(path, error) from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path, data):
    with atomic_path(path) as tmp:
        with open(tmp, 'w') as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write('\n')


def refuse_overwrite(path, flag='--overwrite'):
    if os.path.exists(path):
        raise InputError(f'{path} exists already; pass {flag} to replace it')


def check_output(path, overwrite, flag='--overwrite'):
    """Fail before any work if `path` cannot be written: no folder for it, a folder that takes
    no files, or it exists and `overwrite` is off."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(f'{path}: no such directory {folder}')
    if not overwrite:
        refuse_overwrite(path, flag)
    try:  # by trying: root writes where permissions say no, nobody on a read-only mount
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as error:
        raise cannot_write(path, error) from None
