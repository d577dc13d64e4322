"""An export's check of itself: the exported model, run in its own runtime
(`tripletreid.runtimes`), against embed.py's code (`tripletreid.inference`, no test-time
augmentation) on the same image files; optionally the mAP and rank-1 of both on a query and a
gallery.

The difference is the largest relative one over the images, |e - r| / |r| (euclidean norms of
an exported embedding e and embed.py's r). A float32 export is refused beyond 1e-4; a quantised
one is kept beyond its stated tolerance (`TOLERANCES`) with a warning, and refused beyond a
tolerance the caller gives; a NaN difference is always refused.
"""
import dataclasses
import os
import tempfile

import numpy as np
import tensorflow as tf

import excluders
from tripletreid import evaluation, inference, pipeline, runtimes
from tripletreid.csv_dataset import check_images, read_csv
from tripletreid.errors import InputError

# Largest relative difference accepted, by quantisation (`none`: float32 exports of any format).
# The quantised ones catch a broken conversion, not a small loss: on CUHK03 val/ a lunet's
# largest differences were 0.012 (float16), 0.097 (dynamic_int8) and 0.67-0.75 (int8, calibrated
# on 100 train/ images; two runs) for mAP changes of at most 0.23 points (BENCHMARKS.md): judge
# a quantised export by the mAP of --verify_query / --verify_gallery.
TOLERANCES = {'none': 1e-4, 'float16': 0.05, 'dynamic_int8': 0.25, 'int8': 1.0}
SYNTHETIC_COUNT = 8


def read_images(paths):
    """The uint8 RGB pixels [h, w, 3] of image files, decoded as embed.py decodes them."""
    return [tf.io.decode_image(tf.io.read_file(path), channels=3,
                               expand_animations=False).numpy() for path in paths]


def read_image_csv(csv_path, image_root, flag):
    """A checked CSV of images (for --verify_images, --representative, ...) and its paths."""
    if csv_path is None:
        return None, None
    dataset = read_csv(csv_path)
    if not len(dataset):
        raise InputError(f'{flag} {csv_path}: no images')
    check_images(dataset, image_root or '')
    return dataset, pipeline.image_paths(dataset.fids, image_root)


def synthetic_images(size, count=SYNTHETIC_COUNT, seed=0):
    """Smooth random RGB images (coarse noise, upsampled, plus fine noise) of a few sizes around
    the network input `size`: smaller, equal, larger, and of another aspect ratio."""
    rng = np.random.default_rng(seed)
    height, width = size
    sizes = [(height, width), (height * 9 // 8, width * 9 // 8), (max(height // 2, 4),
             max(width // 2, 4)), (height + 7, max(width - 3, 4))]
    images = []
    for i in range(count):
        h, w = sizes[i % len(sizes)]
        coarse = rng.uniform(0, 255, (-(-h // 4), -(-w // 4), 3))
        image = np.repeat(np.repeat(coarse, 4, axis=0), 4, axis=1)[:h, :w]
        images.append(np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8))
    return images


def relative_difference(emb, reference):
    """max over rows of |emb - reference| / |reference|."""
    norms = np.maximum(np.linalg.norm(reference, axis=1), 1e-12)
    return float((np.linalg.norm(emb - reference, axis=1) / norms).max())


@dataclasses.dataclass
class Retrieval:
    """A query and a gallery to score an export on, with the original model's results."""
    query: object          # csv_dataset.Dataset
    gallery: object
    query_images: list
    gallery_images: list
    excluder: str
    metric: str
    original: dict         # {'mAP', 'rank1'} of embed.py's embeddings


def scores(query_emb, gallery_emb, retrieval):
    result = evaluation.evaluate_embeddings(
        query_emb.astype(np.float64), gallery_emb.astype(np.float64), retrieval.query,
        retrieval.gallery, excluders.create(retrieval.excluder, retrieval.gallery),
        retrieval.metric)
    return {'mAP': result['mAP'], 'rank1': result['CMC'][0]}


class Checker:
    """What the exports of one model are checked against, computed once for all formats.

    `verify_csv` (or None: synthetic images), `query_csv` and `gallery_csv` (or None) are CSVs
    below `image_root`; `excluder` and `metric` score the retrieval.
    """

    def __init__(self, model, spec, verify_csv=None, image_root=None, query_csv=None,
                 gallery_csv=None, excluder=None, metric='euclidean', batch_size=32):
        self.batch_size = batch_size
        _, paths = read_image_csv(verify_csv, image_root, '--verify_images')
        query, query_paths = read_image_csv(query_csv, image_root, '--verify_query')
        gallery, gallery_paths = read_image_csv(gallery_csv, image_root, '--verify_gallery')

        def embed(files):
            return inference.embed(model, files, spec, inference.Views(), batch_size,
                                   quiet=True)[0]

        if paths is None:
            self.source = f'{SYNTHETIC_COUNT} synthetic images'
            self.images = synthetic_images(spec.net_size)
            with tempfile.TemporaryDirectory() as folder:
                paths = [os.path.join(folder, f'{i}.png') for i in range(len(self.images))]
                for path, image in zip(paths, self.images):
                    tf.io.write_file(path, tf.io.encode_png(image))
                self.reference = embed(paths)
        else:
            self.source = f'{len(paths)} images of {verify_csv}'
            self.images = read_images(paths)
            self.reference = embed(paths)
        self.retrieval = None
        if query is not None:
            query_images, gallery_images = read_images(query_paths), read_images(gallery_paths)
            original = scores(embed(query_paths), embed(gallery_paths), Retrieval(
                query, gallery, [], [], excluder, metric, {}))
            self.retrieval = Retrieval(query, gallery, query_images, gallery_images, excluder,
                                       metric, original)

    def check(self, format_, path, quantize='none', tolerance=None):
        """Check the exported file `path`: a dict of the difference, its tolerance, whether it
        is within and, with a query and gallery, the export's and the original's mAP and
        rank-1. An InputError (the export is refused) if the difference is NaN, or above the
        tolerance for a float32 export or for a `tolerance` given; a quantised export beyond
        its default tolerance is kept, and `describe` says so."""
        refuse = quantize == 'none' or tolerance is not None
        tolerance = TOLERANCES[quantize] if tolerance is None else tolerance
        run = runtimes.runner(format_, path)
        emb = runtimes.embed_images(run, self.images, self.batch_size)
        difference = relative_difference(emb, self.reference)
        within = bool(difference <= tolerance)  # NaN is not
        result = {'format': format_, 'quantize': quantize, 'images': self.source,
                  'relative_difference': difference, 'tolerance': tolerance, 'within': within}
        if not within and (refuse or np.isnan(difference)):
            kind = 'float32' if quantize == 'none' else quantize
            raise InputError(
                f'the {format_} export ({kind}) differs from embed.py by up to '
                f'{difference:.3g} (relative, on {self.source}), above the tolerance of '
                f'{tolerance:g} for {kind}: refused, nothing written')
        if self.retrieval is not None:
            retrieval = self.retrieval
            result['retrieval'] = scores(
                runtimes.embed_images(run, retrieval.query_images, self.batch_size),
                runtimes.embed_images(run, retrieval.gallery_images, self.batch_size),
                retrieval)
            result['original_retrieval'] = retrieval.original
        return result


def describe(result):
    """The lines export.py prints of a check's result."""
    kind = 'float32' if result['quantize'] == 'none' else result['quantize']
    lines = [f'Verified the {result["format"]} export ({kind}) on {result["images"]}: largest '
             f'relative difference from embed.py {result["relative_difference"]:.2e} '
             f'(tolerance for {kind}: {result["tolerance"]:g})']
    if not result['within']:
        lines.append(f'  Warning: beyond the tolerance for {kind}; compare the mAP with '
                     f'--verify_query and --verify_gallery before using it')
    if 'retrieval' in result:
        ours, original = result['retrieval'], result['original_retrieval']
        lines.append(f'  mAP {ours["mAP"]:.2%} (original {original["mAP"]:.2%}), rank-1 '
                     f'{ours["rank1"]:.2%} (original {original["rank1"]:.2%})')
    return lines


def representative_images(dataset_paths, count, seed=0):
    """A function returning `count` images (or all) of the paths, sampled with `seed`, as the
    int8 calibration's representative data (read on demand)."""
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(dataset_paths), min(count, len(dataset_paths)),
                               replace=False))

    def images():
        for i in chosen:
            yield read_images([dataset_paths[i]])[0]
    return images
