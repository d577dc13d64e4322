"""Loading backbone weights from a file the user gives (`--initial_checkpoint`)."""
import os
import tempfile

import h5py

from tripletreid.errors import InputError


def _variables(path):
    """{variable path: shape} of a Keras `.weights.h5` file."""
    found = {}
    with h5py.File(path, 'r') as f:
        f.visititems(lambda name, obj: found.__setitem__(name, obj.shape)
                     if isinstance(obj, h5py.Dataset) else None)
    return found


def load_keras_weights(backbone, path):
    """Load a `.weights.h5` file saved from the same architecture into `backbone`.

    Keras matches weights by position, so a file from another layout with the same shapes
    would load silently: the file's variables (paths and shapes) must equal the backbone's.
    """
    if not path.endswith('.weights.h5'):
        raise InputError(f'--initial_checkpoint {path}: expected a Keras `.weights.h5` file')
    try:
        theirs = _variables(path)
    except OSError as error:
        raise InputError(f'--initial_checkpoint {path}: not an HDF5 weights file '
                         f'({error})') from None
    with tempfile.TemporaryDirectory() as tmp:
        ours_path = os.path.join(tmp, 'ours.weights.h5')
        backbone.save_weights(ours_path)
        ours = _variables(ours_path)
    for name in sorted(set(ours) | set(theirs)):
        if ours.get(name) != theirs.get(name):
            raise InputError(
                f'--initial_checkpoint {path} does not fit backbone {backbone.name}: variable '
                f'{name} has shape {theirs.get(name)} in the file, {ours.get(name)} in the model')
    backbone.load_weights(path)


def build_with_own_loader(build, name, path):
    """Call a builder that loads `path` itself (Keras Applications), with a one-line error."""
    try:
        return build(weights=path)
    except (ValueError, OSError) as error:
        text = str(error).strip()
        first_line = text.splitlines()[0] if text else type(error).__name__
        raise InputError(f'--initial_checkpoint {path} does not fit backbone {name}: '
                         f'{first_line}') from None
