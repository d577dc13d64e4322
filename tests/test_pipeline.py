"""PK batches: composition, epochs, padding of small identities, images and augmentation."""
import collections

import numpy as np
import pytest
import tensorflow as tf

from tripletreid.errors import InputError
from tripletreid import csv_dataset, pipeline
from tripletreid.curriculum import Curriculum

# Identity sizes: 1, 3, 4, 6, 2, 5, 4 images.
LABELS = np.repeat(np.arange(7), [1, 3, 4, 6, 2, 5, 4])


def batches(sampler, steps):
    for step in range(steps):
        files, labels = sampler.batch(tf.constant(step, tf.int64))
        yield files.numpy(), labels.numpy()


def test_every_batch_has_p_identities_of_k_images():
    sampler = pipeline.PKSampler(LABELS, batch_p=3, batch_k=4, seed=1)
    for files, labels in batches(sampler, 20):
        assert len(files) == 12
        np.testing.assert_array_equal(LABELS[files], labels)  # files belong to their label
        counts = collections.Counter(labels)
        assert len(counts) == 3 and set(counts.values()) == {4}


def test_each_identity_once_per_epoch():
    sampler = pipeline.PKSampler(LABELS, batch_p=3, batch_k=2, seed=5)
    assert sampler.steps_per_epoch == 2  # 7 identities // P=3; one is left out each epoch
    all_batches = list(batches(sampler, 2 * 10))
    for epoch in range(10):
        seen = np.concatenate([labels for _, labels in all_batches[2 * epoch:2 * epoch + 2]])
        ids = np.unique(seen)
        assert len(ids) == 6 and len(seen) == 12  # 6 distinct identities, none twice
    left_out = {tuple(set(range(7)) - set(np.concatenate([b[1] for b in all_batches[2*e:2*e+2]])))
                for e in range(10)}
    assert len(left_out) > 1  # a different identity sits out in different epochs


def test_identity_with_enough_images_gets_distinct_images():
    sampler = pipeline.PKSampler(LABELS, batch_p=7, batch_k=4, seed=2)
    for files, labels in batches(sampler, 10):
        for label in (2, 3, 5, 6):  # 4 or more images: no repetition
            assert len(set(files[labels == label])) == 4


def test_small_identities_are_padded_evenly():
    # One image: repeated K times. Three images and K=4: the padded list holds each image
    # twice, so every image is drawn 4/3 times per batch on average, and at most twice.
    sampler = pipeline.PKSampler(LABELS, batch_p=7, batch_k=4, seed=3)
    single = np.flatnonzero(LABELS == 0)[0]
    three = collections.Counter()
    for files, labels in batches(sampler, 300):
        assert list(files[labels == 0]) == [single] * 4
        picked = collections.Counter(files[labels == 1])
        assert max(picked.values()) <= 2 and len(picked) >= 2
        three.update(picked)
    frequencies = np.array(list(three.values())) / 300
    assert len(three) == 3
    np.testing.assert_allclose(frequencies, 4 / 3, atol=0.12)


def test_batches_depend_only_on_seed_and_step():
    a = pipeline.PKSampler(LABELS, 3, 4, seed=9)
    b = pipeline.PKSampler(LABELS, 3, 4, seed=9)
    np.testing.assert_array_equal(a.batch(tf.constant(7, tf.int64))[0],
                                  b.batch(tf.constant(7, tf.int64))[0])
    c = pipeline.PKSampler(LABELS, 3, 4, seed=10)
    assert any((a.batch(tf.constant(s, tf.int64))[0].numpy()
                != c.batch(tf.constant(s, tf.int64))[0].numpy()).any() for s in range(5))


def test_too_few_identities_is_an_input_error():
    with pytest.raises(InputError, match='--batch_p 8'):
        pipeline.PKSampler(LABELS, batch_p=8, batch_k=4, seed=0)


def _args(**kwargs):
    defaults = dict(batch_p=2, batch_k=2, seed=0, net_input_height=32, net_input_width=16,
                    pre_crop_height=40, pre_crop_width=20, flip_augment=False,
                    crop_augment=False, loading_threads=2, random_erasing_prob=0.0,
                    random_erasing_area_min=0.02, random_erasing_area_max=0.4,
                    random_erasing_aspect_min=0.3)
    return {**defaults, **kwargs}


def train_stream(dataset, image_root, args, labels, start_step=0, curriculum=None,
                 shard=(0, 1, 1)):
    """`pipeline.train_dataset` with the flags of `_args`."""
    augmentation = pipeline.Augmentation(
        (args['net_input_height'], args['net_input_width']),
        (args['pre_crop_height'], args['pre_crop_width']), args['flip_augment'],
        args['crop_augment'], args['random_erasing_prob'],
        (args['random_erasing_area_min'], args['random_erasing_area_max']),
        args['random_erasing_aspect_min'])
    curriculum = curriculum or Curriculum(args['batch_p'], args['batch_k'])
    return pipeline.train_dataset(dataset, image_root, labels, curriculum, augmentation,
                                  args['seed'], args['loading_threads'], start_step, shard)


def test_train_dataset_images_and_resume(colour_dataset):
    csv_path, root = colour_dataset
    dataset = csv_dataset.read_csv(csv_path)
    _, labels = np.unique(dataset.pids, return_inverse=True)
    args = _args(flip_augment=True, crop_augment=True)
    stream = train_stream(dataset, root, args, labels)
    first = [tuple(t.numpy() for t in batch) for batch in stream.take(5)]
    for images, batch_labels, rows in first:
        assert images.shape == (4, 32, 16, 3) and images.dtype == np.float32
        assert 0 <= images.min() and images.max() <= 255
        for label, row in zip(batch_labels, rows):  # the images' rows match their identity
            assert dataset.pids[row] == np.unique(dataset.pids)[label]
    # Starting at step 3 gives exactly batches 3 and 4 of the full run, augmentation included.
    resumed = [tuple(t.numpy() for t in batch)
               for batch in train_stream(dataset, root, args, labels, 3).take(2)]
    for (a_img, a_lab, _), (b_img, b_lab, _) in zip(first[3:], resumed):
        np.testing.assert_array_equal(a_lab, b_lab)
        np.testing.assert_array_equal(a_img, b_img)


def test_flip_and_crop_are_true_flips_and_crops(tmp_path):
    import cv2
    # A 40x20 image with a unique value at every pixel; crops of 32x16 are windows of it.
    image = (np.arange(40 * 20 * 3) % 251).reshape(40, 20, 3).astype(np.uint8)
    cv2.imwrite(str(tmp_path / 'a.png'), image[..., ::-1])
    cv2.imwrite(str(tmp_path / 'b.png'), image[..., ::-1])
    (tmp_path / 'd.csv').write_text('x,a.png\ny,b.png\n')
    dataset = csv_dataset.read_csv(str(tmp_path / 'd.csv'))
    args = _args(batch_k=1, flip_augment=True, crop_augment=True)
    stream = train_stream(dataset, str(tmp_path), args, np.array([0, 1]))
    flips = set()
    for images, _, _ in stream.take(20):
        for crop in images.numpy():
            found = [(y, x, f) for f in (False, True) for y in range(9) for x in range(5)
                     if np.array_equal((image[:, ::-1] if f else image)[y:y + 32, x:x + 16],
                                       crop)]
            assert found, 'a training image is not a crop of the (flipped) image'
            flips.add(found[0][2])
    assert flips == {False, True}


def test_undecodable_images_are_found(tmp_path, colour_dataset):
    csv_path, root = colour_dataset
    with open(f'{root}/id00_1.jpg', 'r+b') as f:
        f.truncate(100)  # a truncated JPEG keeps its header
    dataset = csv_dataset.read_csv(csv_path)
    with pytest.raises(InputError, match=r'train.csv:2: image .*id00_1.jpg cannot be decoded'):
        pipeline.check_decodable(dataset, root, 2)


def test_sharded_batches_put_back_together_are_the_batch(colour_dataset):
    csv_path, root = colour_dataset
    dataset = csv_dataset.read_csv(csv_path)
    _, labels = np.unique(dataset.pids, return_inverse=True)
    args = _args(batch_p=4, batch_k=2, flip_augment=True, crop_augment=True)
    whole = [tuple(t.numpy() for t in b)
             for b in train_stream(dataset, root, args, labels).take(2)]
    # One pipeline feeding 2 replicas (mirrored), and 2 pipelines of one replica each
    # (multi-worker): per step, replica 0's half, then replica 1's.
    one = [tuple(t.numpy() for t in b) for b in train_stream(
        dataset, root, args, labels, shard=(0, 1, 2)).take(4)]
    two = [[tuple(t.numpy() for t in b) for b in train_stream(
        dataset, root, args, labels, shard=(i, 2, 2)).take(2)] for i in range(2)]
    for step, batch in enumerate(whole):
        for parts in ((one[2 * step], one[2 * step + 1]), (two[0][step], two[1][step])):
            for part in parts:  # whole identities: 2 of K=2 images each
                assert len(part[1]) == 4 and len(set(part[1])) == 2
            for i, value in enumerate(batch):
                np.testing.assert_array_equal(np.concatenate([p[i] for p in parts]), value)
