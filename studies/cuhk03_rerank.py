#!/usr/bin/env python3
"""Re-ranking parameters chosen on a validation split against those searched on the test set,
on the real CUHK03 crops of ../shared/data (issue 21).

    python studies/cuhk03_rerank.py --output /tmp/study21/rerank \\
        --json /work/notes/study21/rerank.json

`--identities` identities of `train/` are held out (`python -m data.build_csv holdout`: one
query per identity and camera, the rest gallery); lunet is trained on the others with the
official recipe (64x32, `--train_iterations` steps; a finished run in OUTPUT is reused). Then,
for the raw and the unit-length embeddings (euclidean, `camera` excluder everywhere):
k1, k2 and lambda are searched (the default grid of `tune_reranking.py`) on the validation
split and, for the "peeking" figure, on the test set (`val/`, every image a query against all
the others, as studies/cuhk03.py evaluates it); the test set is evaluated without re-ranking,
with the paper's values (20, 6, 0.3), the validation's choice and the test set's own best.
The JSON, and heat maps of the four searches beside it, are written.
"""
import argparse
import dataclasses
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import excluders
from data.holdout import build_holdout
from studies.cuhk03 import DEFAULT_DATA, embed_views, train_net, write_csv
from tripletreid import evaluation, files, metrics, rerank_tuning, reranking
from tripletreid.csv_dataset import read_csv


def trained(options):
    """The experiment trained on the training identities left after the holdout."""
    experiment = os.path.join(options.output, 'experiment')
    if not os.path.exists(os.path.join(experiment,
                                       f'checkpoint-{options.train_iterations}.index')):
        train_net(options.data, options.output, options.train_iterations,
                    seed=options.seed, extra_flags=['--train_set', options.split['train']])
    return experiment


def splits(options):
    """{train, query, gallery}: the holdout CSVs (written once)."""
    folder = os.path.join(options.output, 'split')
    paths = {split: os.path.join(folder, f'cuhk03_{split}.csv')
             for split in ('train', 'query', 'gallery')}
    if not os.path.exists(paths['gallery']):
        all_train = write_csv(os.path.join(options.data, 'train'),
                              os.path.join(options.output, 'train_all.csv'))
        build_holdout(all_train, folder, options.identities, options.seed, 'cuhk03')
    return paths


def scores(result):
    return {'mAP': result['mAP'], 'rank-1': result['CMC'][0], 'mINP': result['mINP']}


def search(sets, name, grid, picture):
    """The grid search on `sets[name]` = (query embs, gallery embs, query, gallery)."""
    query_embs, gallery_embs, query, gallery = sets[name]
    table, without = rerank_tuning.search(query_embs, gallery_embs, query, gallery,
                                          excluders.create('camera', gallery), 'euclidean', grid)
    chosen = rerank_tuning.best(table, grid)
    rerank_tuning.save_heatmap(table, grid, chosen, picture, f'CUHK03 {name}: mAP (%)')
    return chosen, {'chosen': dataclasses.asdict(chosen), 'mAP': float(table.max()),
                    'mAP_without_rerank': without, 'mAP_table': table.tolist()}


def compare(sets, grid, prefix):
    """The searches and the test evaluations of one kind of embeddings."""
    chosen, validation = search(sets, 'validation', grid, f'{prefix}_validation.png')
    peeked, test_search = search(sets, 'test', grid, f'{prefix}_test.png')
    embs, _, dataset, _ = sets['test']
    excluder = excluders.create('camera', dataset)
    test = {}
    for label, options in (('without_rerank', None), ('paper_defaults', reranking.RerankOptions()),
                           ('validation_chosen', chosen), ('test_searched', peeked)):
        test[label] = scores(evaluation.evaluate_embeddings(embs, embs, dataset, dataset,
                                                            excluder, 'euclidean',
                                                            rerank=options))
        test[label]['rerank'] = None if options is None else dataclasses.asdict(options)
    overstated = {key: test['test_searched'][key] - test['validation_chosen'][key]
                  for key in ('mAP', 'rank-1', 'mINP')}
    return {'validation_search': validation, 'test_search': test_search, 'test': test,
            'peeking_overstates_by': overstated}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data', default=DEFAULT_DATA)
    parser.add_argument('--output', required=True, help='Folder of the run (reused).')
    parser.add_argument('--json', required=True, help='The results; heat maps beside it.')
    parser.add_argument('--identities', type=int, default=100)
    parser.add_argument('--train_iterations', type=int, default=1000)
    parser.add_argument('--seed', type=int, default=0)
    options = parser.parse_args()
    os.makedirs(options.output, exist_ok=True)
    options.split = splits(options)
    experiment = trained(options)
    checkpoint = f'checkpoint-{options.train_iterations}'
    test_csv = write_csv(os.path.join(options.data, 'val'),
                         os.path.join(options.output, 'val.csv'), 'v')
    roots = {'query': 'train', 'gallery': 'train', 'test': 'val'}
    csvs = {'query': options.split['query'], 'gallery': options.split['gallery'],
            'test': test_csv}
    datasets = {name: read_csv(path) for name, path in csvs.items()}
    raw = {name: embed_views(experiment, datasets[name], os.path.join(options.data, root),
                             checkpoint) for name, root in roots.items()}
    grid = rerank_tuning.Grid()
    report = {}
    base = os.path.splitext(options.json)[0]
    for kind, embs in (('raw', raw), ('normalized', {name: metrics.unit_rows(e)
                                                     for name, e in raw.items()})):
        sets = {'validation': (embs['query'], embs['gallery'], datasets['query'],
                               datasets['gallery']),
                'test': (embs['test'], embs['test'], datasets['test'], datasets['test'])}
        report[kind] = compare(sets, grid, f'{base}_{kind}')
        print(kind, json.dumps(report[kind]['test'], indent=1), flush=True)
    report['settings'] = {**vars(options),
                          'grid': {name: list(getattr(grid, name))
                                   for name in ('k1', 'k2', 'lambda_value')},
                          'metric': 'euclidean', 'excluder': 'camera'}
    files.write_json(options.json, report)


if __name__ == '__main__':
    main()
