"""Nearest gallery entries of query embeddings: exact (chunked BLAS) or Faiss (flat, IVF, HNSW).

Exact search, in memory bounded whatever the gallery size: queries go `batch_size` at a time
against `chunk` gallery rows at a time. A float32 matrix product (|q|^2 + |g|^2 - 2 q.g, or
the sum of |q - g| for cityblock) finds the candidates: every entry whose float32 distance is
within twice a rounding bound E of the k-th smallest so far (E bounds the float32 error:
(D + 8) 2^-22 (|q| + max |g|)^2, twice the usual worst-case bound). The true k nearest are among
them, whatever the rounding: if entry i is one of them, f(i) <= d(i) + E <= d_k + E, and the k
entries of smallest f have d <= t_k + E, so d_k <= t_k + E and f(i) <= t_k + 2E. The candidates'
distances are then computed exactly in float64 from the differences, and ranked by (distance,
gallery index): ties come in gallery order, as evaluate.py ranks them.

Faiss backends return their k nearest (approximate for IVF and HNSW), whose distances are then
computed in float64 as above and ranked alike. Only the euclidean metrics (squared L2 inside).

Excluding (`query_groups`, `gallery_groups`: integer codes, e.g. cameras; -1 for unknown): an
entry of the query's own group is never returned.
"""
import dataclasses

import numpy as np

from tripletreid import progress
from tripletreid.errors import InputError

CHUNK = 16384  # gallery rows per float32 product: batch x CHUNK x 4 bytes
EXCLUDED = -1  # group code that excludes nothing (unknown camera)


@dataclasses.dataclass
class Results:
    """`indices` [Q, k] gallery rows (-1 where fewer were found), `distances` [Q, k] (the
    metric's own: euclidean not squared; inf where none)."""
    indices: np.ndarray
    distances: np.ndarray


def true_distances(squared, metric):
    """The metric's distance from what the search ranks (squared for euclidean)."""
    return np.sqrt(squared) if metric == 'euclidean' else squared


def exact_distances(gallery, queries, rows, cols, metric):
    """float64 distances of the pairs (queries[rows], gallery[cols]) from their differences,
    squared for both euclidean metrics."""
    difference = gallery[cols].astype(np.float64) - queries[rows].astype(np.float64)
    if metric == 'cityblock':
        return np.abs(difference).sum(axis=1)
    return np.einsum('ij,ij->i', difference, difference)


def rank_pairs(rows, cols, values, count, k):
    """Results of the pairs (query row, gallery col, distance): per row the k smallest
    distances, ties by gallery col."""
    indices = np.full((count, k), -1, dtype=np.int64)
    distances = np.full((count, k), np.inf)
    order = np.lexsort((cols, values, rows))
    rows, cols, values = rows[order], cols[order], values[order]
    starts = np.searchsorted(rows, np.arange(count))
    position = np.arange(len(rows)) - starts[rows]
    keep = position < k
    indices[rows[keep], position[keep]] = cols[keep]
    distances[rows[keep], position[keep]] = values[keep]
    return indices, distances


class ExactSearch:
    """Exact k-nearest search in a float32 gallery [N, D] (kept, not copied)."""

    def __init__(self, gallery, metric, batch_size=1024, chunk=CHUNK):
        self.gallery = np.asarray(gallery, dtype=np.float32)
        self.metric = metric
        self.batch_size = batch_size
        self.chunk = chunk
        gallery64 = self.gallery
        if metric == 'cityblock':
            self._norms = None
            self._max_norm = max((float(np.abs(self.gallery[i:i + chunk]).sum(1).max())
                                  for i in range(0, len(self.gallery), chunk)), default=0.0)
        else:
            self._norms = np.concatenate([
                np.einsum('ij,ij->i', *(gallery64[i:i + chunk].astype(np.float64),) * 2)
                for i in range(0, len(self.gallery), chunk)]).astype(np.float32)
            self._max_norm = float(np.sqrt(self._norms.max(initial=0.0)))
        self._gamma = (self.gallery.shape[1] + 8) * 2.0 ** -22

    def search(self, queries, k, query_groups=None, gallery_groups=None):
        queries = np.asarray(queries, dtype=np.float32)
        parts = [self._search_batch(queries[start:start + self.batch_size], k,
                                    None if query_groups is None else
                                    query_groups[start:start + self.batch_size], gallery_groups)
                 for start in range(0, len(queries), self.batch_size)]
        if not parts:
            return Results(np.zeros((0, k), np.int64), np.zeros((0, k)))
        return Results(np.concatenate([p[0] for p in parts]),
                       true_distances(np.concatenate([p[1] for p in parts]), self.metric))

    def _coarse(self, queries, start, stop):
        chunk = self.gallery[start:stop]
        if self.metric == 'cityblock':
            total = np.zeros((len(queries), len(chunk)), np.float32)
            for column in range(chunk.shape[1]):
                total += np.abs(queries[:, column, None] - chunk[:, column])
            return total
        product = queries @ chunk.T
        product *= -2.0
        product += self._query_norms[:, None]
        product += self._norms[start:stop]
        return product

    def _search_batch(self, queries, k, query_groups, gallery_groups):
        count = len(queries)
        if self.metric == 'cityblock':
            self._query_norms = None
            scale = np.abs(queries.astype(np.float64)).sum(1) + self._max_norm
        else:
            norms = np.einsum('ij,ij->i', *(queries.astype(np.float64),) * 2)
            self._query_norms = norms.astype(np.float32)
            scale = (np.sqrt(norms) + self._max_norm) ** 2
        margin = 2 * self._gamma * scale  # 2E per query
        threshold = np.full(count, np.inf)
        rows = cols = values = np.zeros(0)
        rows, cols = rows.astype(np.int64), cols.astype(np.int64)
        for start in range(0, len(self.gallery), self.chunk):
            stop = min(start + self.chunk, len(self.gallery))
            coarse = self._coarse(queries, start, stop)
            if query_groups is not None:
                same = ((query_groups[:, None] == gallery_groups[start:stop]) &
                        (query_groups[:, None] != EXCLUDED))
                coarse[same] = np.nan  # never a candidate: nan <= x is False
            unset = np.flatnonzero(np.isinf(threshold))
            if len(unset) and stop - start >= k:
                kth = np.partition(np.where(np.isnan(coarse[unset]), np.inf, coarse[unset]),
                                   k - 1, axis=1)[:, k - 1]
                threshold[unset] = kth + margin[unset]
            new_rows, new_cols = np.nonzero(coarse <= threshold[:, None].astype(np.float32))
            rows = np.concatenate([rows, new_rows])
            cols = np.concatenate([cols, new_cols + start])
            values = np.concatenate([values, coarse[new_rows, new_cols]])
            rows, cols, values, threshold = _prune(rows, cols, values, threshold, margin, k,
                                                   count)
        exact = exact_distances(self.gallery, queries, rows, cols, self.metric)
        return rank_pairs(rows, cols, exact, count, k)


def _prune(rows, cols, values, threshold, margin, k, count):
    """Lower each row's threshold to its k-th smallest candidate + 2E; drop those above it."""
    order = np.lexsort((values, rows))
    rows, cols, values = rows[order], cols[order], values[order]
    starts = np.searchsorted(rows, np.arange(count))
    sizes = np.bincount(rows, minlength=count)
    full = np.flatnonzero(sizes >= k)
    threshold = threshold.copy()
    threshold[full] = np.minimum(threshold[full], values[starts[full] + k - 1] + margin[full])
    keep = values <= threshold[rows]
    return rows[keep], cols[keep], values[keep], threshold


# Faiss.

FAISS_KINDS = ('flat', 'ivf', 'hnsw')


@dataclasses.dataclass(frozen=True)
class FaissOptions:
    """Build parameters (part of the saved structure) and search parameters (not)."""
    kind: str = 'flat'
    nlist: int = 1024            # IVF: coarse clusters
    nprobe: int = 16             # IVF: clusters searched
    hnsw_m: int = 32             # HNSW: links per node
    ef_construction: int = 80    # HNSW: build beam
    ef_search: int = 64          # HNSW: search beam

    def build_key(self):
        """What the saved structure must have been built with."""
        return {'flat': 'flat', 'ivf': f'ivf{self.nlist}',
                'hnsw': f'hnsw{self.hnsw_m}_{self.ef_construction}'}[self.kind]


def import_faiss():
    try:
        import faiss
    except ImportError:
        raise InputError('--backend faiss needs Faiss: pip install -e ".[search]" '
                         '(faiss-cpu)') from None
    return faiss


def build_faiss(gallery, options, seed=0, quiet=False):
    """A Faiss structure of the float32 gallery (squared L2), with a progress line (an HNSW
    graph of a million embeddings takes minutes) unless `quiet`."""
    faiss = import_faiss()
    dim = gallery.shape[1]
    if options.kind == 'flat':
        structure = faiss.IndexFlatL2(dim)
    elif options.kind == 'ivf':
        if len(gallery) < options.nlist:
            raise InputError(f'--nlist {options.nlist} is more than the {len(gallery)} gallery '
                             'entries')
        structure = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, options.nlist)
        rng = np.random.default_rng(seed)
        sample = gallery[np.sort(rng.choice(len(gallery), min(len(gallery),
                                                              options.nlist * 64),
                                            replace=False))]
        structure.train(np.ascontiguousarray(sample))
    else:
        structure = faiss.IndexHNSWFlat(dim, options.hnsw_m)
        structure.hnsw.efConstruction = options.ef_construction
    bar = progress.bar(len(gallery), f'Building the Faiss {options.kind} index',
                       unit='embedding', quiet=quiet)
    for start in range(0, len(gallery), 1 << 16):
        chunk = gallery[start:start + (1 << 16)]
        structure.add(np.ascontiguousarray(chunk))
        bar.update(len(chunk))
    bar.close()
    return structure


def faiss_path(index_path, options):
    """Where the Faiss structure of an index is saved: beside it."""
    return f'{index_path}.{options.kind}.faiss'


def save_faiss(path, structure, options, content_id):
    """The structure, its build key and the index's content_id, in one HDF5 file (atomic)."""
    import io

    import h5py

    from tripletreid.files import atomic_path
    faiss = import_faiss()
    memory = io.BytesIO()
    with h5py.File(memory, 'w') as f:
        f.create_dataset('faiss', data=faiss.serialize_index(structure))
        f.attrs.update({'build_key': options.build_key(), 'content_id': content_id})
    with atomic_path(path) as tmp:
        with open(tmp, 'wb') as f:
            f.write(memory.getbuffer())


def load_faiss(path, options, content_id):
    """The saved structure if it was built for this content and these options, else None."""
    import h5py
    faiss = import_faiss()
    try:
        with h5py.File(path, 'r') as f:
            attrs = {key: (value.decode() if isinstance(value, bytes) else str(value))
                     for key, value in f.attrs.items()}
            if attrs.get('build_key') != options.build_key() or \
                    attrs.get('content_id') != content_id:
                return None
            return faiss.deserialize_index(f['faiss'][()])
    except (OSError, KeyError):
        return None


def faiss_structure(index_path, gallery, options, content_id, log=None):
    """The saved structure beside the index, or a new one built and saved."""
    path = faiss_path(index_path, options)
    structure = load_faiss(path, options, content_id)
    if structure is None:
        structure = build_faiss(gallery, options, quiet=log is None)
        save_faiss(path, structure, options, content_id)
        if log:
            log(f'Built the Faiss {options.build_key()} structure of {index_path} into {path}')
    return structure


class FaissSearch:
    """k-nearest search with a Faiss structure of `gallery`; the returned candidates are
    re-scored exactly (float64) and ranked by (distance, gallery index)."""

    def __init__(self, gallery, metric, structure, options):
        if metric == 'cityblock':
            raise InputError('--backend faiss searches euclidean indexes only, not cityblock')
        self.gallery = np.asarray(gallery, dtype=np.float32)
        self.metric = metric
        self.structure = structure
        self.options = options

    def _parameters(self, selector):
        faiss = import_faiss()
        if self.options.kind == 'ivf':
            return faiss.SearchParametersIVF(sel=selector, nprobe=self.options.nprobe)
        if self.options.kind == 'hnsw':
            return faiss.SearchParametersHNSW(sel=selector, efSearch=self.options.ef_search)
        return faiss.SearchParameters(sel=selector) if selector is not None else None

    def search(self, queries, k, query_groups=None, gallery_groups=None):
        faiss = import_faiss()
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        found = np.full((len(queries), k), -1, dtype=np.int64)
        groups = [(np.arange(len(queries)), None)]
        if query_groups is not None:
            groups = []
            for group in np.unique(query_groups):
                rows = np.flatnonzero(query_groups == group)
                selector = None
                if group != EXCLUDED:
                    banned = np.flatnonzero(gallery_groups == group).astype(np.int64)
                    batch = faiss.IDSelectorBatch(banned)
                    selector = faiss.IDSelectorNot(batch)
                    selector.kept_alive = batch  # Faiss holds a bare pointer to it
                groups.append((rows, selector))
        for rows, selector in groups:
            parameters = self._parameters(selector)
            _, ids = self.structure.search(queries[rows], k, params=parameters)
            found[rows] = ids
        rows, columns = np.nonzero(found >= 0)
        cols = found[rows, columns]
        exact = exact_distances(self.gallery, queries, rows, cols, self.metric)
        indices, distances = rank_pairs(rows, cols, exact, len(queries), k)
        return Results(indices, true_distances(distances, self.metric))
