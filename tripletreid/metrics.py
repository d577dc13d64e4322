"""Retrieval metrics of person re-identification: distances, AP (two rules), CMC and mINP.

Everything works on one batch of queries against the whole gallery, so memory grows with the
batch size, never with the number of queries. Plain numpy (no TensorFlow, no scikit-learn), so
the numbers do not change with the version of either.

Ranking rule (the official evaluate.py's): gallery entries are ordered by distance, ties in
gallery order (a stable sort). Excluded entries take no part at all. The scikit-learn AP groups
tied distances into one threshold, so for it the order inside a tie does not matter.
"""
import dataclasses

import numpy as np

METRICS = ('euclidean', 'sqeuclidean', 'cityblock')
AP_RULES = ('sklearn', 'market')
_TIE_CHUNK = 64  # rows gathered at a time to resolve ties, bounds the extra memory


class Distances:
    """Distances from batches of query embeddings to one fixed gallery, in float64.

    `euclidean` comes out squared, as `sqeuclidean`: the square root keeps the order, which is
    all the metrics use, and could only round nearly equal distances into ties.

    Squared distances are |q|^2 + |g|^2 - 2 q.g, all in one matrix product of the embeddings
    extended by two columns (an order of magnitude faster than forming differences), in
    float64 and clamped at 0. The rounding error is of order D * 1e-16 * (|q| + |g|)^2, so
    the order is that of the exact distances except for pairs closer than that, and
    integer-valued embeddings come out exact. Identical gallery embeddings are computed once
    and copied, so they always tie exactly, whatever the BLAS kernel does.
    `cityblock` sums |q - g| dimension by dimension (exact differences, no expansion).
    """

    def __init__(self, gallery, metric):
        if metric not in METRICS:
            raise ValueError(f'unknown metric {metric!r}; expected one of {METRICS}')
        unique, self._inverse = _unique_rows(np.asarray(gallery, dtype=np.float64))
        self.metric = metric
        if metric != 'cityblock':  # columns g, 1, |g|^2 to meet -2q, |q|^2, 1 in `_squared`
            unique = np.hstack([unique, np.ones((len(unique), 1)), _squared_norms(unique)[:, None]])
        self._gallery_t = np.ascontiguousarray(unique.T)  # the fast layout for the product

    def __call__(self, queries):
        """[len(queries), len(gallery)] distances (squared for both euclidean metrics)."""
        queries = np.asarray(queries, dtype=np.float64)
        if self.metric == 'cityblock':
            distances = self._cityblock(queries)
        else:
            distances = self._squared(queries)
        return distances if self._inverse is None else distances[:, self._inverse]

    def _squared(self, queries):
        extended = np.hstack([-2.0 * queries, _squared_norms(queries)[:, None],
                              np.ones((len(queries), 1))])
        distances = extended @ self._gallery_t
        return np.maximum(distances, 0.0, out=distances)

    def _cityblock(self, queries):
        total = np.zeros((len(queries), self._gallery_t.shape[1]))
        difference = np.empty_like(total)
        for query_column, gallery_row in zip(queries.T, self._gallery_t):
            np.subtract(query_column[:, None], gallery_row, out=difference)
            total += np.abs(difference, out=difference)
        return total


def unit_rows(embeddings):
    """Each row scaled to unit euclidean length; an all-zero row stays zero."""
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / np.where(norms > 0, norms, 1.0)


def _unique_rows(rows):
    """(the distinct rows in order of appearance, the index of each row among them), the
    index being None if all rows differ. Hashing the bytes takes a fraction of the time of
    np.unique(axis=0), which sorts."""
    code_of = {}
    inverse = np.array([code_of.setdefault(row.tobytes(), len(code_of)) for row in rows],
                       dtype=np.intp)
    if len(code_of) == len(rows):
        return rows, None
    return rows[np.unique(inverse, return_index=True)[1]], inverse


def _squared_norms(vectors):
    return np.einsum('ij,ij->i', vectors, vectors)


@dataclasses.dataclass
class QueryScores:
    """Per-query results of `score_queries`. A query with `positives == 0` has no valid true
    match: its AP and INP are NaN and its `first_rank` is 0; evaluation skips it."""
    positives: np.ndarray   # number of valid true matches
    ap: np.ndarray          # average precision
    first_rank: np.ndarray  # 1-based rank of the first true match, for the CMC
    inp: np.ndarray         # inverse negative penalty: positives / rank of the last true match

    @property
    def evaluated(self):
        return self.positives > 0

    @classmethod
    def concatenate(cls, parts):
        """Join the scores of consecutive batches."""
        return cls(*(np.concatenate([getattr(part, field.name) for part in parts])
                     for field in dataclasses.fields(cls)))


def score_queries(distances, matches, excluded, ap_rule='sklearn'):
    """AP, first-match rank and INP of each query (row) of one batch.

    `distances` [n_query, n_gallery]; `matches`: same identity; `excluded`: gallery entries that
    take no part for that query (neither hit nor miss). `ap_rule` is `sklearn` (sum over ranks
    of (R_n - R_{n-1}) P_n with tied distances as one threshold, what
    sklearn.metrics.average_precision_score gives) or `market` (the Market-1501 MATLAB
    script's trapezoid rule, the official `--use_market_ap`).
    """
    if ap_rule not in AP_RULES:
        raise ValueError(f'unknown AP rule {ap_rule!r}; expected one of {AP_RULES}')
    ranks = _match_ranks(distances, matches & ~excluded, excluded)
    n_query = len(distances)
    positives = np.bincount(ranks.row, minlength=n_query)
    with np.errstate(invalid='ignore'):
        ap = np.bincount(ranks.row, _ap_terms(ranks, ap_rule), minlength=n_query) / positives
    first_rank = np.zeros(n_query, dtype=np.int64)
    first = ranks.index == 0
    first_rank[ranks.row[first]] = ranks.rank[first]
    inp = np.full(n_query, np.nan)
    last = ranks.index == positives[ranks.row] - 1
    inp[ranks.row[last]] = positives[ranks.row[last]] / ranks.rank[last]
    return QueryScores(positives, ap, first_rank, inp)


def cmc_curve(first_ranks, length):
    """Top-k accuracy for k = 1..length: the share of `first_ranks` (1-based) that are <= k.

    The denominator is the number of ranks given, i.e. of the queries that were evaluated.
    """
    hits = np.bincount(np.asarray(first_ranks) - 1, minlength=length)[:length]
    return np.cumsum(hits) / len(first_ranks)


@dataclasses.dataclass
class _MatchRanks:
    """One entry per valid true match: rows in order, the matches of a row by stable rank."""
    row: np.ndarray             # query row
    index: np.ndarray           # 0-based position among the row's true matches
    rank: np.ndarray            # 1-based stable rank among the row's valid gallery entries
    matches_within: np.ndarray  # true matches at a distance <= this one's
    valid_within: np.ndarray    # valid gallery entries at a distance <= this one's


def _match_ranks(distances, positive, excluded):
    """Rank every valid true match without argsorting the rows.

    Only the true matches' ranks matter, so each row's distances are sorted by value (much
    faster than a stable argsort) and each match finds its rank by bisection. Entries tied with
    a match in distance come before it when their gallery index is lower (stable order).
    """
    row, col = np.divmod(np.flatnonzero(positive), positive.shape[1])  # faster than nonzero
    value = distances[row, col]
    sorted_rows = distances.copy()
    np.copyto(sorted_rows, np.inf, where=excluded)
    sorted_rows.sort(axis=1)
    order = np.lexsort((value, row))  # stable: tied matches stay in gallery order
    row, col, value = row[order], col[order], value[order]
    position = np.arange(len(row))
    row_start = np.searchsorted(row, row)
    group_start, group_last = _tie_groups(row, value)

    below = _count_sorted(sorted_rows, row, value, inclusive=False)
    within = _count_sorted(sorted_rows, row, value, inclusive=True)
    others_tied = within - below - (group_last - group_start + 1)
    rank = (below + (position - group_start) + 1 +
            _others_tied_before(distances, positive | excluded, row, col, value,
                                others_tied > 0))
    return _MatchRanks(row, position - row_start, rank, group_last - row_start + 1, within)


def _tie_groups(row, value):
    """First and last position of each entry's group: the entries of one row at one value.

    `row` and `value` are sorted by (row, value); a group is a run of equal pairs.
    """
    position = np.arange(len(row))
    new_group = np.ones(len(row), dtype=bool)
    new_group[1:] = (row[1:] != row[:-1]) | (value[1:] != value[:-1])
    group_start = np.maximum.accumulate(np.where(new_group, position, 0))
    group_last = np.flatnonzero(np.append(new_group[1:], True))[np.cumsum(new_group) - 1]
    return group_start, group_last


def _count_sorted(sorted_rows, row, value, inclusive):
    """How many entries of `sorted_rows[row]` are < `value` (<= if `inclusive`), per pair.

    A bisection over all pairs at once: np.searchsorted would need a Python loop over rows.
    """
    low = np.zeros(len(row), dtype=np.intp)
    high = np.full(len(row), sorted_rows.shape[1], dtype=np.intp)
    compare = np.less_equal if inclusive else np.less
    for _ in range(sorted_rows.shape[1].bit_length()):
        active = low < high
        middle = (low + high) // 2
        lower = compare(sorted_rows[row, np.minimum(middle, sorted_rows.shape[1] - 1)], value)
        low = np.where(active & lower, middle + 1, low)
        high = np.where(active & ~lower, middle, high)
    return low


def _others_tied_before(distances, ignored, row, col, value, needed):
    """For the `needed` matches: entries not `ignored` (valid non-matches) at exactly the same
    distance and with a lower gallery index, which a stable sort puts first. Exact ties are
    rare with real embeddings, so only these rows are looked at again, a few at a time."""
    count = np.zeros(len(row), dtype=np.intp)
    gallery_index = np.arange(distances.shape[1])
    todo = np.flatnonzero(needed)
    for start in range(0, len(todo), _TIE_CHUNK):
        part = todo[start:start + _TIE_CHUNK]
        rows = row[part]
        tied = ((distances[rows] == value[part, None]) & ~ignored[rows] &
                (gallery_index < col[part, None]))
        count[part] = tied.sum(axis=1)
    return count


def _ap_terms(ranks, ap_rule):
    """Each true match's share of its query's AP, before dividing by the number of matches."""
    if ap_rule == 'sklearn':
        # The precision at the match's distance, counting everything tied with it.
        return ranks.matches_within / ranks.valid_within
    # Trapezoid: mean of the precision at the match's rank and at the rank just before it
    # (taken as 1 before the first rank).
    before = np.where(ranks.rank > 1, ranks.index / np.maximum(ranks.rank - 1, 1), 1.0)
    return ((ranks.index + 1) / ranks.rank + before) / 2
