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
_COMPARED_ROWS = 4096  # gallery rows checked at a time for duplicates, bounds the extra memory


class Distances:
    """Distances from batches of query embeddings to one fixed gallery, in float64.

    `euclidean` comes out squared, as `sqeuclidean`: the square root keeps the order, which is
    all the metrics use, and could only round nearly equal distances into ties.

    Squared distances are |q|^2 + |g|^2 - 2 q.g: one matrix product with the gallery as it is
    (an order of magnitude faster than forming differences, and no copy of the gallery: at
    MSMT17 size with 2048-D embeddings it is 1.3 GB), in float64 and clamped at 0. The
    rounding error is of order D * 1e-16 * (|q| + |g|)^2, so the order is that of the exact
    distances except for pairs closer than that, and integer-valued embeddings come out
    exact. The distances to identical gallery embeddings are copied from the first's, so they
    always tie exactly, whatever the BLAS kernel does.
    `cityblock` sums |q - g| dimension by dimension (exact differences, no expansion).
    """

    def __init__(self, gallery, metric):
        if metric not in METRICS:
            raise ValueError(f'unknown metric {metric!r}; expected one of {METRICS}')
        self._gallery = np.asarray(gallery, dtype=np.float64)
        self._copies, self._originals = _duplicate_rows(self._gallery)
        self.metric = metric
        if metric == 'cityblock':  # one contiguous gallery row per dimension
            self._gallery_t = np.ascontiguousarray(self._gallery.T)
        else:
            self._gallery_norms = _squared_norms(self._gallery)

    def __call__(self, queries):
        """[len(queries), len(gallery)] distances (squared for both euclidean metrics)."""
        queries = np.asarray(queries, dtype=np.float64)
        if self.metric == 'cityblock':
            distances = self._cityblock(queries)
        else:
            distances = self._squared(queries)
        distances[:, self._copies] = distances[:, self._originals]
        return distances

    def _squared(self, queries):
        distances = (-2.0 * queries) @ self._gallery.T  # BLAS reads the transpose in place
        distances += self._gallery_norms
        distances += _squared_norms(queries)[:, None]
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


def _duplicate_rows(rows):
    """(rows equal to an earlier row, that earlier row), as two index arrays.

    Rows are grouped by a 64-bit fingerprint of their bits (a fixed random linear combination
    modulo 2^64: exact integer arithmetic, no copy of the rows, no sort of them) and paired
    only when bit-identical; two different rows that share a fingerprint (a chance of 2^-64
    a pair) just stay apart.
    """
    rows = np.ascontiguousarray(rows)
    fingerprint = rows.view(np.uint64) @ _mixed(rows.shape[1])
    _, first, inverse = np.unique(fingerprint, return_index=True, return_inverse=True)
    first = first[inverse.ravel()]
    later = np.flatnonzero(first != np.arange(len(rows)))
    same = np.ones(len(later), dtype=bool)
    for start in range(0, len(later), _COMPARED_ROWS):
        part = later[start:start + _COMPARED_ROWS]
        same[start:start + len(part)] = (rows[part] == rows[first[part]]).all(axis=1)
    return later[same], first[later[same]]


def _mixed(count):
    """`count` odd 64-bit weights that look random: splitmix64 of 1..count (numpy.random
    would add a tenth of a second to evaluate.py's start)."""
    z = np.arange(1, count + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31)) | np.uint64(1)  # odd: every bit of a row counts


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
    ranks = _match_ranks(distances, matches, excluded)
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


def _match_ranks(distances, matches, excluded):
    """Rank every valid (not excluded) true match by counting, without sorting any row.

    A match's stable rank is 1 + the valid entries strictly closer + the valid entries at
    exactly its distance with a lower gallery index. Only entries no farther than the row's
    last match can count, so each row keeps those (one comparison per entry) and finds, by
    bisection among the row's few sorted match distances, how many matches lie closer than
    each: counting those per match gives every match's rank in time linear in the row.
    """
    row, col, value = _sorted_matches(distances, matches, excluded)
    bounds = np.searchsorted(row, np.arange(len(distances) + 1))  # each row's matches
    has_match = np.diff(bounds) > 0
    last = np.full(len(distances), -np.inf)  # each row's farthest match
    last[has_match] = value[bounds[1:][has_match] - 1]
    near = distances <= last[:, None]
    np.greater(near, excluded, out=near)  # and not excluded
    near_value = np.compress(near.ravel(), distances)  # row by row; faster than [near]
    slot = _slots(value, bounds, near_value, np.count_nonzero(near, axis=1), has_match)

    group_start, group_last = _tie_groups(row, value)
    counts = np.cumsum(np.bincount(slot, minlength=len(row)))
    valid_within = counts - np.repeat(np.append(0, counts)[bounds[:-1]], np.diff(bounds))
    on_match = near_value == value[slot]  # entries at exactly a match's distance
    equal = np.bincount(slot[on_match], minlength=len(row))[group_start]
    position = np.arange(len(row))
    rank = valid_within - equal + (position - group_start) + 1
    if (equal > group_last - group_start + 1).any():  # non-matches tie with matches
        tied = np.flatnonzero(near)[on_match]
        rank += _others_tied_before(tied % distances.shape[1], slot[on_match],
                                    np.take(matches, tied), col, group_start,
                                    distances.shape[1])
    return _MatchRanks(row, position - bounds[row], rank, group_last - bounds[row] + 1,
                       valid_within)


def _sorted_matches(distances, matches, excluded):
    """Row, column and distance of every valid true match, by row, distance, column."""
    positive = np.flatnonzero(matches)  # flatnonzero and divmod beat nonzero
    positive = positive[~np.take(excluded, positive)]
    row, col = np.divmod(positive, distances.shape[1])
    value = distances[row, col]
    order = np.lexsort((value, row))  # stable: tied matches stay in gallery order
    return row[order], col[order], value[order]


def _slots(value, bounds, near_value, near_counts, has_match):
    """For each kept entry (`near_value`, row by row, `near_counts` a row), the index in
    `value` of the first of its row's sorted matches at or beyond its distance: the row's
    matches are `value[bounds[r]:bounds[r + 1]]`, a handful, so a bisection finds it."""
    near_bounds = np.append(0, np.cumsum(near_counts))
    slot = np.repeat(bounds[:-1], near_counts)
    for r in np.flatnonzero(has_match):
        entries = slice(near_bounds[r], near_bounds[r + 1])
        slot[entries] += np.searchsorted(value[bounds[r]:bounds[r + 1]], near_value[entries])
    return slot


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


def _others_tied_before(tied_col, tied_slot, tied_is_match, col, group_start, n_gallery):
    """For each match: the valid non-matches at exactly its distance with a lower gallery
    index, which a stable sort puts first. `tied_*` describe the valid entries found at a
    match's distance, `tied_slot` being the first match of that distance (its tie group).
    Exact ties are rare with real embeddings, so these lists are short."""
    keys = np.sort((tied_slot * n_gallery + tied_col)[~tied_is_match])
    group_key = group_start * n_gallery
    return np.searchsorted(keys, group_key + col) - np.searchsorted(keys, group_key)


def _ap_terms(ranks, ap_rule):
    """Each true match's share of its query's AP, before dividing by the number of matches."""
    if ap_rule == 'sklearn':
        # The precision at the match's distance, counting everything tied with it.
        return ranks.matches_within / ranks.valid_within
    # Trapezoid: mean of the precision at the match's rank and at the rank just before it
    # (taken as 1 before the first rank).
    before = np.where(ranks.rank > 1, ranks.index / np.maximum(ranks.rank - 1, 1), 1.0)
    return ((ranks.index + 1) / ranks.rank + before) / 2
