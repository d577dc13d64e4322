"""Verification: is a query-gallery pair the same identity, by thresholding its distance?

Over every pair a protocol keeps (same identity: positive; else negative), exactly and without
the list of pairs in memory, in two passes over batches of distances:
1. the positive distances (there are few: about the gallery images of each query's identity),
   sorted and made unique: v_1 < ... < v_P; and the largest distance, for the histograms;
2. the negatives, counted per interval between consecutive v_i (below, equal to each v_i), with
   the largest negative of each interval (the threshold of the ROC corner before v_i), and
   histograms of both kinds over fixed bins.
The ROC then has a point at each v_i (pairs at a distance <= v_i accepted) and one just before
it (the largest negative below v_i, if any): every corner of the curve, so that it equals
scikit-learn's `roc_curve` (drop_intermediate=True) point for point.

Distances are the metric's (euclidean not squared); thresholds accept a pair whose distance is
<= the threshold.
"""
import numpy as np

from tripletreid.errors import InputError

FARS = (1e-2, 1e-3, 1e-4)
HISTOGRAM_BINS = 100


def roc_points(batches):
    """The ROC of the pairs of `batches()`, a callable giving a fresh iterator of
    (distances, positive, negative) per batch (boolean masks; pairs in neither are ignored).

    Returns dict: `thresholds` (increasing), `fps`, `tps` (pairs accepted at each), `positives`,
    `negatives`, and `histograms` (`edges`, `same`, `different`).
    """
    parts, largest = [], 0.0
    for distances, positive, negative in batches():
        parts.append(distances[positive])
        kept = distances[positive | negative]
        if len(kept):
            largest = max(largest, float(kept.max()))
    values = np.unique(np.concatenate(parts)) if parts else np.zeros(0)
    pos_count = np.zeros(len(values), dtype=np.int64)
    neg_below = np.zeros(len(values) + 1, dtype=np.int64)  # in (v_{i-1}, v_i), then above v_P
    neg_equal = np.zeros(len(values), dtype=np.int64)
    neg_max = np.full(len(values) + 1, -np.inf)
    edges = np.linspace(0.0, largest if largest > 0 else 1.0, HISTOGRAM_BINS + 1)
    same = np.zeros(HISTOGRAM_BINS, dtype=np.int64)
    different = np.zeros(HISTOGRAM_BINS, dtype=np.int64)
    for distances, positive, negative in batches():
        pos = distances[positive]
        pos_count += np.bincount(np.searchsorted(values, pos), minlength=len(values))[
            :len(values)]
        neg = distances[negative]
        left = np.searchsorted(values, neg, side='left')
        equal = left < len(values)
        equal[equal] = values[left[equal]] == neg[equal]
        neg_equal += np.bincount(left[equal], minlength=len(values))[:len(values)]
        between = ~equal
        neg_below += np.bincount(left[between], minlength=len(values) + 1)
        np.maximum.at(neg_max, left[between], neg[between])
        same += np.histogram(pos, edges)[0]
        different += np.histogram(neg, edges)[0]
    positives, negatives = int(pos_count.sum()), int(neg_below.sum() + neg_equal.sum())
    if not positives or not negatives:
        raise InputError(f'verification needs same- and different-identity pairs; found '
                         f'{positives} and {negatives}')
    # Points: before each v_i (if a negative lies in its interval), at each v_i, and after
    # the last v_i (all remaining negatives).
    tps_at = np.cumsum(pos_count)
    fps_at = np.cumsum(neg_below[:-1] + neg_equal)
    fps_before = fps_at - neg_equal
    tps_before = tps_at - pos_count
    thresholds = np.empty(2 * len(values) + 1)
    fps = np.empty(2 * len(values) + 1, dtype=np.int64)
    tps = np.empty_like(fps)
    thresholds[0:-1:2], fps[0:-1:2], tps[0:-1:2] = neg_max[:-1], fps_before, tps_before
    thresholds[1::2], fps[1::2], tps[1::2] = values, fps_at, tps_at
    thresholds[-1], fps[-1], tps[-1] = neg_max[-1], negatives, positives
    present = neg_below > 0
    keep = np.ones(len(thresholds), dtype=bool)
    keep[0:-1:2] = present[:-1]
    keep[-1] = present[-1]
    return {'thresholds': thresholds[keep], 'fps': fps[keep], 'tps': tps[keep],
            'positives': positives, 'negatives': negatives,
            'histograms': {'edges': edges, 'same': same, 'different': different}}


def drop_collinear(thresholds, fps, tps):
    """The corners of the curve only: points where it changes direction (exact, the counts
    being integers); the first and last points are kept."""
    if len(fps) <= 2:
        return thresholds, fps, tps
    dx, dy = np.diff(fps), np.diff(tps)
    turn = dx[:-1] * dy[1:] - dy[:-1] * dx[1:]
    keep = np.r_[True, turn != 0, True]
    return thresholds[keep], fps[keep], tps[keep]


def summary(points, target_far=None, distance=lambda d: d):
    """EER, TAR at the FARS, the best-F1 threshold (and that of `target_far`), the ROC's
    corners, as a dict for the JSON. Every threshold is one a pair distance takes (the points
    of `roc_points`, all reachable). `distance` maps the ranked values to the metric's
    distance (square root of squared euclidean ones)."""
    thresholds, fps, tps = points['thresholds'], points['fps'], points['tps']
    positives, negatives = points['positives'], points['negatives']
    fpr = np.r_[0.0, fps / negatives]
    tpr = np.r_[0.0, tps / positives]
    thresholds = np.r_[-np.inf, thresholds]
    # EER: where 1 - TPR crosses FPR, on the straight segments between corners.
    gap = (1 - tpr) - fpr
    cross = int(np.flatnonzero(gap <= 0)[0])
    if cross == 0:
        eer = 0.0
    else:
        share = gap[cross - 1] / (gap[cross - 1] - gap[cross])
        eer = float(fpr[cross - 1] + share * (fpr[cross] - fpr[cross - 1]))
    result = {'num_positive_pairs': positives, 'num_negative_pairs': negatives, 'EER': eer,
              'TAR_at_FAR': {}}
    for far in FARS + ((target_far,) if target_far is not None else ()):
        ok = np.flatnonzero(fpr <= far)
        best = ok[np.argmax(tpr[ok])]
        entry = {'TAR': float(tpr[best]), 'FAR': float(fpr[best]),
                 'threshold': float(distance(thresholds[best]))}
        result['TAR_at_FAR'][f'{far:g}'] = entry
    if target_far is not None:
        result['target_far_threshold'] = result['TAR_at_FAR'][f'{target_far:g}']
    f1 = 2 * tps / (2 * tps + fps + (positives - tps))
    best = int(np.argmax(f1))
    result['best_f1'] = {'F1': float(f1[best]), 'threshold': float(distance(thresholds[best + 1])),
                         'precision': float(tps[best] / (tps[best] + fps[best])),
                         'recall': float(tps[best] / positives)}
    corners = drop_collinear(thresholds[1:], fps, tps)
    result['roc'] = {'fpr': (corners[1] / negatives).tolist(),
                     'tpr': (corners[2] / positives).tolist(),
                     'thresholds': [float(distance(t)) for t in corners[0]]}
    return result


def save_pictures(points, result, folder, distance=lambda d: d):
    """roc.png (TAR against FAR, log FAR axis) and distances.png (same- and different-identity
    distance histograms, each normalised) into `folder`."""
    import os

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from tripletreid.files import atomic_path
    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    fpr, tpr = np.asarray(result['roc']['fpr']), np.asarray(result['roc']['tpr'])
    shown = fpr > 0
    axes.plot(fpr[shown], tpr[shown], drawstyle='default')
    axes.set(xscale='log', xlabel='false accept rate', ylabel='true accept rate',
             title=f'ROC (EER {result["EER"]:.2%})', ylim=(0, 1.01))
    axes.grid(True, alpha=0.3)
    with atomic_path(os.path.join(folder, 'roc.png')) as tmp:
        figure.savefig(tmp, format='png')
    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    histograms = points['histograms']
    edges = np.array([distance(e) for e in histograms['edges']])
    for label, counts in (('same identity', histograms['same']),
                          ('different identities', histograms['different'])):
        axes.stairs(counts / max(counts.sum(), 1), edges, label=label, fill=True, alpha=0.5)
    axes.set(xlabel='distance', ylabel='share of the pairs', title='Pair distances')
    axes.legend()
    with atomic_path(os.path.join(folder, 'distances.png')) as tmp:
        figure.savefig(tmp, format='png')


def evaluate_pairs(batches, metric, target_far=None):
    """(points, summary) of the verification over the batches of `evaluation.batches`:
    `batches()` gives fresh (rows, distances, same identity, excluded) tuples."""
    def pairs():
        for _, distances, matches, excluded in batches():
            yield distances, matches & ~excluded, ~matches & ~excluded

    points = roc_points(pairs)
    return points, summary(points, target_far, metric_distance(metric))


def metric_distance(metric):
    """Maps the values `metrics.Distances` ranks by to the metric's distance."""
    return (lambda d: float(np.sqrt(d)) if d >= 0 else d) if metric == 'euclidean' else (
        lambda d: d)


def report(result):
    """The console line of a verification summary."""
    tars = ' | '.join(f'TAR@FAR={far}: {entry["TAR"]:.2%}'
                      for far, entry in result['TAR_at_FAR'].items())
    best = result['best_f1']
    return (f'verification: EER: {result["EER"]:.2%} | {tars} | best F1 {best["F1"]:.3f} at '
            f'distance <= {best["threshold"]:.4g}')
