"""What search.py does with images and embeddings files: embed images with an experiment (and
say which model did), read embeddings files (whole or in shards) checked against their CSV, and
turn ranked results into rows for a CSV or JSON answer."""
import dataclasses
import h5py
import numpy as np

from tripletreid import evaluation, metrics, provenance
from tripletreid.csv_dataset import subset
from tripletreid.errors import InputError
from tripletreid.experiment import read_experiment


@dataclasses.dataclass(frozen=True)
class EmbedOptions:
    """How to embed images: the experiment, checkpoint (None: the newest, or the index's),
    test-time views and loading."""
    experiment_root: str
    checkpoint: str = None
    flip: bool = False
    crop: str = None
    aggregator: str = None
    batch_size: int = 256
    loading_threads: int = 8
    quiet: bool = True


def options_for_index(index, index_path, experiment_root=None, checkpoint=None,
                      batch_size=256, loading_threads=8, quiet=True):
    """EmbedOptions that embed as the index's model did: its experiment (unless given), the
    checkpoint of its step, its views and aggregator."""
    root = experiment_root or index.experiment_root
    if not root:
        raise InputError(f'{index_path} does not name its experiment; give --experiment_root')
    print_ = index.fingerprint
    if print_ is None:
        raise InputError(f'{index_path} does not say which model made it, so images cannot be '
                         'embedded to match it; query with --embeddings instead')
    flip, crop = provenance.views_of(print_)
    step = print_.get('checkpoint_step')
    if checkpoint is None and step is not None:
        checkpoint = f'checkpoint-{step}'
    return EmbedOptions(root, checkpoint, flip, crop, print_.get('aggregator'), batch_size,
                        loading_threads, quiet)


def embed_images(options, dataset, root):
    """(float32 embeddings [N, D], fingerprint) of the images of `dataset` below `root`."""
    from tripletreid import inference, pipeline
    spec, trained = read_experiment(options.experiment_root)
    views = inference.Views(options.flip, options.crop)
    inference.check_views(views, options.aggregator, trained.get('crop_augment'))
    pipeline.check_readable(dataset, root, options.loading_threads, options.quiet)
    model, checkpoint = inference.load_model(options.experiment_root, spec, options.checkpoint)
    emb_aug = inference.embed(model, pipeline.image_paths(dataset.fids, root), spec, views,
                              options.batch_size, options.loading_threads, options.quiet)
    emb = inference.aggregate(emb_aug, options.aggregator).astype(np.float32)
    return emb, provenance.fingerprint(spec, views.names(), options.aggregator, checkpoint)


def model_fingerprint(options):
    """The fingerprint embed_images would give, without embedding anything."""
    from tripletreid import inference
    spec, _ = read_experiment(options.experiment_root)
    views = inference.Views(options.flip, options.crop)
    _, checkpoint = inference.load_model(options.experiment_root, spec, options.checkpoint)
    return provenance.fingerprint(spec, views.names(), options.aggregator, checkpoint)


def _shard_of(path):
    try:
        with h5py.File(path, 'r') as f:
            print_ = provenance.stored_fingerprint(f, path)
            shard = f.attrs.get(provenance.SHARD)
            if shard is None:
                return None, print_
            shard = shard.decode() if isinstance(shard, bytes) else str(shard)
            index, count = (int(part) for part in shard.split('/'))
            return (index, count, int(f.attrs[provenance.FIRST_ROW]),
                    int(f.attrs[provenance.DATASET_ROWS])), print_
    except FileNotFoundError:
        raise InputError(f'{path}: no such file') from None
    except (OSError, KeyError, ValueError) as error:
        raise InputError(f'{path}: not a readable embeddings file ({error})') from None


def read_embeddings(paths, dataset):
    """(float32 embeddings of every row of `dataset`, fingerprint or None) from one embeddings
    file, or from the N files of embed.py --shard I/N (in any order), each checked against its
    rows of the CSV."""
    shards = [(path, *_shard_of(path)) for path in paths]
    prints = {provenance.dumps(p) for _, _, p in shards if p is not None}
    if len(prints) > 1:
        raise InputError(f'{", ".join(paths)}: made by different models or views')
    print_ = provenance.loads(prints.pop(), paths[0]) if prints else None
    if len(paths) == 1 and shards[0][1] is None:
        return evaluation.load_embeddings(paths[0], dataset).astype(np.float32), print_
    if any(shard is None for _, shard, _ in shards):
        whole = next(path for path, shard, _ in shards if shard is None)
        raise InputError(f'{whole}: not a shard (embed.py --shard I/N), so it cannot be '
                         'combined with other embeddings files')
    shards.sort(key=lambda item: item[1][0])
    count = shards[0][1][1]
    found = [shard[0] for _, shard, _ in shards]
    if found != list(range(1, count + 1)) or any(s[1] != count for _, s, _ in shards):
        raise InputError(f'{", ".join(paths)}: shards {found} given, need each of 1..{count} '
                         'of one split once')
    parts = []
    for path, (_, _, first, rows), _ in shards:
        if rows != len(dataset):
            raise InputError(f'{path} is a shard of a CSV of {rows} rows, but '
                             f'{dataset.csv_path} has {len(dataset)}')
        with h5py.File(path, 'r') as f:
            size = len(f['emb'])
        parts.append(evaluation.load_embeddings(
            path, subset(dataset, slice(first, first + size))).astype(np.float32))
    emb = np.concatenate(parts)
    if len(emb) != len(dataset):
        raise InputError(f'{", ".join(paths)}: {len(emb)} rows in all, but '
                         f'{dataset.csv_path} has {len(dataset)}')
    return emb, print_


def prepare(emb, normalized):
    """float32 embeddings, unit length if `normalized`."""
    emb = np.asarray(emb, dtype=np.float32)
    return metrics.unit_rows(emb).astype(np.float32) if normalized else emb


def group_codes(query_cams, gallery_cams):
    """Integer codes of the cameras on both sides (-1 where unknown, '')."""
    vocabulary = np.unique(np.concatenate([query_cams, gallery_cams]))
    codes = {value: (i if value != '' else -1) for i, value in enumerate(vocabulary)}
    return (np.array([codes[c] for c in query_cams], dtype=np.int64),
            np.array([codes[c] for c in gallery_cams], dtype=np.int64))


def answer_rows(query_paths, query_pids, index, results, threshold=None):
    """One dict per (query, rank) of `results`: rank, gallery path, identity, camera, distance,
    and `match` (False beyond `threshold`); a query with no result gets no row."""
    rows = []
    for q, (indices, distances) in enumerate(zip(results.indices, results.distances)):
        for rank, (g, distance) in enumerate(zip(indices, distances), start=1):
            if g < 0:
                break
            rows.append({'query': str(query_paths[q]),
                         'query_identity': str(query_pids[q]) if query_pids is not None else '',
                         'rank': rank, 'gallery_path': str(index.paths[g]),
                         'identity': str(index.pids[g]), 'camera': str(index.cams[g]),
                         'distance': float(distance),
                         'match': threshold is None or bool(distance <= threshold)})
    return rows

