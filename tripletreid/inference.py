"""Inference: a trained experiment's model, the test-time views of an image, embedding a list of
images, aggregating views and writing the official HDF5 layout."""
import dataclasses
import io
import os
import sys

import h5py
import numpy as np
import tensorflow as tf

from tripletreid import pipeline, progress
from tripletreid.aggregators import AGGREGATORS
from tripletreid.checkpoints import complete_checkpoints, latest_checkpoint, restore_model
from tripletreid.errors import InputError
from tripletreid.experiment import read_experiment
from tripletreid.files import atomic_path
from tripletreid.fused_batch_norm import fuse
from tripletreid.model import build_model

CROPS = ('center', 'top_left', 'top_right', 'bottom_left', 'bottom_right')


@dataclasses.dataclass(frozen=True)
class Views:
    """The test-time views of each image: with `flip` also the mirrored image; `crop` None
    (the image resized to the network input), `center`, `five` (centre and corners of the
    pre-crop-sized image) or `avgpool` (the whole pre-crop-sized image)."""
    flip: bool = False
    crop: str = None

    def names(self):
        """Names of the views of each image, in the official order and spelling."""
        flips = ['original', 'original_flip'] if self.flip else ['original']
        crops = {'five': CROPS, 'center': ['center'], 'avgpool': ['avgpool']}.get(
            self.crop, ['resize'])
        return [f'{flip}_{crop}' for flip in flips for crop in crops]


def check_views(views, aggregator, trained_crop):
    """Warn when cropping differs from training (`trained_crop`, args.json's crop_augment);
    require an aggregator exactly for more than one view."""
    if trained_crop and views.crop is None:
        print('Warning: the network trained on random crops (crop_augment in args.json) but '
              'embeds whole resized images: add --crop_augment five (with --flip_augment '
              '--aggregator mean, the paper\'s test-time views); on one real set five crops '
              'gave +14 mAP points over flip alone.', file=sys.stderr)
    elif not trained_crop and views.crop is not None:
        print(f'Warning: the network trained on whole resized images (no crop_augment in '
              f'args.json) but embeds --crop_augment {views.crop} views of larger images: '
              f'leave out --crop_augment to embed as it trained.', file=sys.stderr)
    names = views.names()
    if len(names) > 1 and aggregator is None:
        raise InputError(f'{len(names)} views per image ({", ".join(names)}): '
                         f'choose how to combine them with --aggregator')
    if len(names) == 1 and aggregator is not None:
        raise InputError('--aggregator needs several views per image (--flip_augment or '
                         '--crop_augment five)')


def load_model(experiment_root, spec, checkpoint=None):
    """The model of the `ModelSpec` with the weights of `checkpoint` (a name in
    `experiment_root`; default: the newest). Returns the model and the checkpoint's prefix."""
    if checkpoint:
        path = os.path.join(experiment_root, checkpoint)
        if not os.path.isfile(path + '.index'):
            found = ', '.join(os.path.basename(prefix) for _, prefix in
                              sorted(complete_checkpoints(experiment_root).items()))
            raise InputError(f'{path}: no such checkpoint (found: {found or "none"})')
    else:
        path = latest_checkpoint(experiment_root)
        if path is None:
            raise InputError(f'{experiment_root}: no checkpoint found')
    model = build_model(spec.model_name, spec.head_name, spec.embedding_dim,
                        last_stride=spec.last_stride)
    restore_model(model, path)
    return model, path


def five_crops(image, size):
    """Centre and four corner crops of `size` (centre offset rounded down, as the official)."""
    height, width = size
    margin_y, margin_x = image.shape[0] - height, image.shape[1] - width
    corners = {'center': (margin_y // 2, margin_x // 2), 'top_left': (0, 0),
               'top_right': (0, margin_x), 'bottom_left': (margin_y, 0),
               'bottom_right': (margin_y, margin_x)}
    return [image[y:y + height, x:x + width] for y, x in (corners[c] for c in CROPS)]


def views_of(image, views, net_size):
    """The test-time `views` of one loaded image, stacked as [views, h, w, 3]."""
    flips = [image, tf.reverse(image, [1])] if views.flip else [image]
    stacked = []
    for flipped in flips:
        crops = five_crops(flipped, net_size)
        stacked += {'five': crops, 'center': crops[:1]}.get(views.crop, [flipped])
    return tf.stack(stacked)


def embed(model, paths, spec, views, batch_size=256, loading_threads=8, quiet=False):
    """Embeddings of every view of every image of `paths`: [views, N, D].

    `model` runs with fused batch norms (`tripletreid.fused_batch_norm.fuse`): the same
    weights, and a faster forward pass. Progress goes to stderr unless `quiet`.
    """
    model = fuse(model)
    count = len(views.names())
    size = spec.pre_crop_size if views.crop else spec.net_size

    # Neither function has Python control flow for AutoGraph to convert (its attempts to
    # parse lambdas' source print warnings).
    @tf.autograph.experimental.do_not_convert
    def load_views(path):
        return views_of(pipeline.load_image(path, size), views, spec.net_size)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)],
                 autograph=False)
    def forward(batch):
        return model(batch, training=False)

    images = tf.data.Dataset.from_tensor_slices(paths).map(
        load_views, num_parallel_calls=loading_threads).unbatch()
    images = images.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    result = np.zeros((len(paths) * count, spec.embedding_dim), np.float32)
    views_each = f' ({count} views each)' if count > 1 else ''
    bar = progress.bar(len(paths), f'Embedding{views_each}', quiet=quiet)
    done = 0
    for batch in images:
        emb = forward(batch).numpy()
        result[done:done + len(emb)] = emb
        bar.update((done + len(emb)) // count - done // count)  # images, not views
        done += len(emb)
    bar.close()
    return result.reshape(len(paths), count, -1).transpose(1, 0, 2)


def aggregate(emb_aug, aggregator):
    """One embedding per image: the only view, or the aggregate of several."""
    return AGGREGATORS[aggregator](emb_aug) if len(emb_aug) > 1 else emb_aug[0]


def write_embeddings(filename, emb_aug, names, aggregator, attrs=None, **extra):
    """The official layout; `extra` datasets (e.g. the image `paths` of the rows) and `attrs`
    (HDF5 attributes of the file, e.g. the model's fingerprint) are added.

    The HDF5 file is made in memory and then written as plain bytes: the HDF5 library crashes
    the process (SIGSEGV) when the disk fills up under it, where Python's write says so.
    """
    memory = io.BytesIO()
    with h5py.File(memory, 'w') as f:
        if len(names) > 1:
            f.create_dataset('emb_aug', data=emb_aug)
        f.create_dataset('emb', data=aggregate(emb_aug, aggregator))
        f.create_dataset('augmentation_types', data=np.asarray(names, dtype='S'))
        for key, value in extra.items():
            f.create_dataset(key, data=value)
        f.attrs.update(attrs or {})
    with atomic_path(filename) as tmp:
        with open(tmp, 'wb') as f:
            f.write(memory.getbuffer())


def embed_dataset(experiment_root, dataset, image_root, views, checkpoint=None,
                  batch_size=256, loading_threads=8, quiet=True):
    """Embeddings [views, N, D] of every image of a CSV `Dataset` with the experiment's model
    (its newest checkpoint, or `checkpoint`), as embed.py computes them."""
    spec, _ = read_experiment(experiment_root)
    model, _ = load_model(experiment_root, spec, checkpoint)
    return embed(model, pipeline.image_paths(dataset.fids, image_root), spec, views,
                 batch_size, loading_threads, quiet)
