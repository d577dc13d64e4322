"""The parameters of k-reciprocal re-ranking (k1, k2, lambda) chosen by a grid search on a
validation split, the choice written as JSON for `evaluate.py --rerank_params`, and the grid's
mAP as a heat map.

The search is meant for a split carved from the training identities (`python -m
data.build_csv holdout`): searched on the test set itself, the best grid point's mAP is
optimistic, since the parameters were picked for those very queries.

For each (k1, k2) the k-reciprocal encodings are built once; the re-ranked distances of every
lambda are then `lambda * original + (1 - lambda) * Jaccard`, the mix `reranking.KReciprocal`
makes, so each grid point ranks exactly as `evaluate.py --rerank` with its values does.
Every query's distances are held at once (a few query x gallery matrices of float64): meant
for validation splits, not for a whole large test set. Plain numpy; no TensorFlow.
"""
import dataclasses
import json
import math

import numpy as np

from tripletreid import evaluation, metrics, progress, reranking
from tripletreid.errors import InputError
from tripletreid.files import atomic_path

DEFAULT_K1 = (10, 15, 20, 25, 30)
DEFAULT_K2 = (3, 4, 5, 6, 7, 8)
DEFAULT_LAMBDA = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
_FLAGS = {'k1': '--rerank_k1', 'k2': '--rerank_k2', 'lambda_value': '--rerank_lambda'}


@dataclasses.dataclass(frozen=True)
class Grid:
    """The values searched of each parameter, sorted; each value is checked as
    `reranking.RerankOptions` checks it, and none may be given twice."""
    k1: tuple = DEFAULT_K1
    k2: tuple = DEFAULT_K2
    lambda_value: tuple = DEFAULT_LAMBDA

    def __post_init__(self):
        for name, flag in _FLAGS.items():
            values = getattr(self, name)
            repeated = sorted({v for v in values if list(values).count(v) > 1})
            if repeated:
                raise InputError(f'{flag}: {repeated[0]} is given twice')
            object.__setattr__(self, name, tuple(sorted(values)))
        reranking.RerankOptions(min(self.k1), min(self.k2), min(self.lambda_value))
        reranking.RerankOptions(max(self.k1), max(self.k2), max(self.lambda_value))

    def options(self, i, j, k):
        return reranking.RerankOptions(self.k1[i], self.k2[j], self.lambda_value[k])


def _mean_ap(parts):
    """The mAP over the evaluated queries of a list of `metrics.QueryScores`."""
    scores = metrics.QueryScores.concatenate(parts)
    return float(np.mean(scores.ap[scores.evaluated]))


def search(query_embs, gallery_embs, query, gallery, excluder, metric, grid, batch_size=256,
           quiet=False):
    """The mAP of every grid point, [len(k1), len(k2), len(lambda)], and the mAP without
    re-ranking. The arguments are `evaluation.evaluate_embeddings`'."""
    plain = list(evaluation.batches(query_embs, gallery_embs, query, gallery, excluder, metric,
                                    batch_size))
    plain_scores = [metrics.score_queries(*batch[1:]) for batch in plain]
    if not any(scores.evaluated.any() for scores in plain_scores):
        raise InputError(f'no query of {query.csv_path} has a valid match in '
                         f'{gallery.csv_path} (check the identities and the excluder)')
    table = np.empty((len(grid.k1), len(grid.k2), len(grid.lambda_value)))
    bar = progress.bar(table.shape[0] * table.shape[1], 'Searching re-ranking parameters',
                       'setting', quiet)
    for i, j in np.ndindex(table.shape[:2]):
        # with lambda 1 the reranker gives the original distances exactly (Jaccard times 0)
        reranker = reranking.KReciprocal(query_embs, gallery_embs, metric,
                                         reranking.RerankOptions(grid.k1[i], grid.k2[j], 1.0),
                                         quiet=True)  # the search's own line shows progress
        mixes = [(reranker(rows, distances), reranker.jaccard(rows), rest)
                 for rows, distances, *rest in _rows(plain)]
        for k, weight in enumerate(grid.lambda_value):
            table[i, j, k] = _mean_ap([
                metrics.score_queries(weight * original + (1 - weight) * jaccard, *rest)
                for original, jaccard, rest in mixes])
        bar.update(1)
    bar.close()
    return table, _mean_ap(plain_scores)


def _rows(plain):
    """(query rows, distances, matches, excluded) of the batches `evaluation.batches` gave."""
    for part, distances, matches, excluded in plain:
        yield np.arange(part.start, part.stop), distances, matches, excluded


def best(table, grid):
    """The RerankOptions of the highest mAP; of equal ones, the first in the order k1, k2,
    lambda (smallest values first)."""
    return grid.options(*np.unravel_index(np.argmax(table), table.shape))


def report(table, grid, without, chosen, context):
    """The JSON of a search: the chosen values (as `evaluate.py --rerank_params` reads them),
    their mAP, the mAP without re-ranking, the grid and its mAP table [k1][k2][lambda], and
    `context` (the inputs, the metric, ...)."""
    return {'chosen': dataclasses.asdict(chosen),
            'mAP': float(table.max()),
            'mAP_without_rerank': without,
            'grid': {name: list(getattr(grid, name)) for name in _FLAGS},
            'mAP_table': table.tolist(),
            **context}


def load_params(path, metric, normalized):
    """The RerankOptions chosen in the JSON `path` of `tune_reranking.py`, refused if it was
    searched with another metric or normalisation: lambda weighs distances of that scale."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise InputError(f'--rerank_params {path}: no such file') from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f'--rerank_params {path}: not a JSON file ({error})') from None
    chosen = data.get('chosen') if isinstance(data, dict) else None
    if not isinstance(chosen, dict) or set(chosen) != set(_FLAGS):
        raise InputError(f'--rerank_params {path}: no `chosen` k1, k2, lambda_value (not '
                         'written by tune_reranking.py?)')
    if not all(isinstance(chosen[name], int) and not isinstance(chosen[name], bool)
               for name in ('k1', 'k2')) or not _is_number(chosen['lambda_value']):
        raise InputError(f'--rerank_params {path}: `chosen` needs integer k1, k2 and a number '
                         f'lambda_value, found {chosen}')
    for name, value in (('metric', metric), ('normalized', normalized)):
        if data.get(name) != value:
            raise InputError(f'--rerank_params {path}: searched with {name} {data.get(name)}, '
                             f'but this evaluation has {name} {value}')
    try:
        return reranking.RerankOptions(**chosen)
    except InputError as error:
        raise InputError(f'--rerank_params {path}: {error}') from None


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def save_heatmap(table, grid, chosen, path, title='mAP (%) of re-ranking'):
    """The mAP table as a PNG heat map: one panel per k2, lambda across and k1 down, every
    cell labelled with its mAP (%), one colour scale, the chosen cell framed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    columns = min(3, len(grid.k2))
    rows = math.ceil(len(grid.k2) / columns)
    width = 1.2 + 0.55 * len(grid.lambda_value)
    figure = Figure(figsize=(columns * width + 1, rows * (0.9 + 0.4 * len(grid.k1)) + 0.6),
                    dpi=100, layout='constrained')
    FigureCanvasAgg(figure)  # the Agg backend, without touching pyplot's global state
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False).ravel())
    percent = 100 * table
    low, high = percent.min(), percent.max()
    for j, k2 in enumerate(grid.k2):
        ax = axes[j]
        image = ax.imshow(percent[:, j, :], cmap='viridis', vmin=low, vmax=high, aspect='auto')
        ax.set(title=f'k2 = {k2}', xlabel='λ', ylabel='k1',
               xticks=range(len(grid.lambda_value)), yticks=range(len(grid.k1)),
               xticklabels=[f'{v:g}' for v in grid.lambda_value], yticklabels=grid.k1)
        for (i, k), value in np.ndenumerate(percent[:, j, :]):
            light = value < low + 0.6 * (high - low)
            ax.text(k, i, f'{value:.1f}', ha='center', va='center', fontsize=7,
                    color='white' if light else 'black')
        if k2 == chosen.k2:
            ax.add_patch(Rectangle((grid.lambda_value.index(chosen.lambda_value) - 0.5,
                                    grid.k1.index(chosen.k1) - 0.5), 1, 1, fill=False,
                                   edgecolor='red', linewidth=2.5))
    for ax in axes[len(grid.k2):]:
        ax.set_axis_off()
    figure.colorbar(image, ax=axes.tolist(), label='mAP (%)', shrink=0.9)
    figure.suptitle(f'{title}; chosen (red): k1={chosen.k1}, k2={chosen.k2}, '
                    f'λ={chosen.lambda_value:g}')
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format='png')
