"""Numeric arrays from MATLAB .mat files, whichever format the file is: v5 and older (SciPy reads
them; SciPy comes with scikit-learn) or v7.3, which is HDF5 (h5py reads it, transposed, since
MATLAB stores arrays column-major). Every problem is a one-line `InputError` naming the file."""
import h5py
import numpy as np

from data.builders import required_file
from tripletreid.errors import InputError


def read_matrix(path, name):
    """The numeric variable `name` of the .mat file `path`, as MATLAB shows it (rows first).

    A file holding one variable only is read whatever that variable is called, as MATLAB's
    `importdata` does (the MARS code loads its info files so).
    """
    required_file(path, f'a .mat file with `{name}`')
    if h5py.is_hdf5(path):
        with h5py.File(path, 'r') as f:
            names = [key for key in f if not key.startswith('#')]
            data = f.get(_pick(path, name, names))
            if not isinstance(data, h5py.Dataset) or data.dtype.kind not in 'fiub':
                raise InputError(f'{path}: `{name}` is not a numeric array')
            return np.asarray(data[()]).T
    import scipy.io
    try:
        contents = scipy.io.loadmat(path)
    except (ValueError, TypeError, OSError, NotImplementedError) as error:
        raise InputError(f'{path}: not a readable MATLAB .mat file ({error})') from None
    names = [key for key in contents if not key.startswith('__')]
    data = np.asarray(contents[_pick(path, name, names)])
    if data.dtype.kind not in 'fiub':
        raise InputError(f'{path}: `{name}` is not a numeric array')
    return data


def _pick(path, name, names):
    if name in names:
        return name
    if len(names) == 1:
        return names[0]
    raise InputError(f'{path}: no variable `{name}` (found: {", ".join(names) or "none"})')


def integer_matrix(path, name, columns=None):
    """`read_matrix` checked to hold whole numbers (and `columns` columns), as int64."""
    data = read_matrix(path, name)
    if columns is not None and (data.ndim != 2 or data.shape[1] != columns):
        raise InputError(f'{path}: `{name}` must have {columns} columns, found shape '
                         f'{data.shape}')
    if data.size and not np.array_equal(data, np.round(data)):
        raise InputError(f'{path}: `{name}` holds values that are not whole numbers')
    return data.astype(np.int64)
