"""For a query set that is also the gallery: only the query's own file is ignored."""
import numpy as np

from excluders.base import Excluder, encode


class DiagonalExcluder(Excluder):
    """Ignores the gallery entries with the query's file name (the same image)."""

    def __init__(self, gallery):
        self.vocabulary = np.unique(gallery.fids)
        super().__init__(gallery)

    def keys(self, dataset):
        return encode(dataset.fids, self.vocabulary)[:, None]

    def __call__(self, query_keys):
        return query_keys[:, None, 0] == self.gallery_keys[None, :, 0]
