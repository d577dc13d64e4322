"""The search index file of search.py: a gallery's embeddings and what is known of each image.

One HDF5 file: `emb` [N, D] float32 (unit length if `normalized`), `paths` (each image's
path: the image root joined to the CSV path), `pids` and `cams` ('' where unknown); attributes
`format`, `version`, `metric`, `normalized`, `fingerprint` (JSON, see `provenance`),
`experiment_root`, `content_id` (new at every write, so that a Faiss structure saved beside
knows whether it is still the index's), and `threshold` once calibrated. Written in memory, then
to a temporary file renamed into place: an interrupted write leaves the old index.
"""
import dataclasses
import io
import uuid

import h5py
import numpy as np

from tripletreid import provenance
from tripletreid.errors import InputError
from tripletreid.files import atomic_path
from tripletreid.metrics import METRICS

FORMAT = 'tripletreid-search-index'
VERSION = 1


@dataclasses.dataclass
class Index:
    emb: np.ndarray      # [N, D] float32
    paths: np.ndarray    # [N] str
    pids: np.ndarray     # [N] str, '' unknown
    cams: np.ndarray     # [N] str, '' unknown
    metric: str
    normalized: bool
    fingerprint: dict    # or None when the embeddings did not say
    experiment_root: str = ''
    threshold: float = None
    content_id: str = ''

    def __len__(self):
        return len(self.emb)

    @property
    def dim(self):
        return self.emb.shape[1]


def known(values, count):
    """`values` as a str array, or `count` times '' if None."""
    return np.full(count, '', dtype=object).astype(str) if values is None else \
        np.asarray(values, dtype=str)


def write(path, index, new_content=True):
    """Write `index` to `path` atomically; with `new_content` (its rows changed) under a new
    content_id (also set on `index`), which makes a saved Faiss structure stale."""
    if new_content or not index.content_id:
        index.content_id = uuid.uuid4().hex
    memory = io.BytesIO()
    with h5py.File(memory, 'w') as f:
        f.create_dataset('emb', data=np.asarray(index.emb, np.float32))
        for name in ('paths', 'pids', 'cams'):
            f.create_dataset(name, data=provenance.encode_paths(getattr(index, name)))
        f.attrs.update({'format': FORMAT, 'version': VERSION, 'metric': index.metric,
                        'normalized': bool(index.normalized),
                        'experiment_root': index.experiment_root or '',
                        'content_id': index.content_id})
        if index.fingerprint is not None:
            f.attrs[provenance.FINGERPRINT] = provenance.dumps(index.fingerprint)
        if index.threshold is not None:
            f.attrs['threshold'] = float(index.threshold)
    with atomic_path(path) as tmp:
        with open(tmp, 'wb') as f:
            f.write(memory.getbuffer())


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def read(path):
    """The Index of the file `path`; a missing, truncated or foreign file is an InputError."""
    try:
        with h5py.File(path, 'r') as f:
            if _text(f.attrs.get('format', '')) != FORMAT:
                raise InputError(f'{path}: not a search index of search.py (no format '
                                 f'attribute {FORMAT!r})')
            if int(f.attrs.get('version', 0)) > VERSION:
                raise InputError(f'{path}: index version {f.attrs["version"]} is newer than '
                                 f'this code reads ({VERSION})')
            try:
                emb = f['emb'][()]
                paths, pids, cams = (provenance.decode_paths(f[name][()])
                                     for name in ('paths', 'pids', 'cams'))
                attrs = dict(f.attrs)
            except KeyError as error:
                raise InputError(f'{path}: index without {error}') from None
            print_ = provenance.stored_fingerprint(f, path)
    except FileNotFoundError:
        raise InputError(f'{path}: no such file') from None
    except OSError as error:
        raise InputError(f'{path}: not a readable index (truncated or not HDF5: '
                         f'{error})') from None
    if emb.ndim != 2 or emb.dtype != np.float32 or not (
            len(paths) == len(pids) == len(cams) == len(emb)):
        raise InputError(f'{path}: inconsistent index (emb {emb.shape} {emb.dtype}, '
                         f'{len(paths)} paths)')
    metric = _text(attrs.get('metric'))
    if metric not in METRICS:
        raise InputError(f'{path}: unknown metric {metric!r}')
    threshold = attrs.get('threshold')
    return Index(emb, paths, pids, cams, metric, bool(attrs.get('normalized')), print_,
                 _text(attrs.get('experiment_root', '')),
                 None if threshold is None else float(threshold),
                 _text(attrs.get('content_id', '')))


def check_compatible(index, path, fingerprint, metric=None, normalized=None, dim=None,
                     source='these embeddings'):
    """Refuse to mix `index` (read from `path`) with embeddings of another model, metric,
    normalisation or size."""
    if dim is not None and dim != index.dim:
        raise InputError(f'{path} holds {index.dim}-D embeddings, {source} are {dim}-D')
    if metric is not None and metric != index.metric:
        raise InputError(f'{path} uses the metric {index.metric}, not {metric}')
    if normalized is not None and normalized != index.normalized:
        raise InputError(f'{path} holds {"" if index.normalized else "un"}normalised '
                         f'embeddings; {source} would be {"" if normalized else "un"}normalised')
    if fingerprint is not None and index.fingerprint is not None:
        differ = provenance.difference(index.fingerprint, fingerprint)
        if differ:
            raise InputError(f'{path} is the index of another model than {source} '
                             f'({differ})')


def appended(index, emb, paths, pids, cams):
    """A new Index: `index` followed by the given rows."""
    return dataclasses.replace(
        index, emb=np.concatenate([index.emb, np.asarray(emb, np.float32)]),
        paths=np.concatenate([index.paths, np.asarray(paths, str)]),
        pids=np.concatenate([index.pids, known(pids, len(emb))]),
        cams=np.concatenate([index.cams, known(cams, len(emb))]))

