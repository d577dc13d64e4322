"""Evaluation with a randomly drawn gallery, as the VehicleID protocol (Liu et al., CVPR 2016):
from one test set, one random image per identity is the gallery and every other image a query;
the draw is repeated and the mean and standard deviation over the draws are reported.

Draws are a pure function of the seed and the set's rows: draw d uses the d-th state of
`numpy.random.default_rng(seed)`, which gives every row a uniform key, and the gallery image of
an identity is its row of smallest key.
"""
import numpy as np

from tripletreid.csv_dataset import subset
from tripletreid.errors import InputError


def draw_gallery(pids, rng):
    """The rows (ascending) of one random image per identity of `pids`."""
    keys = rng.random(len(pids))
    order = np.lexsort((keys, pids))  # by identity, then key
    _, first = np.unique(pids[order], return_index=True)
    return np.sort(order[first])


def evaluate_draws(embeddings, dataset, draws, seed, evaluate):
    """`draws` evaluations of `dataset` (rows of `embeddings`) split into a drawn gallery and
    the remaining queries; `evaluate(query_embs, gallery_embs, query, gallery)` returns the
    result dict of `evaluation.evaluate_embeddings`.

    Returns mAP, mINP and CMC (means over the draws) with `mAP_std`, `mINP_std`, `CMC_std`
    (standard deviations, numpy's: divided by the number of draws), `seed`, `gallery_draws`
    and `draws`: per draw its mAP, mINP, CMC, numbers of queries and the gallery's files.
    """
    rng = np.random.default_rng(seed)
    every_row = np.arange(len(dataset))
    results = []
    for _ in range(draws):
        gallery_rows = draw_gallery(dataset.pids, rng)
        query_rows = np.setdiff1d(every_row, gallery_rows)
        if not len(query_rows):
            raise InputError(f'{dataset.csv_path}: every identity has a single image, so a '
                             'drawn gallery leaves no query')
        gallery = subset(dataset, gallery_rows)
        result = evaluate(embeddings[query_rows], embeddings[gallery_rows],
                          subset(dataset, query_rows), gallery)
        results.append({'mAP': result['mAP'], 'mINP': result['mINP'], 'CMC': result['CMC'],
                        'num_queries': result['num_queries'],
                        'num_evaluated_queries': result['num_evaluated_queries'],
                        'gallery': gallery.fids.tolist()})
    summary = {'seed': seed, 'gallery_draws': draws, 'draws': results}
    for key in ('mAP', 'mINP', 'CMC'):
        values = np.array([result[key] for result in results])
        summary[key] = np.mean(values, axis=0).tolist()
        summary[f'{key}_std'] = np.std(values, axis=0).tolist()
    return summary


def spread(result):
    """The console line of the spread: standard deviations of mAP and top-1/5/10."""
    cmc, std = result['CMC'], result['CMC_std']
    tops = [f'top-{k}: {cmc[k - 1]:.2%} +- {std[k - 1]:.2%}' for k in (1, 5, 10) if k <= len(cmc)]
    return (f'over {result["gallery_draws"]} gallery draws (seed {result["seed"]}): mAP: '
            f'{result["mAP"]:.2%} +- {result["mAP_std"]:.2%} | ' + ' | '.join(tops))
