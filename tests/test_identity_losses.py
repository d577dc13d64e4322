"""ID loss with label smoothing, center loss and the BNNeck head, against hand-worked values."""
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from tripletreid.model import build_model, training_model
from tripletreid.losses.identity import IdentityLosses
from tripletreid.losses.identity import center_loss, identity_cross_entropy


def hand_cross_entropy(logits, label, smoothing):
    """-sum_j t_j log softmax_j, t = (1 - e) one-hot + e / n, worked out with `math` alone."""
    total = sum(math.exp(x) for x in logits)
    n = len(logits)
    return -sum(((1 - smoothing) * (j == label) + smoothing / n) * math.log(math.exp(x) / total)
                for j, x in enumerate(logits))


@pytest.mark.parametrize('smoothing', [0.0, 0.1, 0.5])
def test_identity_cross_entropy_by_hand(smoothing):
    logits = [[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]]
    labels = [0, 1]
    got = identity_cross_entropy(tf.constant(logits), tf.constant(labels), smoothing).numpy()
    expected = [hand_cross_entropy(row, label, smoothing) for row, label in zip(logits, labels)]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    if smoothing == 0.0:  # plain cross-entropy: -log p(label)
        expected = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(-1)))
        np.testing.assert_allclose(got[0], expected, rtol=1e-6)


def test_center_loss_by_hand():
    features = tf.constant([[1.0, 2.0], [3.0, 4.0]])
    centers = tf.constant([[0.0, 0.0], [1.0, 1.0]])
    # Image 0 (identity 1): (1-1)^2 + (2-1)^2 = 1; image 1 (identity 0): 9 + 16 = 25.
    np.testing.assert_allclose(center_loss(features, tf.constant([1, 0]), centers).numpy(),
                               [1.0, 25.0])


def test_centers_move_at_their_own_rate_whatever_the_weight():
    # The center loss mean_i |f_i - c_{y_i}|^2 has the gradient -2 sum_{i: y_i = y} (f_i - c_y)
    # / B for c_y; one SGD step of rate r gives c + 2 r sum (f - c) / B, whatever the weight.
    features = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 0.0]], np.float32)
    labels = tf.constant([0, 0, 1])
    for weight in (0.0005, 1.0):
        identity = IdentityLosses(2, 2, center_weight=weight, center_learning_rate=0.5)
        start = identity.centers.numpy().copy()
        with tf.GradientTape() as tape:
            parts = identity(tf.constant(features), None, labels)
        identity.update_centers(tape.gradient(parts['center_loss'], identity.centers))
        np.testing.assert_allclose(identity.weighted_sum(parts), weight * parts['center_loss'])
        expected = start.copy()
        expected[0] += 2 * 0.5 * ((features[0] - start[0]) + (features[1] - start[0])) / 3
        expected[1] += 2 * 0.5 * (features[2] - start[1]) / 3
        np.testing.assert_allclose(identity.centers.numpy(), expected, rtol=1e-5)


def test_id_loss_uses_a_bias_free_classifier_on_the_embedding():
    identity = IdentityLosses(5, 4, id_weight=2.0, smoothing=0.1)
    assert [v.shape for v in identity.classifier_variables] == [(4, 5)]
    embeddings = tf.constant(np.random.default_rng(0).normal(size=(3, 4)), tf.float32)
    parts = identity(None, embeddings, tf.constant([0, 4, 2]))
    assert set(parts) == {'id_loss'}
    logits = embeddings.numpy() @ identity.classifier_variables[0].numpy()
    expected = np.mean([hand_cross_entropy(row, y, 0.1) for row, y in zip(logits, [0, 4, 2])])
    np.testing.assert_allclose(parts['id_loss'], expected, rtol=1e-5)
    np.testing.assert_allclose(identity.weighted_sum(parts), 2 * expected, rtol=1e-5)


def test_bnneck_trains_the_feature_before_its_batch_norm_and_retrieves_after_it():
    model = build_model('lunet', 'bnneck', 8)
    bn = model.get_layer('bnneck')
    assert not bn.center  # no shift, as the baseline's frozen bias
    # At inference, embedding = gamma * (feature - moving mean) / sqrt(moving var + eps).
    images = np.random.default_rng(1).uniform(0, 255, (3, 32, 16, 3)).astype(np.float32)
    bn.gamma.assign(np.linspace(0.5, 2, 8))
    bn.moving_mean.assign(np.arange(8.0))
    bn.moving_variance.assign(np.full(8, 4.0))
    features, embeddings = training_model(model)(images, training=False)
    expected = np.linspace(0.5, 2, 8) * (features.numpy() - np.arange(8.0)) / np.sqrt(4 + 1e-5)
    np.testing.assert_allclose(embeddings.numpy(), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(model(images).numpy(), embeddings.numpy())


def test_bnneck_keeps_the_backbone_feature_when_the_sizes_agree():
    width = build_model('lunet', 'direct', 8).layers[1].output.shape[-1]
    model = build_model('lunet', 'bnneck', width)
    assert 'emb' not in [layer.name for layer in model.layers]  # no projection
    assert 'emb' in [layer.name for layer in build_model('lunet', 'bnneck', 8).layers]


def test_training_with_id_and_center_losses_resumes_exactly(tmp_path, colour_dataset):
    import train
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    csv_path, image_root = colour_dataset
    root = str(tmp_path / 'exp')
    train.main(['--experiment_root', root, '--train_set', csv_path, '--image_root', image_root,
                '--model_name', 'lunet', '--head_name', 'bnneck', '--embedding_dim', '16',
                '--batch_p', '4', '--batch_k', '2', '--net_input_height', '32',
                '--net_input_width', '16', '--loading_threads', '2', '--seed', '1',
                '--train_iterations', '6', '--checkpoint_frequency', '3',
                '--id_loss_weight', '1', '--label_smoothing', '0.1',
                '--center_loss_weight', '0.0005'])
    final = os.path.join(root, 'checkpoint-6')
    names = dict(tf.train.list_variables(final))
    assert any('classifier' in name for name in names)
    assert any('centers' in name for name in names)
    reference = {name: tf.train.load_variable(final, name) for name in names
                 if name != '_CHECKPOINTABLE_OBJECT_GRAPH'}  # holds the optimizer's name
    for path in os.listdir(root):
        if path.startswith('checkpoint-6.'):
            os.remove(os.path.join(root, path))
    train.main(['--experiment_root', root, '--resume'])
    for name, value in reference.items():
        np.testing.assert_array_equal(tf.train.load_variable(final, name), value, err_msg=name)
    events = EventAccumulator(root, size_guidance={'tensors': 0})
    events.Reload()
    assert {'id_loss', 'center_loss'} <= set(events.Tags()['tensors'])


def test_identity_loss_flags_need_their_weight(tmp_path, colour_dataset):
    import train
    from tripletreid.errors import InputError
    csv_path, image_root = colour_dataset
    for flags, message in ((['--label_smoothing', '0.1'], '--label_smoothing needs '
                            '--id_loss_weight'),
                           (['--center_learning_rate', '0.1'], '--center_learning_rate needs '
                            '--center_loss_weight')):
        with pytest.raises(InputError, match=message):
            train.main(['--experiment_root', str(tmp_path / 'e'), '--train_set', csv_path,
                        '--image_root', image_root, '--model_name', 'lunet', *flags])
    assert not os.path.exists(tmp_path / 'e')
