#!/usr/bin/env python3
"""Evaluate a ReID embedding: mAP, CMC and mINP of query embeddings against a gallery.

The protocol of the official evaluate.py, without TensorFlow: distances for a batch of
queries at a time, excluded gallery entries removed, queries without a valid match skipped.
The machinery is `tripletreid.evaluation`.
"""
import argparse
import os
import sys

import numpy as np

import excluders
from excluders.base import SameCameraExcluder
from tripletreid import cli, evaluation, files, metrics, rerank_tuning, reranking, verification
from tripletreid import csv_dataset, gallery_draws, tracklets
from tripletreid.aggregators import AGGREGATORS
from tripletreid.csv_dataset import read_csv
from tripletreid.errors import InputError

CMC_PICTURE = 'cmc.png'
RANKED_LIST_PICTURE = 'ranked_list.png'

_EPILOG = '''\
Results: a query whose gallery holds no valid true match (after exclusion) is skipped with a
warning; mAP, mINP and the CMC are means over the evaluated (non-skipped) queries only, so
the CMC denominator is the number of evaluated queries (the official script divided by all
queries). Gallery entries are ranked by distance, ties in gallery order (a stable sort).
The default AP is scikit-learn's (tied distances count as one threshold); --use_market_ap
takes the Market-1501 script's trapezoid rule. mINP is the mean inverse negative penalty
(Ye et al. 2020): true matches / rank of the hardest true match.

Re-ranking is off by default (the official protocol): --query_expansion N first replaces each
query by the mean of itself and its N nearest valid gallery embeddings; --rerank then ranks by
k-reciprocal re-ranking (Zhong et al. 2017) of the joint query + gallery set, with the paper's
k1, k2 and lambda (original distance: the metric's, squared for euclidean, as the reference code),
or with --rerank_params those tune_reranking.py chose on a validation split.

Excluders: market1501 and duke read identity and camera from the file names
(0002_c1s1_000451_03.jpg, 0005_c2_f0046985.jpg) and ignore the query identity's gallery
images from the query camera and the junk (identity -1); diagonal ignores only the query's own
file (query set = gallery set); camera ignores the query identity's gallery images from the
query camera, the camera being the third CSV column (identity,path,camera) or what
--camera_pattern finds; mars reads MARS frame names (0001C1T0001F001.jpg) with Market-1501's
rules, junk being identity 00-1.

Video (--tracklets): the frames of each tracklet are aggregated into one embedding, query and
gallery alike, and tracklets are ranked as images are; a tracklet takes the identity and camera
of its frames (which must agree) and the name of its first frame. MARS: --tracklets column
--excluder mars, the gallery being every test tracklet (the official MARS evaluation).

Random galleries (--gallery_draws N, VehicleID's protocol): query and gallery are one set; each
draw takes one random image per identity as the gallery and the others as queries; mAP, mINP
and CMC are the means over the N draws, with their standard deviations (*_std) and every draw
in the JSON. The draws depend on --draw_seed and the CSV rows only.

Pictures (--picture_dir): cmc.png, the CMC curve with the run's name and mAP, and with
--image_root (or --query_image_root and --gallery_image_root) ranked_list.png, one row per
query: the query, then its 10 best gallery matches after exclusion, framed green when they are
the same identity and red when not, captioned with rank, identity, camera and distance. Every
image the ranked list needs is checked before anything is computed.
'''


def build_parser():
    parser = cli.ArgumentParser(
        description='Evaluate a ReID embedding.', epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        '--excluder', required=True, choices=sorted(excluders.EXCLUDERS),
        help='Which gallery entries each query ignores (see below).')
    parser.add_argument(
        '--camera_pattern', metavar='REGEX',
        help='With --excluder camera: a regular expression with a named group `camera`, '
             r'searched in each path as written in the CSVs, e.g. "_c(?P<camera>\d+)_" or '
             r'"^cam(?P<camera>\d+)/". Without it the third CSV column is the camera.')
    for role in ('query', 'gallery'):
        parser.add_argument(f'--{role}_dataset', required=True,
                            help=f'Path to the {role} dataset CSV file.')
        parser.add_argument(f'--{role}_embeddings', required=True,
                            help=f'Path to the HDF5 file of the {role} embeddings (dataset '
                                 '`emb`, one row per CSV row).')
    parser.add_argument(
        '--metric', required=True, choices=metrics.METRICS,
        help='Distance between embeddings (euclidean and sqeuclidean rank alike).')
    parser.add_argument(
        '--normalize', action='store_true',
        help='Scale every embedding to unit length first (euclidean distances then rank as '
             'cosine ones), as the Bag-of-Tricks baseline evaluates its BNNeck features.')
    parser.add_argument(
        '--filename', metavar='JSON',
        help='Store the results in this JSON file: mAP, CMC, mINP, aps, inps and first_ranks '
             '(one per evaluated query), skipped_queries and counts.')
    parser.add_argument('--overwrite', action='store_true',
                        help='Replace existing output files instead of refusing.')
    parser.add_argument(
        '--batch_size', default=256, type=cli.positive_int,
        help='Queries per batch; memory grows with it (default: %(default)s).')
    parser.add_argument(
        '--use_market_ap', action='store_true',
        help='Compute the AP exactly as the Market-1501 evaluation script does (trapezoid '
             'rule) rather than as scikit-learn does, which gives slightly different scores.')
    parser.add_argument(
        '--query_expansion', default=0, type=cli.nonnegative_int, metavar='N',
        help='Average query expansion over the N nearest valid gallery entries (default: '
             '%(default)s, off).')
    parser.add_argument('--rerank', action='store_true',
                        help='k-reciprocal re-ranking of the distances (see below).')
    defaults = reranking.RerankOptions()
    parser.add_argument('--rerank_k1', default=defaults.k1, type=int, metavar='K1',
                        help='With --rerank: size of the k-reciprocal neighbourhoods '
                             '(default: %(default)s).')
    parser.add_argument('--rerank_k2', default=defaults.k2, type=int, metavar='K2',
                        help='With --rerank: neighbours of the local query expansion '
                             '(default: %(default)s).')
    parser.add_argument('--rerank_lambda', default=defaults.lambda_value, type=float,
                        metavar='LAMBDA',
                        help='With --rerank: weight of the original distance against the '
                             'Jaccard distance, in [0, 1] (default: %(default)s).')
    parser.add_argument('--rerank_params', metavar='JSON',
                        help='With --rerank: take k1, k2 and lambda from this JSON of '
                             'tune_reranking.py (searched with the same --metric and '
                             '--normalize) instead of --rerank_k1/k2/lambda.')
    parser.add_argument(
        '--tracklets', metavar='column|REGEX',
        help='Evaluate tracklets of frames (video datasets): `column` takes the tracklet from '
             'the fourth CSV column (identity,path,camera,tracklet), a REGEX from its named '
             'group `tracklet` searched in each path (see below).')
    parser.add_argument('--tracklet_aggregator', default='mean', choices=sorted(AGGREGATORS),
                        help='With --tracklets: how frame embeddings become the tracklet\'s '
                             '(default: %(default)s).')
    parser.add_argument(
        '--gallery_draws', default=0, type=cli.nonnegative_int, metavar='N',
        help='VehicleID protocol: query and gallery are one set (give the same CSV and '
             'embeddings for both); N times draw one image per identity as the gallery, the '
             'rest being queries; report means and standard deviations (default: 0, off).')
    parser.add_argument('--draw_seed', default=0, type=int, metavar='SEED',
                        help='With --gallery_draws: the seed of the draws (default: '
                             '%(default)s).')
    parser.add_argument('--picture_dir', metavar='DIR',
                        help=f'Write {CMC_PICTURE} (and {RANKED_LIST_PICTURE} with '
                             '--image_root) into this directory.')
    parser.add_argument('--image_root', type=cli.readable_directory, metavar='DIR',
                        help='Directory the CSV paths are relative to, for the ranked list.')
    for role in ('query', 'gallery'):
        parser.add_argument(f'--{role}_image_root', type=cli.readable_directory,
                            metavar='DIR', help=f'Directory the {role} CSV\'s paths are '
                                                'relative to, where it is not --image_root.')
    parser.add_argument('--run_name', metavar='NAME',
                        help=f'The name in the legend of {CMC_PICTURE} (default: the folder '
                             'of --query_embeddings, e.g. the experiment root\'s).')
    parser.add_argument('--picture_queries', default=10, type=cli.positive_int, metavar='N',
                        help='Queries in the ranked list (default: %(default)s).')
    parser.add_argument('--picture_seed', type=int, metavar='SEED',
                        help='Show a random sample of queries drawn with this seed instead of '
                             'the first ones.')
    parser.add_argument(
        '--verification', action='store_true',
        help='Also score verification over every query-gallery pair the excluder keeps: ROC, '
             'EER, TAR at FAR 1e-2/1e-3/1e-4, best-F1 threshold, under `verification` in the '
             'JSON (thresholds in the metric\'s distance); with --picture_dir also roc.png '
             'and distances.png.')
    parser.add_argument('--target_far', type=cli.probability, metavar='FAR',
                        help='With --verification: also the threshold of this false accept '
                             'rate.')
    return parser


def _progress(done, total):
    print(f'\rEvaluating queries {done}/{total}', end='\n' if done == total else '',
          file=sys.stderr, flush=True)


def _output_paths(args):
    """Every file this run will write, checked before any work is done."""
    paths = [args.filename] if args.filename else []
    if args.picture_dir:
        paths.append(os.path.join(args.picture_dir, CMC_PICTURE))
        if args.verification:
            paths += [os.path.join(args.picture_dir, name)
                      for name in ('roc.png', 'distances.png')]
        if _image_roots(args):
            paths.append(os.path.join(args.picture_dir, RANKED_LIST_PICTURE))
    return paths


def _image_roots(args):
    """{'query': root, 'gallery': root} of the ranked list's images, or None without one."""
    roots = {role: getattr(args, f'{role}_image_root') or args.image_root
             for role in ('query', 'gallery')}
    if not any(roots.values()):
        return None
    for role, other in (('query', 'gallery'), ('gallery', 'query')):
        if roots[role] is None:
            raise InputError(f'--{other}_image_root needs --{role}_image_root (or --image_root '
                             'for both) for the ranked list')
    return roots


def _prepare_outputs(args):
    if _image_roots(args) and not args.picture_dir:
        raise InputError('--image_root (and --query/gallery_image_root) are for the ranked-list '
                         'picture; add --picture_dir')
    if args.run_name and not args.picture_dir:
        raise InputError(f'--run_name names the run in {CMC_PICTURE}; add --picture_dir')
    if args.picture_dir:
        try:
            os.makedirs(args.picture_dir, exist_ok=True)
        except OSError as error:
            raise InputError(f'--picture_dir {args.picture_dir}: {error.strerror}') from None
    for path in _output_paths(args):
        files.check_output(path, args.overwrite)


def _picture_rows(args, query):
    """The rows of the queries in the ranked list: the first ones, or a seeded sample."""
    count = min(args.picture_queries, len(query))
    if args.picture_seed is None:
        return np.arange(count)
    return np.sort(np.random.default_rng(args.picture_seed).choice(
        len(query), size=count, replace=False))


def _picture_images(args, query, gallery, excluder):
    """The `pictures.Images` of the ranked list's queries and of the gallery, or None without
    an image root. Every image they need is checked here, before any work: a missing one is a
    line naming it, its CSV line and its flag (never an OpenCV warning after the metrics)."""
    roots = _image_roots(args) if args.picture_dir else None
    if not roots:
        return None
    from tripletreid import pictures  # OpenCV and matplotlib load only when asked for
    sides = {'query': csv_dataset.subset(query, _picture_rows(args, query)), 'gallery': gallery}
    images = {}
    for role, dataset in sides.items():
        flag = f'--{role}_image_root' if getattr(args, f'{role}_image_root') else '--image_root'
        try:
            csv_dataset.check_images(dataset, roots[role])
        except InputError as error:
            raise InputError(f'{flag} {roots[role]}: {error}') from None
        images[role] = pictures.Images(
            [os.path.join(roots[role], fid) for fid in dataset.fids], dataset.pids,
            _cameras(dataset, excluder))
    return images


def _cameras(dataset, excluder):
    """Each image's camera for the captions: the CSV's column, or what a camera excluder
    reads from the file names; None where neither says."""
    if dataset.cams is None and isinstance(excluder, SameCameraExcluder):
        return excluder.cameras(dataset)
    return dataset.cams


def _run_name(args):
    return args.run_name or os.path.basename(os.path.dirname(os.path.abspath(
        args.query_embeddings)))


def _save_pictures(args, result, images, query_embs, gallery_embs, query, gallery, excluder):
    from tripletreid import pictures
    label = f'{_run_name(args)}: mAP {100 * result["mAP"]:.1f}%'
    pictures.save_cmc_curve({label: result['CMC']}, os.path.join(args.picture_dir, CMC_PICTURE),
                            title=f'CMC, --excluder {args.excluder}')
    if not images:
        return
    ranked, is_match, distances = evaluation.ranked_lists(
        query_embs, gallery_embs, query, gallery, excluder, args.metric,
        _picture_rows(args, query), rerank=_rerank_options(args),
        query_expansion=args.query_expansion)
    pictures.save_ranked_lists(images['query'], images['gallery'], ranked, is_match, distances,
                               os.path.join(args.picture_dir, RANKED_LIST_PICTURE))


def _rerank_options(args):
    """The RerankOptions of --rerank (checked: a bad value is a one-line error), or None."""
    if not args.rerank:
        return None
    if args.rerank_params:
        return rerank_tuning.load_params(args.rerank_params, args.metric, args.normalize)
    return reranking.RerankOptions(args.rerank_k1, args.rerank_k2, args.rerank_lambda)


def _check_protocol_flags(args, explicit):
    """Refuse --tracklet_aggregator without --tracklets and what --gallery_draws excludes."""
    if 'tracklet_aggregator' in explicit and not args.tracklets:
        raise InputError('--tracklet_aggregator applies with --tracklets only')
    if args.tracklets:
        tracklets.compile_spec(args.tracklets)
    if 'draw_seed' in explicit and not args.gallery_draws:
        raise InputError('--draw_seed applies with --gallery_draws only')
    if not args.gallery_draws:
        return
    for flag in ('picture_dir', 'verification'):
        if getattr(args, flag, None):
            raise InputError(f'--{flag} does not apply with --gallery_draws')
    for kind in ('dataset', 'embeddings'):
        query, gallery = getattr(args, f'query_{kind}'), getattr(args, f'gallery_{kind}')
        if os.path.realpath(query) != os.path.realpath(gallery):
            raise InputError(f'--gallery_draws draws query and gallery from one set: give the '
                             f'same --query_{kind} and --gallery_{kind} ({query} and {gallery} '
                             'differ)')


def _tracklet_info(args, query, gallery):
    """The JSON's `tracklets`: None, or the spec, the aggregator and the counts."""
    if not args.tracklets:
        return None
    return {'spec': args.tracklets, 'aggregator': args.tracklet_aggregator,
            'query': len(query), 'gallery': len(gallery)}


def _evaluate_draws(args, dataset, embs, rerank):
    """--gallery_draws: evaluate, print and write the JSON."""
    def evaluate(query_embs, gallery_embs, query, gallery):
        return evaluation.evaluate_embeddings(
            query_embs, gallery_embs, query, gallery,
            excluders.create(args.excluder, gallery, args.camera_pattern), args.metric,
            args.batch_size, 'market' if args.use_market_ap else 'sklearn', None, rerank,
            args.query_expansion)

    result = gallery_draws.evaluate_draws(embs, dataset, args.gallery_draws, args.draw_seed,
                                          evaluate)
    result.update(excluder=args.excluder, normalized=args.normalize, metric=args.metric,
                  tracklets=_tracklet_info(args, dataset, dataset))
    print(evaluation.summary(result))
    print(gallery_draws.spread(result))
    if args.filename:
        files.write_json(args.filename, result)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    given = cli.explicit_flags(parser, argv) & {'rerank_k1', 'rerank_k2', 'rerank_lambda',
                                                'rerank_params'}
    if given and not args.rerank:
        raise InputError(f'--{min(given)} applies with --rerank only')
    if args.rerank_params and given != {'rerank_params'}:
        raise InputError(f'--rerank_params and --{min(given - {"rerank_params"})} conflict: '
                         'the JSON gives k1, k2 and lambda')
    rerank = _rerank_options(args)
    _check_protocol_flags(args, cli.explicit_flags(parser, argv))
    _prepare_outputs(args)
    query = read_csv(args.query_dataset)
    gallery = read_csv(args.gallery_dataset)
    excluder = excluders.create(args.excluder, gallery, args.camera_pattern)
    query_embs, gallery_embs = evaluation.load_query_and_gallery(
        args.query_embeddings, args.gallery_embeddings, query, gallery)
    if args.tracklets:
        query, query_embs = tracklets.aggregate(query, query_embs, args.tracklets,
                                                args.tracklet_aggregator)
        gallery, gallery_embs = tracklets.aggregate(gallery, gallery_embs, args.tracklets,
                                                    args.tracklet_aggregator)
        excluder = excluders.create(args.excluder, gallery, args.camera_pattern)
    if args.normalize:
        query_embs, gallery_embs = map(metrics.unit_rows, (query_embs, gallery_embs))
    if args.gallery_draws:
        return _evaluate_draws(args, query, query_embs, rerank)
    images = _picture_images(args, query, gallery, excluder)
    result = evaluation.evaluate_embeddings(
        query_embs, gallery_embs, query, gallery, excluder, args.metric, args.batch_size,
        'market' if args.use_market_ap else 'sklearn',
        _progress if sys.stderr.isatty() else None, rerank, args.query_expansion)
    result['excluder'] = args.excluder
    result['normalized'] = args.normalize
    result['tracklets'] = _tracklet_info(args, query, gallery)
    if args.target_far is not None and not args.verification:
        raise InputError('--target_far applies with --verification only')
    if args.verification:
        points, result['verification'] = verification.evaluate_pairs(
            lambda: evaluation.batches(query_embs, gallery_embs, query, gallery, excluder,
                                       args.metric, args.batch_size, rerank=rerank,
                                       query_expansion=args.query_expansion),
            args.metric, args.target_far)
        print(verification.report(result['verification']))
    evaluation.warn_skipped(result)
    print(f'{result["num_evaluated_queries"]} of {result["num_queries"]} queries evaluated, '
          f'{len(result["skipped_queries"])} skipped (no valid gallery match); the CMC, mAP '
          'and mINP are over the evaluated ones.')
    print(evaluation.summary(result))
    if args.filename:
        files.write_json(args.filename, result)
    if args.picture_dir:
        _save_pictures(args, result, images, query_embs, gallery_embs, query, gallery,
                       excluder)
        if args.verification:
            verification.save_pictures(points, result['verification'], args.picture_dir,
                                       verification.metric_distance(args.metric))


if __name__ == '__main__':
    cli.run(main)
