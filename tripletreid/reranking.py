"""Re-ranking of query-gallery distances: k-reciprocal encoding and average query expansion.

k-reciprocal re-ranking (Zhong et al., CVPR 2017) on the joint query + gallery set, in memory
that grows linearly with its size N: the N x N distances are only ever held CHUNK rows at a
time (to find each item's k1 + 1 nearest neighbours), and the k-reciprocal encodings V are
sparse (about N x k1 x k2 non-zeros after the local query expansion). The original distance
is the metric's, as `metrics.Distances` gives it: squared for both euclidean metrics, as the
widely used reference implementation squares the euclidean distances it is given; each row is
divided by its maximum over the joint set. Ties in distance are broken by index (query rows
first, then gallery rows), so the result is deterministic.

Plain numpy and scipy.sparse; no TensorFlow.
"""
import dataclasses

import numpy as np

from tripletreid import metrics, progress
from tripletreid.errors import InputError

_SAMPLE = 4096  # entries of a row whose k-th smallest bounds the row's, in `_nearest`
_CHUNK = 256  # joint rows whose dense distances (CHUNK x N floats) are held at once
_JACCARD_TERMS = 1 << 21  # (query, gallery, feature) terms summed at once for the Jaccard


@dataclasses.dataclass(frozen=True)
class RerankOptions:
    """The paper's parameters, its defaults. k1: neighbourhood of the k-reciprocal sets; k2:
    neighbours averaged in the local query expansion; lambda_value: weight of the original
    distance against the Jaccard distance."""
    k1: int = 20
    k2: int = 6
    lambda_value: float = 0.3

    def __post_init__(self):
        """Checked here so that the command line and callers get the same one-line error."""
        if self.k1 < 1:
            raise InputError(f'--rerank_k1 {self.k1}: must be at least 1')
        if self.k2 < 1:
            raise InputError(f'--rerank_k2 {self.k2}: must be at least 1')
        if not 0 <= self.lambda_value <= 1:
            raise InputError(f'--rerank_lambda {self.lambda_value}: must be in [0, 1]')


class KReciprocal:
    """Built once from all query and gallery embeddings; then `reranker(rows, distances)`
    turns the plain distances of the queries `rows` to the gallery into re-ranked ones:
    lambda * original / row maximum + (1 - lambda) * Jaccard distance of the encodings.
    Building it shows a progress line (`progress.bar`) unless `quiet`: at MSMT17 size it takes
    minutes."""

    def __init__(self, query_embs, gallery_embs, metric, options, quiet=False):
        joint = np.vstack([query_embs, gallery_embs]).astype(np.float64)
        self.n_query = len(query_embs)
        self.options = options
        bar = progress.bar(2 * len(joint), 'Re-ranking: neighbours, then encodings', 'item',
                           quiet)
        knn, row_max = _neighbours(metrics.Distances(joint, metric), joint, options.k1 + 1,
                                   bar.update)
        self._row_max = row_max
        encodings = _encodings(joint, metric, knn, row_max, options.k1, bar.update)
        bar.close()
        encodings = _local_expansion(encodings, knn[:, :options.k2])
        self._queries = encodings[:self.n_query].tocsr()
        self._gallery_by_feature = encodings[self.n_query:].tocsc()

    def __call__(self, rows, distances):
        """weight * (distances / row maximum) + (1 - weight) * Jaccard, rounded exactly as
        written (rerank_tuning mixes the same terms), in place to spare whole-batch copies."""
        weight = self.options.lambda_value
        mixed = distances / self._row_max[rows, None]
        mixed *= weight
        jaccard = self.jaccard(rows)
        jaccard *= 1 - weight
        mixed += jaccard
        return mixed

    def jaccard(self, rows):
        """Jaccard distances [len(rows), n_gallery] between the encodings of the queries `rows`
        and of the gallery: 1 - m / (2 - m), m the sum of element-wise minima (each encoding
        sums to 1). Only the features a query holds are visited, through the gallery's
        inverted index (its encodings by column), a bounded number of terms at a time; each
        bounded part covers whole queries, so it fills their rows of m directly."""
        queries = self._queries[np.asarray(rows)]
        columns = self._gallery_by_feature
        n_gallery = columns.shape[0]
        row_of = np.repeat(np.arange(len(queries.indptr) - 1), np.diff(queries.indptr))
        sizes = np.diff(columns.indptr)[queries.indices]
        minima = np.zeros((queries.shape[0], n_gallery))  # a query without features: all 0
        for part in _parts_by_total(row_of, sizes, _JACCARD_TERMS):
            count = sizes[part]
            position = _concatenated_ranges(columns.indptr[queries.indices[part]], count)
            terms = np.minimum(np.repeat(queries.data[part], count), columns.data[position])
            first, last = row_of[part.start], row_of[part.stop - 1] + 1
            key = np.repeat(row_of[part] - first, count) * n_gallery + columns.indices[position]
            minima[first:last] = np.bincount(key, terms, minlength=(last - first) * n_gallery
                                             ).reshape(last - first, n_gallery)
        denominator = 2 - minima
        minima /= denominator
        return np.subtract(1, minima, out=minima)


def average_query_expansion(query_embs, gallery_embs, distances, excluded, n):
    """Each query replaced by the mean of itself and its `n` nearest valid gallery embeddings
    (fewer if the gallery has fewer valid entries); `distances` and `excluded` are the
    queries' [n_query, n_gallery] plain distances and excluder mask."""
    top = _nearest(np.where(excluded, np.inf, distances), min(n, distances.shape[1]))
    valid = ~np.take_along_axis(excluded, top, axis=1)
    total = query_embs + np.einsum('qn,qnd->qd', valid, gallery_embs[top])
    return total / (1 + valid.sum(axis=1))[:, None]


def _nearest(distances, k):
    """Indices of the k smallest entries of each row, in order of (distance, index): the first
    k of a stable argsort, without sorting or partitioning whole rows.

    The k-th smallest of every stride-th entry (about _SAMPLE of them) bounds the row's k-th
    smallest from above, so the entries within that bound (about k / _SAMPLE of the row) hold
    the k nearest: one comparison per entry, then the exact k-th smallest among those few and
    an ordering of the entries up to it."""
    n_rows, width = distances.shape
    k = min(k, width)
    stride = max(1, width // max(_SAMPLE, k))  # at least k sampled entries
    bound = np.partition(distances[:, ::stride], k - 1, axis=1)[:, k - 1]
    row, col = np.divmod(np.flatnonzero(distances <= bound[:, None]), width)
    value = distances[row, col]
    counts = np.bincount(row, minlength=n_rows)
    padded = np.full((n_rows, counts.max()), np.inf)
    padded[row, np.arange(len(row)) - np.repeat(np.cumsum(counts) - counts, counts)] = value
    keep = value <= np.partition(padded, k - 1, axis=1)[row, k - 1]
    row, col, value = row[keep], col[keep], value[keep]
    order = np.lexsort((col, value, row))
    row, col = row[order], col[order]
    first_k = np.arange(len(row)) - np.searchsorted(row, row) < k  # ties past the k-th go
    return col[first_k].reshape(n_rows, k)


def _neighbours(distances, joint, k, advance):
    """Each joint item's k nearest items (itself normally first) and its largest distance,
    from CHUNK rows of the N x N distances at a time; `advance(rows)` after each chunk."""
    knn = np.empty((len(joint), min(k, len(joint))), dtype=np.intp)
    row_max = np.empty(len(joint))
    for start in range(0, len(joint), _CHUNK):
        block = distances(joint[start:start + _CHUNK])
        knn[start:start + _CHUNK] = _nearest(block, k)
        row_max[start:start + _CHUNK] = block.max(axis=1)
        advance(len(block))
    row_max[row_max == 0] = 1  # every item identical: all distances stay 0
    return knn, row_max


def _reciprocal(knn, k):
    """Sparse 0/1 [N, N]: j is in R(i, k), the k-reciprocal set of i, when j is among the k + 1
    nearest of i and i among the k + 1 nearest of j."""
    forward = _rows_to_sparse(knn[:, :k + 1])
    return forward.multiply(forward.T).tocsr()


def _rows_to_sparse(columns, values=None):
    """Sparse [N, N] with `values` (default 1) at (i, columns[i, j])."""
    from scipy import sparse  # here: evaluation without re-ranking starts without SciPy

    n, width = columns.shape
    data = np.ones(n * width) if values is None else np.ravel(values)
    return sparse.csr_matrix((data, columns.ravel(), np.arange(0, n * width + 1, width)),
                             shape=(n, n))


def _encodings(joint, metric, knn, row_max, k1, advance):
    """The k-reciprocal encodings V, sparse [N, N]: row i spreads weights exp(-distance / row
    maximum), summing to 1, over the expanded set of i: R(i, k1) plus every R(j, k1 / 2), j in
    R(i, k1), that shares more than two thirds of its items with R(i, k1). An item that is
    in no one's neighbourhood, itself included (more than k1 identical copies), has an empty
    encoding, at Jaccard distance 1 from everything. `advance(rows)` after each chunk."""
    from scipy import sparse  # here: evaluation without re-ranking starts without SciPy

    full = _reciprocal(knn, k1)
    half = _reciprocal(knn, int(np.around(k1 / 2)))  # half to even, as the paper's code
    half_sizes = np.asarray(half.sum(axis=1)).ravel()
    parts = []
    for start in range(0, len(joint), _CHUNK):
        own = full[start:start + _CHUNK]
        shared = (own @ half.T).multiply(own).tocoo()  # |R(j, k1/2) & R(i, k1)| for j in R(i, k1)
        kept = shared.data > 2 / 3 * half_sizes[shared.col]
        accepted = sparse.csr_matrix((np.ones(kept.sum()), (shared.row[kept], shared.col[kept])),
                                     shape=own.shape)
        expanded = (own + accepted @ half).tocsr()
        row, col = expanded.nonzero()
        weight = np.exp(-_pair_distances(joint, start + row, col, metric) / row_max[start + row])
        weight /= np.bincount(row, weight)[row]
        parts.append(sparse.csr_matrix((weight, (row, col)), shape=own.shape))
        advance(own.shape[0])
    return sparse.vstack(parts).tocsr()


def _local_expansion(encodings, nearest):
    """Each encoding replaced by the mean of those of its k2 nearest items (itself included)."""
    mean = _rows_to_sparse(nearest, np.full(nearest.shape, 1 / nearest.shape[1]))
    return mean @ encodings


def _pair_distances(joint, rows, cols, metric):
    """The metric's distance (squared for both euclidean ones) of the pairs (rows, cols)."""
    difference = joint[rows] - joint[cols]
    if metric == 'cityblock':
        return np.abs(difference).sum(axis=1)
    return np.einsum('ij,ij->i', difference, difference)


def _parts_by_total(row_of, sizes, budget):
    """Split the entries (grouped by row) into consecutive slices of whole rows whose `sizes`
    add up to about `budget` (a single row may exceed it)."""
    row_totals = np.bincount(row_of, sizes, minlength=row_of[-1] + 1 if len(row_of) else 0)
    row_ends = np.searchsorted(row_of, np.arange(len(row_totals)), side='right')
    start, accumulated = 0, 0
    for row, total in enumerate(row_totals):
        accumulated += total
        if accumulated >= budget or row == len(row_totals) - 1:
            yield slice(start, row_ends[row])
            start, accumulated = row_ends[row], 0


def _concatenated_ranges(starts, counts):
    """np.concatenate([np.arange(s, s + c) for s, c in zip(starts, counts)]), vectorised."""
    offsets = np.cumsum(counts) - counts
    return np.arange(counts.sum()) - np.repeat(offsets - starts, counts)
