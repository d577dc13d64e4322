"""ArcFace and CosFace logits, DCE's verification loss and its pairs, and train.py
--show_batches, against hand-worked values and the pipeline's own batches."""
import math
import os

import cv2
import numpy as np
import pytest
import tensorflow as tf

from tripletreid.errors import InputError
from tripletreid.losses.identity import IdentityLosses, identity_cross_entropy
from tripletreid.losses.margins import arcface_logits, cosface_logits
from tripletreid.losses.siamese import verification_cross_entropy, verification_pairs

S, M = 30.0, 0.5
# Identity weights along x (length 3), along y (length 0.5) and along -x; features at the
# angles 0.3 and pi - 0.1 from the x axis, of lengths 2 and 0.7 (normalised away).
KERNEL = np.array([[3.0, 0.0, -1.0], [0.0, 0.5, 0.0]], np.float32)
ANGLES = (0.3, math.pi - 0.1)
FEATURES = np.array([[2 * math.cos(ANGLES[0]), 2 * math.sin(ANGLES[0])],
                     [0.7 * math.cos(ANGLES[1]), 0.7 * math.sin(ANGLES[1])]], np.float32)
LABELS = [0, 0]  # both of identity 0: angles 0.3 and pi - 0.1 to its weight


def plain_cosines(angle):
    """cos of the angles to the three identity weights, by hand."""
    return [math.cos(angle), math.cos(math.pi / 2 - angle), math.cos(math.pi - angle)]


def hand_loss(logits, label):
    return -math.log(math.exp(logits[label]) / sum(math.exp(x) for x in logits))


def test_arcface_logits_by_hand_including_past_pi():
    got = arcface_logits(tf.constant(FEATURES), tf.constant(KERNEL), tf.constant(LABELS), S, M)
    near = plain_cosines(ANGLES[0])
    far = plain_cosines(ANGLES[1])
    # theta = 0.3: the true identity's logit is s cos(0.3 + 0.5). theta = pi - 0.1 > pi - m:
    # theta + m passes pi, and the reference code's fallback is s (cos(theta) - m sin(m)).
    expected = [[S * math.cos(0.8), S * near[1], S * near[2]],
                [S * (math.cos(math.pi - 0.1) - 0.5 * math.sin(0.5)), S * far[1], S * far[2]]]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-4)
    assert expected[1][0] < S * math.cos(math.pi - 0.1)  # still below the margin-free logit
    losses = identity_cross_entropy(got, tf.constant(LABELS)).numpy()
    np.testing.assert_allclose(losses, [hand_loss(row, 0) for row in expected], rtol=1e-4,
                               atol=1e-6)  # the first is 6e-6: float32's rounding of 1 - p


def test_cosface_logits_by_hand():
    got = cosface_logits(tf.constant(FEATURES), tf.constant(KERNEL), tf.constant([1, 0]), S,
                         0.35)
    near, far = plain_cosines(ANGLES[0]), plain_cosines(ANGLES[1])
    expected = [[S * near[0], S * (near[1] - 0.35), S * near[2]],
                [S * (far[0] - 0.35), S * far[1], S * far[2]]]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-4)
    losses = identity_cross_entropy(got, tf.constant([1, 0])).numpy()
    np.testing.assert_allclose(losses, [hand_loss(expected[0], 1), hand_loss(expected[1], 0)],
                               rtol=1e-4)


def arccos_reference(embeddings, kernel, labels, scale, margin):
    """ArcFace's logits through the angles themselves (numpy's arccos), not cos(a + b)."""
    cos = ((embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True))
           @ (kernel / np.linalg.norm(kernel, axis=0, keepdims=True)))
    logits = cos.copy()
    for row, label in enumerate(labels):
        theta = np.arccos(np.clip(cos[row, label], -1, 1))
        logits[row, label] = (np.cos(theta + margin) if theta + margin <= np.pi
                              else cos[row, label] - margin * np.sin(margin))
    return scale * logits


def test_identity_losses_arcface_uses_the_classifier_and_smoothing():
    rng = np.random.default_rng(0)
    identity = IdentityLosses(6, 4, id_weight=1.0, smoothing=0.1, id_loss='arcface',
                              scale=16.0, margin=0.3)
    kernel = identity.classifier_variables[0].numpy()
    embeddings = rng.normal(size=(5, 4)).astype(np.float32)
    embeddings[4] = -3 * kernel[:, 2]  # an angle of pi to its identity's weight
    labels = [0, 5, 3, 1, 2]
    expected_logits = arccos_reference(embeddings, kernel, labels, 16.0, 0.3)
    parts = identity(None, tf.constant(embeddings), tf.constant(labels))
    expected = identity_cross_entropy(tf.constant(expected_logits), tf.constant(labels), 0.1)
    np.testing.assert_allclose(parts['id_loss'], np.mean(expected), rtol=1e-4)


def test_arcface_gradient_is_finite_where_a_feature_meets_its_weight():
    kernel = tf.Variable(KERNEL)
    features = tf.constant([[1.0, 0.0], [-2.0, 0.0]])  # angles 0 and pi to identity 0
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(arcface_logits(features, kernel, tf.constant([0, 0]), S, M))
    assert np.all(np.isfinite(tape.gradient(loss, kernel).numpy()))


@pytest.mark.parametrize('pair', ['product', 'squared_difference'])
def test_verification_loss_by_hand(pair):
    embeddings = tf.constant([[1.0, 2.0], [3.0, -1.0], [0.0, 1.0], [2.0, 2.0]])
    classifier = tf.keras.layers.Dense(2)
    classifier.build((None, 2))
    classifier.set_weights([np.array([[0.5, -1.0], [0.25, 0.5]], np.float32),
                            np.array([0.1, -0.2], np.float32)])
    first, second, same = [0, 3], [1, 2], [1, 0]
    got = verification_cross_entropy(embeddings, tf.constant(first), tf.constant(second),
                                     tf.constant(same), classifier, pair).numpy()
    # Pair (0, 1): product (3, -2), squared difference (4, 9); pair (3, 2): (0, 2), (4, 1).
    features = {'product': [(3, -2), (0, 2)], 'squared_difference': [(4, 9), (4, 1)]}[pair]
    expected = []
    for (a, b), label in zip(features, same):
        logits = [0.5 * a + 0.25 * b + 0.1, -1.0 * a + 0.5 * b - 0.2]
        expected.append(hand_loss(logits, label))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_verification_pairs_are_balanced_uniform_and_a_function_of_the_seed():
    labels = tf.constant([0, 0, 0, 1, 1, 2, 2, 2])
    pids = labels.numpy()
    first, second, same = (t.numpy() for t in verification_pairs(labels, tf.constant([3, 5])))
    np.testing.assert_array_equal(first, np.tile(np.arange(8), 2))
    np.testing.assert_array_equal(same, [1] * 8 + [0] * 8)
    assert np.all(pids[second[:8]] == pids[:8]) and np.all(second[:8] != np.arange(8))
    assert np.all(pids[second[8:]] != pids[:8])
    again = verification_pairs(labels, tf.constant([3, 5]))[1].numpy()
    np.testing.assert_array_equal(again, second)
    draws = np.array([verification_pairs(labels, tf.constant([3, step]))[1].numpy()
                      for step in range(120)])
    assert len({tuple(d) for d in draws}) > 100  # each step draws its own
    # Anchor 0: positives 1, 2 (1/2 each); negatives 3..7 (1/5 each); 3 standard deviations.
    np.testing.assert_allclose(np.bincount(draws[:, 0], minlength=3)[1:] / 120, [0.5] * 2,
                               atol=0.14)
    np.testing.assert_allclose(np.bincount(draws[:, 8], minlength=8)[3:] / 120, [0.2] * 5,
                               atol=0.11)


def test_verification_classifier_trains_with_the_network_and_adds_its_weight():
    identity = IdentityLosses(3, 4, id_weight=1.0, verification_weight=0.5)
    assert sorted(tuple(v.shape) for v in identity.classifier_variables) == [
        (2,), (4, 2), (4, 3)]
    embeddings = tf.constant(np.random.default_rng(2).normal(size=(4, 4)), tf.float32)
    parts = identity(None, embeddings, tf.constant([0, 0, 2, 2]), tf.constant([1, 9], tf.int64))
    assert set(parts) == {'id_loss', 'verification_loss'}
    np.testing.assert_allclose(identity.weighted_sum(parts),
                               parts['id_loss'] + 0.5 * parts['verification_loss'], rtol=1e-6)


@pytest.mark.parametrize('flags, message', [
    (['--id_loss', 'arcface'], '--id_loss needs --id_loss_weight'),
    (['--id_loss_weight', '1', '--id_margin', '0.3'], '--id_margin needs --id_loss arcface'),
    (['--id_loss_weight', '1', '--id_loss', 'arcface', '--id_margin', '3.2'], 'below pi'),
    (['--verification_pair', 'product'], '--verification_pair needs --verification_loss_w'),
    (['--verification_loss_weight', '1', '--batch_k', '1'], '--batch_k at least 2'),
    (['--show_batches_count', '3'], '--show_batches_count needs --show_batches'),
])
def test_bad_flag_combinations(tmp_path, colour_dataset, flags, message):
    import train
    csv_path, image_root = colour_dataset
    with pytest.raises(InputError, match=message):
        train.main(['--experiment_root', str(tmp_path / 'e'), '--train_set', csv_path,
                    '--image_root', image_root, '--model_name', 'lunet', *flags])
    assert not os.path.exists(tmp_path / 'e')


def test_show_batches_draws_the_pipelines_first_batches(tmp_path, colour_dataset):
    import train
    from tripletreid import csv_dataset, pipeline
    from tripletreid.curriculum import Curriculum
    csv_path, image_root = colour_dataset
    root, png = str(tmp_path / 'exp'), str(tmp_path / 'batches.png')
    flags = ['--experiment_root', root, '--train_set', csv_path, '--image_root', image_root,
             '--model_name', 'lunet', '--batch_p', '3', '--batch_k', '2',
             '--net_input_height', '32', '--net_input_width', '16', '--pre_crop_height', '40',
             '--pre_crop_width', '20', '--flip_augment', '--crop_augment',
             '--random_erasing_prob', '0.5', '--loading_threads', '2', '--seed', '4',
             '--show_batches', png]
    train.main(flags)
    assert not os.path.exists(root)  # no experiment is left behind
    with pytest.raises(InputError, match='exists already'):
        train.main(flags)
    dataset = csv_dataset.read_csv(csv_path)
    _, labels = np.unique(dataset.pids, return_inverse=True)
    augmentation = pipeline.Augmentation((32, 16), (40, 20), True, True, 0.5)
    batches = pipeline.train_dataset(dataset, image_root, labels, Curriculum(3, 2), augmentation,
                                     4, loading_threads=2)
    picture = cv2.cvtColor(cv2.imread(png), cv2.COLOR_BGR2RGB)
    places = []
    for (images, _, _), _ in zip(batches, range(2)):  # --show_batches_count 2, the default
        for image in np.clip(np.round(images.numpy()), 0, 255).astype(np.uint8):
            found = cv2.matchTemplate(picture, image, cv2.TM_SQDIFF)
            top, left = np.unravel_index(found.argmin(), found.shape)
            np.testing.assert_array_equal(picture[top:top + 32, left:left + 16], image)
            places.append((top, left))
    tops, lefts = np.array(places).reshape(6, 2, 2).transpose(2, 0, 1)
    assert np.all(tops[:, 0] == tops[:, 1]) and np.all(np.diff(tops[:, 0]) > 0)  # 2x3 rows
    assert np.all(lefts[:, 0] < lefts[:, 1]) and len(set(lefts[:, 0])) == 1  # of K = 2


@pytest.mark.parametrize('recipe, id_loss, verification', [
    ('softmax', 'softmax', 0.0), ('dce', 'softmax', 1.0), ('arcface', 'arcface', 0.0),
    ('cosface', 'cosface', 0.0)])
def test_study_recipes_are_accepted(tmp_path, recipe, id_loss, verification):
    from studies.cuhk03 import recipe_flags
    from tripletreid import experiment
    config = experiment.resolve(experiment.build_train_parser(), [
        '--experiment_root', str(tmp_path / 'e'), '--train_set', 'train.csv',
        '--model_name', 'lunet', *recipe_flags(recipe, 1000)])
    assert (config.id_loss_weight, config.id_loss, config.verification_loss_weight) == (
        1.0, id_loss, verification)
