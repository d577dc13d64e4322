#!/usr/bin/env python3
"""Choose k1, k2 and lambda of k-reciprocal re-ranking (Zhong et al., CVPR 2017) by a grid
search on a validation split, for `evaluate.py --rerank --rerank_params JSON`.

    python -m data.build_csv holdout train.csv split --identities 100
    python train.py --train_set split/holdout_train.csv --experiment_root E ...
    python embed.py --experiment_root E --dataset split/holdout_query.csv \
        --filename val_query.h5 ...    (and the same for split/holdout_gallery.csv)
    python tune_reranking.py --excluder camera --metric euclidean \
        --query_dataset split/holdout_query.csv --query_embeddings E/val_query.h5 \
        --gallery_dataset split/holdout_gallery.csv --gallery_embeddings E/val_gallery.h5 \
        --filename tuned.json --picture tuned.png
    python evaluate.py ... --rerank --rerank_params tuned.json

The validation identities must not be test identities: searched on the test set, the best mAP
overstates what the chosen values give on unseen data. The machinery is
`tripletreid.rerank_tuning`.
"""
import argparse

import excluders
from tripletreid import cli, evaluation, files, metrics, rerank_tuning
from tripletreid.csv_dataset import read_csv

_EPILOG = '''\
The JSON holds `chosen` (k1, k2, lambda_value: the highest mAP; of equal ones the smallest
k1, then k2, then lambda), its mAP, the mAP without re-ranking, the grid and `mAP_table`
[k1][k2][lambda], and the inputs, metric and normalisation (evaluate.py refuses the JSON with
another metric or normalisation). The picture has one panel per k2, lambda across and k1 down,
the chosen cell framed in red.
'''


def _listed(values):
    return ' '.join(f'{value:g}' for value in values)


def build_parser():
    parser = cli.ArgumentParser(description=__doc__.split('\n\n')[0], epilog=_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--excluder', required=True, choices=sorted(excluders.EXCLUDERS),
                        help='Which gallery entries each query ignores, as in evaluate.py '
                             '(camera for a holdout with cameras, diagonal without).')
    parser.add_argument('--camera_pattern', metavar='REGEX',
                        help='With --excluder camera: the camera from the file names, as in '
                             'evaluate.py.')
    for role in ('query', 'gallery'):
        parser.add_argument(f'--{role}_dataset', required=True,
                            help=f'The validation {role} CSV.')
        parser.add_argument(f'--{role}_embeddings', required=True,
                            help='The HDF5 file of its embeddings (embed.py).')
    parser.add_argument('--metric', required=True, choices=metrics.METRICS,
                        help='Distance between embeddings, as evaluate.py will use.')
    parser.add_argument('--normalize', action='store_true',
                        help='Scale every embedding to unit length first, as evaluate.py '
                             '--normalize.')
    grid = rerank_tuning.Grid()
    parser.add_argument('--rerank_k1', nargs='+', type=int, default=grid.k1, metavar='K1',
                        help=f'k1 values searched (default: {_listed(grid.k1)}).')
    parser.add_argument('--rerank_k2', nargs='+', type=int, default=grid.k2, metavar='K2',
                        help=f'k2 values searched (default: {_listed(grid.k2)}).')
    parser.add_argument('--rerank_lambda', nargs='+', type=cli.probability,
                        default=grid.lambda_value, metavar='LAMBDA',
                        help='lambda values searched, each in [0, 1] (default: '
                             f'{_listed(grid.lambda_value)}).')
    parser.add_argument('--filename', required=True, metavar='JSON',
                        help='Where the chosen values and the mAP table go.')
    parser.add_argument('--picture', metavar='PNG', help='Also draw the mAP table here.')
    parser.add_argument('--overwrite', action='store_true',
                        help='Replace existing output files instead of refusing.')
    parser.add_argument('--batch_size', default=256, type=cli.positive_int,
                        help='Queries per batch; memory grows with it (default: %(default)s).')
    parser.add_argument('--quiet', action='store_true', help='No progress line.')
    return parser


def _embeddings(args, query, gallery):
    """The query and gallery embeddings, checked against their CSVs and each other."""
    query_embs, gallery_embs = evaluation.load_query_and_gallery(
        args.query_embeddings, args.gallery_embeddings, query, gallery)
    if args.normalize:
        return metrics.unit_rows(query_embs), metrics.unit_rows(gallery_embs)
    return query_embs, gallery_embs


def main(argv=None):
    args = build_parser().parse_args(argv)
    grid = rerank_tuning.Grid(args.rerank_k1, args.rerank_k2, args.rerank_lambda)
    for path in filter(None, (args.filename, args.picture)):
        files.check_output(path, args.overwrite)
    query, gallery = read_csv(args.query_dataset), read_csv(args.gallery_dataset)
    excluder = excluders.create(args.excluder, gallery, args.camera_pattern)
    query_embs, gallery_embs = _embeddings(args, query, gallery)
    table, without = rerank_tuning.search(query_embs, gallery_embs, query, gallery, excluder,
                                          args.metric, grid, args.batch_size, args.quiet)
    chosen = rerank_tuning.best(table, grid)
    context = {name: getattr(args, name) for name in (
        'query_dataset', 'gallery_dataset', 'query_embeddings', 'gallery_embeddings',
        'excluder', 'camera_pattern', 'metric')}
    files.write_json(args.filename, rerank_tuning.report(
        table, grid, without, chosen, dict(context, normalized=args.normalize)))
    if args.picture:
        rerank_tuning.save_heatmap(table, grid, chosen, args.picture)
    print(f'chosen: --rerank_k1 {chosen.k1} --rerank_k2 {chosen.k2} --rerank_lambda '
          f'{chosen.lambda_value:g}: mAP {table.max():.2%} (without re-ranking '
          f'{without:.2%}); written to {args.filename}')


if __name__ == '__main__':
    cli.run(main)
