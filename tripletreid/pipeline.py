"""The `tf.data` input pipelines: PK batches for training, plain image batches for embedding.

Training batches are a pure function of (seed, step): which identities, which of their images,
and every flip and crop come from stateless random ops keyed by the step, and with a curriculum
also the batch size. Resuming at step s therefore continues the exact sequence of batches
without storing any pipeline state.
"""
import dataclasses
import os

import numpy as np
import tensorflow as tf

from tripletreid import csv_dataset, progress
from tripletreid.augment import random_erasing
from tripletreid.errors import InputError

# Stream names for `tf.random.experimental.stateless_fold_in`, so random draws never collide.
_PERMUTE, _SAMPLE, _AUGMENT = 1, 2, 3


def image_paths(fids, image_root):
    """Full paths of the CSV's file names (relative to `image_root` unless absolute)."""
    return np.array([os.path.join(image_root or '', fid) for fid in fids])


def load_image(path, size):
    """Read, decode (JPEG, PNG, BMP, GIF; grey and RGBA become RGB) and resize to `size`."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return tf.image.resize(image, size)


def image_batches(paths, size, batch_size=256, threads=8):
    """The images of `paths`, each resized to `size` (`load_image`), in batches, in order."""
    @tf.autograph.experimental.do_not_convert  # nothing to convert; spares AutoGraph's warnings
    def load(path):
        return load_image(path, size)

    return tf.data.Dataset.from_tensor_slices(paths).map(
        load, num_parallel_calls=threads).batch(batch_size)


def find_undecodable(paths, threads, quiet=False):
    """Indices of `paths` that TensorFlow's decoder rejects, found in one parallel pass, with a
    progress line (`tripletreid.progress`) unless `quiet`.

    The map keeps the order of `paths`, so the index of each image that decodes tells how many
    have been tried, those that failed (and were dropped) included."""
    def decode(index, path):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        with tf.control_dependencies([tf.debugging.assert_positive(tf.size(image))]):
            return tf.identity(index)

    dataset = tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), paths))
    dataset = dataset.map(decode, num_parallel_calls=threads).ignore_errors()
    bar = progress.bar(len(paths), 'Checking images', quiet=quiet)
    good, tried = [], 0
    for index in dataset.as_numpy_iterator():
        bar.update(int(index) + 1 - tried)
        tried = int(index) + 1
        good.append(index)
    bar.update(len(paths) - tried)
    bar.close()
    return np.setdiff1d(np.arange(len(paths)), np.array(good, dtype=np.int64))


def check_decodable(dataset, image_root, threads, quiet=False):
    """Stop with the file and line of the first image that cannot be decoded."""
    paths = image_paths(dataset.fids, image_root)
    bad = find_undecodable(paths, threads, quiet)
    if len(bad):
        more = f' (and {len(bad) - 1} more)' if len(bad) > 1 else ''
        raise InputError(f'{dataset.where(bad[0])}: image {paths[bad[0]]} cannot be decoded '
                         f'(corrupt or truncated){more}')


def check_readable(dataset, image_root, threads, quiet=False):
    """Stop with a one-line error at the first missing, empty, non-image or undecodable image
    of `dataset`, naming its CSV line. The decoding, the long part (minutes for a million
    images), shows a progress line unless `quiet`."""
    csv_dataset.check_images(dataset, image_root or '', threads)
    check_decodable(dataset, image_root, threads, quiet)


def check_batch_p(batch_p, num_ids):
    if num_ids < batch_p:
        raise InputError(f'--batch_p {batch_p} needs at least that many identities, '
                         f'the training set has {num_ids}')


class PKSampler:
    """Chooses the file indices of PK batches: P identities, K images of each.

    Each epoch shuffles the identities and uses the first multiple of P of them, so within an
    epoch every identity appears at most once. An identity with fewer than K images has its
    images repeated ceil(K / count) times before the K are drawn, so each is equally likely,
    as the official code does.
    """

    def __init__(self, labels, batch_p, batch_k, seed):
        labels = np.asarray(labels)
        self.num_ids = int(labels.max()) + 1
        check_batch_p(batch_p, self.num_ids)
        self.p, self.k = batch_p, batch_k
        self.steps_per_epoch = self.num_ids // batch_p
        order = np.argsort(labels, kind='stable')
        counts = np.bincount(labels, minlength=self.num_ids)
        self.order = tf.constant(order, tf.int64)
        self.offsets = tf.constant(np.cumsum(counts) - counts, tf.int64)
        self.counts = tf.constant(counts, tf.int64)
        self.padded = tf.constant(-(-batch_k // counts) * counts, tf.int64)
        self.max_padded = int(self.padded.numpy().max())
        self.seed = tf.constant([seed, 0], tf.int64)

    def _stream(self, purpose, value):
        seed = tf.random.experimental.stateless_fold_in(self.seed, purpose)
        return tf.random.experimental.stateless_fold_in(seed, value)

    def identities(self, step):
        """The P identities of batch `step`: a slice of its epoch's permutation."""
        epoch, position = step // self.steps_per_epoch, step % self.steps_per_epoch
        keys = tf.random.stateless_uniform([self.num_ids], self._stream(_PERMUTE, epoch))
        return tf.argsort(keys)[position * self.p:(position + 1) * self.p]

    def batch(self, step):
        """File indices [P*K] and identity labels [P*K] of batch `step`, identity-major."""
        ids = tf.cast(self.identities(step), tf.int64)
        padded = tf.gather(self.padded, ids)
        keys = tf.random.stateless_uniform([self.p, self.max_padded],
                                           self._stream(_SAMPLE, step))
        slots = tf.range(self.max_padded, dtype=tf.int64)
        keys = tf.where(slots[None, :] < padded[:, None], keys, 2.0)  # unused slots sort last
        picks = tf.argsort(keys, axis=1)[:, :self.k]
        within = tf.cast(picks, tf.int64) % tf.gather(self.counts, ids)[:, None]
        files = tf.gather(self.order, tf.gather(self.offsets, ids)[:, None] + within)
        labels = tf.repeat(ids, self.k)
        return tf.reshape(files, [-1]), labels

    def augment_seeds(self, step):
        """One stateless seed per image of batch `step`, for its flip and crop."""
        base = self._stream(_AUGMENT, step)
        return tf.stack([tf.fill([self.p * self.k], base[0]),
                         base[1] + tf.range(self.p * self.k, dtype=tf.int64)], axis=1)


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """How each training image is loaded and augmented: resized to `pre_crop_size` when
    cropped (else to `net_size`), flipped, randomly cropped to `net_size`, and erased (Random
    Erasing: with probability `erasing_prob`, a rectangle of noise covering a share in
    `erasing_area` of the image, of aspect ratio in [`erasing_aspect_min`, 1/that])."""
    net_size: tuple
    pre_crop_size: tuple
    flip: bool = False
    crop: bool = False
    erasing_prob: float = 0.0
    erasing_area: tuple = (0.02, 0.4)
    erasing_aspect_min: float = 0.3


def train_dataset(dataset, image_root, labels, curriculum, augmentation, seed,
                  loading_threads=8, start_step=0, shard=(0, 1, 1)):
    """Endless PK batches `(images, labels, rows)` from step `start_step` on; `rows` are the
    images' rows in `dataset` (numbers, which every device can hold; strings no GPU can).

    Batch sizes come from the `Curriculum` (`tripletreid.curriculum`); each of its stages draws
    from a sampler of its own P and K seeded by `seed`, stages joined end to end; batch s is
    then still a function of (seed, s) alone, and from the end of the curriculum on it is
    exactly the batch s of a run without one. Images are loaded with `loading_threads` and
    augmented as `augmentation` (an `Augmentation`) says.

    `shard` = (pipeline, pipelines, replicas) splits each batch for `tf.distribute`: the batch
    is cut into `replicas` equal parts of whole identities (P must divide by `replicas`), and
    input pipeline `pipeline` of `pipelines` yields, per step, the consecutive parts of the
    replicas it feeds, one element each. Put back together in replica order they are the batch
    of one device, so a run on N devices trains on the same batches as a run on one.
    """
    paths = tf.constant(image_paths(dataset.fids, image_root))
    pipeline, pipelines, replicas = shard
    mine = slice(pipeline * replicas // pipelines, (pipeline + 1) * replicas // pipelines)
    net_size = tuple(augmentation.net_size)
    load_size = tuple(augmentation.pre_crop_size) if augmentation.crop else net_size

    def load(file, label, seed):
        image = load_image(paths[file], load_size)
        if augmentation.flip:
            image = tf.image.stateless_random_flip_left_right(image, seed)
        if augmentation.crop:
            crop_seed = tf.random.experimental.stateless_fold_in(seed, 1)
            image = tf.image.stateless_random_crop(image, net_size + (3,), crop_seed)
        if augmentation.erasing_prob:
            image = random_erasing(
                image, tf.random.experimental.stateless_fold_in(seed, 2),
                augmentation.erasing_prob, augmentation.erasing_area,
                augmentation.erasing_aspect_min)
        return image, label, file

    def stage(first, end, p, k):
        sampler = PKSampler(labels, p, k, seed)

        def plan(step):
            files, batch_labels = sampler.batch(step)
            parts = [tf.reshape(t, [replicas, -1, *t.shape[1:]])[mine] for t in
                     (files, batch_labels, sampler.augment_seeds(step))]
            return tuple(tf.reshape(t, [-1, *t.shape[2:]]) for t in parts)

        steps = tf.data.Dataset.counter(first)
        if end is not None:
            steps = steps.take(end - first)
        images = steps.map(plan).unbatch().map(load, num_parallel_calls=loading_threads)
        return images.batch(p * k // replicas)

    # Stages are made last (largest) first, so that a --batch_p too large for the training set
    # is reported as given, not as the P of some stage.
    stages = [stage(*span) for span in curriculum.spans(start_step)[::-1]][::-1]
    batches = stages[0]
    for following in stages[1:]:
        batches = batches.concatenate(following)
    return batches.prefetch(tf.data.AUTOTUNE)
