"""What all excluders share: the interface, file-name parsing and integer codes.

An excluder is built from the gallery and, given a batch of queries, says which gallery entries
each query must ignore (same person seen by the same camera, junk images, the query itself).
"""
import abc
import os

import numpy as np

from tripletreid.errors import InputError


def encode(values, vocabulary):
    """Integer codes of `values` in the sorted, unique `vocabulary`; -1 for unknown values.

    Identities, cameras and file names are compared as integers: comparing a batch of queries
    with a whole gallery of strings would cost more than the distances.
    """
    values = np.asarray(values)
    if len(vocabulary) == 0:
        return np.full(len(values), -1)
    index = np.minimum(np.searchsorted(vocabulary, values), len(vocabulary) - 1)
    return np.where(vocabulary[index] == values, index, -1)


def parse_file_names(dataset, pattern, hint, basename=True):
    """Search the compiled `pattern` in every file name of `dataset` (only its last path
    component if `basename`); return the named groups as a dict of string arrays.

    The first name that does not match is an InputError naming the CSV line and the file,
    followed by `hint` (what was expected).
    """
    groups = {name: [] for name in pattern.groupindex}
    for i, fid in enumerate(dataset.fids):
        match = pattern.search(os.path.basename(fid) if basename else fid)
        if match is None:
            raise InputError(f'{dataset.where(i)}: cannot parse the file name "{fid}"; {hint}')
        for name, values in groups.items():
            values.append(match.group(name))
    return {name: np.array(values) for name, values in groups.items()}


class Excluder(abc.ABC):
    """Built from the gallery Dataset; `keys(query_dataset)` once, then `excluder(keys[batch])`
    gives the boolean [n_query, n_gallery] mask of gallery entries each query ignores.

    Parsing every query up front reports an unreadable file name before any computing starts.
    """

    def __init__(self, gallery):
        # Column-major: each batch compares whole columns, which must be contiguous to be fast.
        self.gallery_keys = np.asfortranarray(self.keys(gallery))

    @abc.abstractmethod
    def keys(self, dataset):
        """An integer array [len(dataset), k]: what `__call__` compares, one row per image."""

    @abc.abstractmethod
    def __call__(self, query_keys):
        """The mask [len(query_keys), n_gallery] of gallery entries to ignore."""


class SameCameraExcluder(Excluder):
    """Ignores the gallery images of the query's identity taken by the query's camera, and the
    gallery junk. Keys are (identity, camera) codes; a cross-camera protocol in short."""

    def __init__(self, gallery):
        super().__init__(gallery)
        self.gallery_junk = self.junk(self.gallery_keys)

    def junk(self, keys):
        """Which images never count; none by default."""
        return np.zeros(len(keys), dtype=bool)

    def cameras(self, dataset):
        """Each image's camera as text (for pictures): the number its key holds."""
        return self.keys(dataset)[:, 1].astype(str)

    def __call__(self, query_keys):
        same_identity = query_keys[:, None, 0] == self.gallery_keys[None, :, 0]
        same_camera = query_keys[:, None, 1] == self.gallery_keys[None, :, 1]
        return (same_identity & same_camera) | self.gallery_junk
