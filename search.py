#!/usr/bin/env python3
"""Search a gallery of person images with a trained model: index it, add to it, query it,
calibrate a match threshold.

  search.py index --experiment_root E --images CSV|FOLDER [--image_root R] --output g.h5
  search.py index --embeddings x.h5 [part2.h5 ...] --dataset x.csv --output g.h5
  search.py add --index g.h5 --images CSV|FOLDER|FILE... (or --embeddings --dataset)
  search.py query --index g.h5 --images CSV|FOLDER|FILE... [--top_k 10] [--output r.csv|json]
  search.py calibrate --index g.h5 --images labelled.csv [--target_far 1e-3]

The index (one HDF5 file) holds the embeddings, each image's path, identity and camera when
known (CSV columns, or --camera_pattern), the metric, whether the embeddings are normalised,
and the model's fingerprint (network, head, sizes, views, aggregator, checkpoint step): `add`
and `query` embed with that same model and refuse another. `--backend exact` (default) is
exact, in memory bounded whatever the gallery size; `--backend faiss` uses a Faiss flat, IVF or
HNSW structure, saved beside the index (<index>.<type>.faiss) and rebuilt when the index
changes. Distances are the metric's (euclidean, not squared); ties rank in gallery order.
"""
import argparse
import csv
import io
import json
import os
import sys

from tripletreid import cli, experiment, files, metrics
from tripletreid.errors import InputError

PICTURE = 'ranked_list.png'
PICTURE_QUERIES = 10


def add_image_flags(parser, what):
    add = parser.add_argument
    add('--images', nargs='+', metavar='CSV|FOLDER|FILE',
        help=f'The {what}: a dataset CSV (identity,path[,camera]), a folder (searched '
             'recursively) or image files.')
    add('--image_root', type=cli.readable_directory,
        help='Folder the CSV paths are relative to (default: the CSV\'s folder).')
    add('--camera_pattern', metavar='REGEX',
        help=r'Camera of each image: the named group `camera` of this regular expression '
             r'searched in its path, e.g. "_c(?P<camera>\d+)".')
    add('--embeddings', nargs='+', metavar='H5',
        help='Instead of --images: embeddings already computed (embed.py), or the N files of '
             'embed.py --shard I/N; with --dataset.')
    add('--dataset', metavar='CSV', help='With --embeddings: the CSV of their rows.')


def add_backend_flags(parser):
    add = parser.add_argument
    add('--backend', choices=('exact', 'faiss'), default='exact',
        help='exact (default): chunked BLAS; faiss: a Faiss structure (needs the search extra).')
    add('--faiss_type', choices=('flat', 'ivf', 'hnsw'), default='flat')
    add('--nlist', type=cli.positive_int, default=1024, help='IVF clusters (default: %(default)s).')
    add('--nprobe', type=cli.positive_int, default=16,
        help='IVF clusters searched (default: %(default)s).')
    add('--hnsw_m', type=cli.positive_int, default=32, help='HNSW links (default: %(default)s).')
    add('--ef_construction', type=cli.positive_int, default=80,
        help='HNSW build beam (default: %(default)s).')
    add('--ef_search', type=cli.positive_int, default=64,
        help='HNSW search beam (default: %(default)s).')


def build_parser():
    parser = cli.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest='command', required=True, metavar='COMMAND',
                                     parser_class=cli.ArgumentParser)

    index = commands.add_parser('index', help='Make an index of a gallery.')
    experiment.add_experiment_flags(index)
    index._option_string_actions['--experiment_root'].required = False
    add_image_flags(index, 'gallery images')
    index.add_argument('--output', required=True, help='The index file to write (.h5).')
    index.add_argument('--metric', choices=metrics.METRICS, default='euclidean')
    index.add_argument('--normalize', action='store_true',
                       help='Scale every embedding (gallery and queries) to unit length.')
    index.add_argument('--overwrite', action='store_true')
    experiment.add_view_flags(index)
    add_backend_flags(index)

    add = commands.add_parser('add', help='Append images to an index (atomically).')
    add.add_argument('--index', required=True)
    add.add_argument('--experiment_root', help='Default: the index\'s.')
    add_image_flags(add, 'images to add')
    add.add_argument('--batch_size', type=cli.positive_int, default=256)
    add.add_argument('--loading_threads', type=cli.positive_int, default=8)

    query = commands.add_parser('query', help='The nearest gallery images of each query.')
    query.add_argument('--index', required=True)
    query.add_argument('--experiment_root', help='Default: the index\'s.')
    add_image_flags(query, 'query images')
    query.add_argument('--top_k', type=cli.positive_int, default=10)
    query.add_argument('--rerank', action='store_true',
                       help='k-reciprocal re-ranking (exact backend; distances are then the '
                            're-ranked ones; memory grows with the gallery).')
    query.add_argument('--exclude_same_camera', action='store_true',
                       help='Never return a gallery image of the query\'s camera.')
    query.add_argument('--threshold', type=cli.finite_float,
                       help='Matches farther than this are marked "no match" (default: the '
                            'index\'s calibrated threshold, if any).')
    query.add_argument('--output', help='results.csv or results.json (default: CSV to stdout).')
    query.add_argument('--picture_dir', help=f'Write {PICTURE} (the first {PICTURE_QUERIES} '
                                             'queries and their matches) here.')
    query.add_argument('--overwrite', action='store_true')
    query.add_argument('--batch_size', type=cli.positive_int, default=256)
    query.add_argument('--loading_threads', type=cli.positive_int, default=8)
    add_backend_flags(query)

    calibrate = commands.add_parser(
        'calibrate', help='Choose a match threshold from labelled queries; store it in the index.')
    calibrate.add_argument('--index', required=True)
    calibrate.add_argument('--experiment_root', help='Default: the index\'s.')
    add_image_flags(calibrate, 'labelled query images (a CSV)')
    calibrate.add_argument('--target_far', type=cli.probability,
                           help='The threshold of this false accept rate (default: best F1).')
    calibrate.add_argument('--exclude_same_camera', action='store_true')
    calibrate.add_argument('--batch_size', type=cli.positive_int, default=256)
    calibrate.add_argument('--loading_threads', type=cli.positive_int, default=8)
    return parser


def log(message):
    print(message, file=sys.stderr)


def check_sources(args):
    if bool(args.images) == bool(args.embeddings):
        raise InputError('give either --images or --embeddings (with --dataset)')
    if args.embeddings and not args.dataset:
        raise InputError('--embeddings needs --dataset, the CSV of their rows')
    if args.dataset and not args.embeddings:
        raise InputError('--dataset goes with --embeddings')


def read_sources(args, options):
    """(embeddings, fingerprint, dataset, root) of --images or --embeddings/--dataset;
    `options` (EmbedOptions or a callable giving them) embeds images."""
    from tripletreid import image_lists, indexing
    if args.embeddings:
        dataset, root = image_lists.read_images([args.dataset], args.image_root,
                                                args.camera_pattern)
        emb, print_ = indexing.read_embeddings(args.embeddings, dataset)
        return emb, print_, dataset, root
    dataset, root = image_lists.read_images(args.images, args.image_root, args.camera_pattern)
    cli.quiet_tensorflow()
    emb, print_ = indexing.embed_images(options() if callable(options) else options, dataset,
                                        root)
    return emb, print_, dataset, root


def faiss_options(args):
    from tripletreid import nearest
    return nearest.FaissOptions(args.faiss_type, args.nlist, args.nprobe, args.hnsw_m,
                                args.ef_construction, args.ef_search)


def searcher(args, index):
    from tripletreid import nearest
    if args.backend == 'exact':
        return nearest.ExactSearch(index.emb, index.metric)
    options = faiss_options(args)
    nearest.import_faiss()
    structure = nearest.faiss_structure(args.index if args.command != 'index' else args.output,
                                        index.emb, options, index.content_id, log)
    return nearest.FaissSearch(index.emb, index.metric, structure, options)


def run_index(args):
    from tripletreid import image_lists, indexing, search_index
    check_sources(args)
    files.check_output(args.output, args.overwrite)
    if args.images and not args.experiment_root:
        raise InputError('--images needs --experiment_root, the model that embeds them')
    if args.backend == 'faiss':
        from tripletreid import nearest
        nearest.import_faiss()
    options = indexing.EmbedOptions(
        args.experiment_root, args.checkpoint, args.flip_augment, args.crop_augment,
        args.aggregator, args.batch_size, args.loading_threads, args.quiet)
    emb, print_, dataset, root = read_sources(args, options)
    if print_ is None:
        log(f'warning: {args.embeddings[0]} does not say which model made it; the index cannot '
            'refuse embeddings of another model')
    index = search_index.Index(
        indexing.prepare(emb, args.normalize), image_lists.full_paths(dataset, root),
        search_index.known(dataset.pids, len(dataset)),
        search_index.known(dataset.cams, len(dataset)), args.metric, args.normalize, print_,
        args.experiment_root or '')
    search_index.write(args.output, index)
    log(f'Wrote {args.output}: {len(index)} images, {index.dim}-D, {args.metric}'
        f'{", normalised" if args.normalize else ""}')
    if args.backend == 'faiss':
        searcher(args, index)


def run_add(args):
    from tripletreid import image_lists, indexing, search_index
    check_sources(args)
    index = search_index.read(args.index)
    files.check_output(args.index, True)
    emb, print_, dataset, root = read_sources(args, lambda: indexing.options_for_index(
        index, args.index, args.experiment_root, batch_size=args.batch_size,
        loading_threads=args.loading_threads, quiet=False))
    source = args.embeddings[0] if args.embeddings else 'the model embedding the images'
    search_index.check_compatible(index, args.index, print_, dim=emb.shape[1], source=source)
    bigger = search_index.appended(index, indexing.prepare(emb, index.normalized),
                                   image_lists.full_paths(dataset, root), dataset.pids,
                                   dataset.cams)
    search_index.write(args.index, bigger)
    log(f'Added {len(emb)} images to {args.index}: {len(bigger)} in all')


def queries_of(args, index):
    """(query embeddings, dataset, root), checked against the index."""
    from tripletreid import indexing, search_index
    emb, print_, dataset, root = read_sources(args, lambda: indexing.options_for_index(
        index, args.index, args.experiment_root, batch_size=args.batch_size,
        loading_threads=args.loading_threads))
    source = args.embeddings[0] if args.embeddings else 'the model embedding the queries'
    search_index.check_compatible(index, args.index, print_, dim=emb.shape[1], source=source)
    return indexing.prepare(emb, index.normalized), dataset, root


def camera_groups(dataset, index, flag):
    from tripletreid import indexing, search_index
    cams = search_index.known(dataset.cams, len(dataset))
    if '' in cams:
        row = list(cams).index('')
        raise InputError(f'{flag}: the camera of {dataset.where(row)} ({dataset.fids[row]}) '
                         'is unknown; give a camera column or --camera_pattern')
    return indexing.group_codes(cams, index.cams)


def reranked(args, index, queries, k, groups):
    """Results of k-reciprocal re-ranking of the queries against the whole index."""
    import numpy as np

    from tripletreid import nearest, reranking
    if args.backend != 'exact':
        raise InputError('--rerank works with --backend exact only')
    reranker = reranking.KReciprocal(queries, index.emb, index.metric,
                                     reranking.RerankOptions())
    distances = metrics.Distances(index.emb, index.metric)
    indices, values = [], []
    for start in range(0, len(queries), args.batch_size):
        rows = np.arange(start, min(start + args.batch_size, len(queries)))
        batch = reranker(rows, distances(queries[rows]))
        if groups is not None:
            batch[(groups[0][rows, None] == groups[1]) & (groups[0][rows, None] >= 0)] = np.inf
        order = np.argsort(batch, axis=1, kind='stable')[:, :k]
        found = np.take_along_axis(batch, order, axis=1)
        indices.append(np.where(np.isfinite(found), order, -1))
        values.append(found)
    return nearest.Results(np.concatenate(indices), np.concatenate(values))


def write_answer(rows, output):
    fields = ['query', 'query_identity', 'rank', 'gallery_path', 'identity', 'camera',
              'distance', 'match']
    if output and output.lower().endswith('.json'):
        grouped = {}
        for row in rows:
            grouped.setdefault(row['query'], []).append(
                {key: row[key] for key in fields[2:]})
        text = json.dumps([{'query': query, 'results': results}
                           for query, results in grouped.items()], indent=1) + '\n'
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fields, lineterminator='\n')
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, 'distance': repr(row['distance']),
                             'match': 'match' if row['match'] else 'no match'})
        text = buffer.getvalue()
    if not output:
        sys.stdout.write(text)
        return
    with files.atomic_path(output) as tmp:
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(text)


def run_query(args):
    import numpy as np

    from tripletreid import image_lists, indexing, search_index
    check_sources(args)
    if args.output:
        if not args.output.lower().endswith(('.csv', '.json')):
            raise InputError(f'--output {args.output}: must end in .csv or .json')
        files.check_output(args.output, args.overwrite)
    picture = os.path.join(args.picture_dir, PICTURE) if args.picture_dir else None
    if picture:
        if not os.path.isdir(args.picture_dir):
            raise InputError(f'--picture_dir {args.picture_dir}: no such directory')
        files.check_output(picture, args.overwrite)
    index = search_index.read(args.index)
    if args.backend == 'faiss':
        from tripletreid import nearest
        nearest.import_faiss()
    queries, dataset, root = queries_of(args, index)
    groups = camera_groups(dataset, index, '--exclude_same_camera') \
        if args.exclude_same_camera else None
    threshold = args.threshold if args.threshold is not None else index.threshold
    if args.rerank:
        results = reranked(args, index, queries, args.top_k, groups)
    else:
        results = searcher(args, index).search(queries, args.top_k,
                                                *(groups if groups else (None, None)))
    query_paths = image_lists.full_paths(dataset, root)
    rows = indexing.answer_rows(query_paths, dataset.pids, index, results, threshold)
    write_answer(rows, args.output)
    if picture:
        from tripletreid import pictures
        count = min(PICTURE_QUERIES, len(queries))
        ranked = results.indices[:count]
        if dataset.pids is not None:
            is_match = (index.pids[np.maximum(ranked, 0)] == dataset.pids[:count, None])
        else:
            limit = np.inf if threshold is None else threshold
            is_match = results.distances[:count] <= limit
        queries = pictures.Images(query_paths[:count], dataset.pids, dataset.cams)
        gallery = pictures.Images(index.paths, index.pids, index.cams)
        pictures.save_ranked_lists(queries, gallery, ranked, is_match & (ranked >= 0),
                                   results.distances[:count], picture)


def run_calibrate(args):
    import numpy as np

    from tripletreid import image_lists, search_index, verification
    check_sources(args)
    index = search_index.read(args.index)
    files.check_output(args.index, True)
    queries, dataset, root = queries_of(args, index)
    if dataset.pids is None:
        raise InputError('calibrate needs identities: give the queries as a CSV')
    if (index.pids == '').any():
        row = int(np.flatnonzero(index.pids == '')[0])
        raise InputError(f'{args.index}: the identity of {index.paths[row]} is unknown; '
                         'calibrate needs an index of labelled images')
    groups = camera_groups(dataset, index, '--exclude_same_camera') \
        if args.exclude_same_camera else None
    query_paths = image_lists.full_paths(dataset, root)
    distances = metrics.Distances(index.emb, index.metric)

    def batches():
        for start in range(0, len(queries), args.batch_size):
            rows = np.arange(start, min(start + args.batch_size, len(queries)))
            excluded = query_paths[rows, None] == index.paths  # an image is not its own pair
            if groups is not None:
                excluded |= (groups[0][rows, None] == groups[1]) & (groups[0][rows, None] >= 0)
            yield rows, distances(queries[rows]), dataset.pids[rows, None] == index.pids, \
                excluded

    _, result = verification.evaluate_pairs(batches, index.metric, args.target_far)
    chosen = result['target_far_threshold'] if args.target_far is not None else \
        result['best_f1']
    index.threshold = chosen['threshold']
    search_index.write(args.index, index, new_content=False)
    print(verification.report(result))
    what = f'FAR {args.target_far:g}' if args.target_far is not None else 'best F1'
    log(f'Stored the threshold {index.threshold:.6g} ({what}) in {args.index}')


COMMANDS = {'index': run_index, 'add': run_add, 'query': run_query, 'calibrate': run_calibrate}


def main(argv=None):
    args = build_parser().parse_args(argv)
    COMMANDS[args.command](args)


if __name__ == '__main__':
    cli.run(main)
