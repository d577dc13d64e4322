"""Synthetic evaluation problems of Market-1501 or MSMT17 size (the counts of their test
splits), in memory or written as the CSVs and HDF5 files evaluate.py reads: what
`bench_evaluate.py` and `bench_evaluate_phases.py` time."""
import dataclasses
import os

import h5py
import numpy as np

from tripletreid import provenance
from tripletreid.csv_dataset import Dataset

_CHUNK_ROWS = 8192  # embedding rows made (and written) at a time: bounds the memory


@dataclasses.dataclass(frozen=True)
class Layout:
    """The counts of a test split; gallery = identities' images + distractors + junk."""
    queries: int
    gallery: int
    identities: int
    distractors: int
    junk: int
    cameras: int
    excluder: str

    def scaled(self, scale):
        """Every count times `scale` (the cameras stay)."""
        def times(count):
            return max(1, round(count * scale)) if count else 0
        return dataclasses.replace(
            self, queries=times(self.queries), gallery=times(self.gallery),
            identities=times(self.identities), distractors=times(self.distractors),
            junk=times(self.junk))


LAYOUTS = {
    'market1501': Layout(3368, 15913, 750, 2793, 1000, 6, 'market1501'),
    'msmt17': Layout(11659, 82161, 3060, 0, 0, 15, 'camera'),
}


def file_names(layout, folder, pids, cams):
    """Market-1501's file names (its excluder reads them) or MSMT17's (camera in a column)."""
    if layout.excluder == 'market1501':
        return np.array([f'{folder}/{pid}_c{cam}s1_{i:06d}_00.jpg'
                         for i, (pid, cam) in enumerate(zip(pids, cams))])
    return np.array([f'{folder}/{pid}/{pid}_{cam:02d}_{i:06d}.jpg'
                     for i, (pid, cam) in enumerate(zip(pids, cams))])


def make_dataset(layout, name, folder, ids, cams):
    pids = np.array(['-1' if i < 0 else f'{i:04d}' for i in ids])
    fids = file_names(layout, folder, pids, cams)
    return Dataset(name, pids, fids, cams.astype(str) if layout.excluder == 'camera' else None,
                   np.arange(1, len(pids) + 1))


def synthetic_datasets(layout, seed):
    """(query, gallery) Datasets with identity codes (0 distractor, -1 junk) and cameras;
    every query identity is in the gallery."""
    rng = np.random.default_rng(seed)
    n_people = layout.gallery - layout.distractors - layout.junk
    gallery_ids = np.concatenate([rng.integers(1, layout.identities + 1, n_people),
                                  np.zeros(layout.distractors, int), np.full(layout.junk, -1)])
    query_ids = rng.integers(1, layout.identities + 1, layout.queries)
    gallery = make_dataset(layout, 'gallery.csv', 'bounding_box_test', gallery_ids,
                           rng.integers(1, layout.cameras + 1, layout.gallery))
    query = make_dataset(layout, 'query.csv', 'query', query_ids,
                         rng.integers(1, layout.cameras + 1, layout.queries))
    return (query, query_ids), (gallery, gallery_ids)


def embedding_chunks(ids, identities, dim, seed, role):
    """float32 embeddings (identity centre + 1.5 x noise; distractors and junk noise only),
    _CHUNK_ROWS rows at a time, each chunk from its own seeded generator."""
    centres = np.random.default_rng(seed).standard_normal((identities + 1, dim))
    for start in range(0, len(ids), _CHUNK_ROWS):
        part = ids[start:start + _CHUNK_ROWS]
        rng = np.random.default_rng([seed, role, start])
        own = centres[np.maximum(part, 0)] * (part > 0)[:, None]
        yield (own + 1.5 * rng.standard_normal((len(part), dim))).astype(np.float32)


def synthetic_problem(layout, dim, seed):
    """Query and gallery Datasets and embeddings, in memory."""
    (query, query_ids), (gallery, gallery_ids) = synthetic_datasets(layout, seed)
    return (query, np.concatenate(list(embedding_chunks(query_ids, layout.identities, dim,
                                                        seed, 0))),
            gallery, np.concatenate(list(embedding_chunks(gallery_ids, layout.identities, dim,
                                                          seed, 1))))


def write_problem(layout, dim, seed, folder):
    """Write query/gallery CSVs and HDF5 embeddings (with their paths) into `folder`;
    return (query, gallery) Datasets whose csv_path are the files."""
    written = []
    for role, (dataset, ids) in enumerate(synthetic_datasets(layout, seed)):
        name = os.path.join(folder, dataset.csv_path)
        with open(name, 'w') as f:
            columns = [dataset.pids, dataset.fids] + (
                [] if dataset.cams is None else [dataset.cams])
            f.writelines(','.join(row) + '\n' for row in zip(*columns))
        with h5py.File(name[:-len('.csv')] + '.h5', 'w') as f:
            emb = f.create_dataset('emb', (len(ids), dim), dtype=np.float32)
            for start, chunk in zip(range(0, len(ids), _CHUNK_ROWS),
                                    embedding_chunks(ids, layout.identities, dim, seed, role)):
                emb[start:start + len(chunk)] = chunk
            f[provenance.PATHS] = provenance.encode_paths(dataset.fids)
        written.append(dataclasses.replace(dataset, csv_path=name))
    return written
