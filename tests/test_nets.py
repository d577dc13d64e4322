"""Backbones and heads: slim layout, registries, weights files."""
import numpy as np
import pytest

import keras
import tensorflow as tf
from tripletreid import training
from tripletreid.errors import InputError
from tripletreid.fused_batch_norm import fuse
from tripletreid.model import build_model
from heads import HEADS
from nets import NETS
from tripletreid.model import build_backbone


def conv_bias_count(model):
    return sum(layer.filters for layer in model.layers
               if isinstance(layer, keras.layers.Conv2D) and layer.use_bias)


def test_resnet_v1_50_matches_the_reference_sizes():
    ours = build_backbone('resnet_v1_50')
    # Keras Applications' ResNet50 has the same convolutions plus a bias on each; slim has none.
    reference = keras.applications.ResNet50(include_top=False, weights=None)
    assert ours.count_params() == reference.count_params() - conv_bias_count(reference)
    assert ours.output_shape == (None, 2048)


def test_resnet_v1_stride_sits_in_the_last_unit():
    backbone = build_backbone('resnet_v1_50')
    strided = [layer.name for layer in backbone.layers
               if isinstance(layer, keras.layers.Conv2D) and layer.strides == (2, 2)]
    # slim: conv1, then the 3x3 of the last unit of blocks 1-3 (block4 keeps stride 1).
    assert strided == ['conv1', 'block1.unit_3.bottleneck_v1.conv2',
                       'block2.unit_4.bottleneck_v1.conv2', 'block3.unit_6.bottleneck_v1.conv2']
    feature_map = keras.Model(backbone.input,
                              backbone.get_layer('block4.unit_3.bottleneck_v1.relu').output)
    assert feature_map(np.zeros((1, 256, 128, 3), np.float32)).shape == (1, 8, 4, 2048)


def test_resnet_v1_101_depth():
    backbone = build_backbone('resnet_v1_101')
    units = {layer.name.split('.bottleneck')[0] for layer in backbone.layers
             if 'unit_' in layer.name}
    assert len(units) == 3 + 4 + 23 + 3


def test_mobilenet_v1_is_thirteen_separable_layers():
    backbone = build_backbone('mobilenet_v1_1_224')
    depthwise = [layer for layer in backbone.layers
                 if isinstance(layer, keras.layers.DepthwiseConv2D)]
    assert len(depthwise) == 13 and backbone.output_shape == (None, 1024)
    assert 3_200_000 < backbone.count_params() < 3_250_000  # MobileNet v1 1.0 without logits


@pytest.mark.parametrize('head', sorted(HEADS))
def test_heads(head):
    model = build_model('lunet', head, 8)
    emb = model(np.random.default_rng(0).uniform(0, 255, (3, 32, 16, 3)).astype(np.float32))
    assert emb.shape == (3, 8)
    norms = np.linalg.norm(emb, axis=1)
    if head.endswith('_normalize'):
        np.testing.assert_allclose(norms, 1, rtol=1e-5)
    else:
        assert not np.allclose(norms, 1, rtol=1e-2)


def test_fc1024_layout():
    model = build_model('lunet', 'fc1024', 8)
    fc, bn, emb = (model.get_layer(n) for n in ('fc1024', 'fc1024.BatchNorm', 'emb'))
    assert not fc.use_bias and fc.units == 1024
    assert bn.momentum == 0.9 and bn.epsilon == 1e-5
    kernel = emb.kernel.numpy()  # orthogonal init: orthonormal columns (1024 x 8)
    np.testing.assert_allclose(kernel.T @ kernel, np.eye(8), atol=1e-5)


def test_initial_checkpoint_loads_the_same_backbone(tmp_path):
    source = build_backbone('lunet')
    path = str(tmp_path / 'lunet.weights.h5')
    source.save_weights(path)
    loaded = build_backbone('lunet', path)
    for a, b in zip(source.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_initial_checkpoint_of_another_backbone_is_refused(tmp_path):
    path = str(tmp_path / 'mobilenet.weights.h5')
    build_backbone('mobilenet_v1_1_224').save_weights(path)
    with pytest.raises(InputError, match='does not fit backbone lunet'):
        build_backbone('lunet', path)
    with pytest.raises(InputError, match='no such file'):
        build_backbone('lunet', str(tmp_path / 'nothing.weights.h5'))


def test_keras_applications_weights_go_to_resnet50_only(tmp_path):
    path = str(tmp_path / 'resnet50_notop.weights.h5')
    keras.applications.ResNet50(include_top=False, weights=None).save_weights(path)
    with pytest.raises(InputError, match='does not fit backbone resnet_v1_50'):
        build_backbone('resnet_v1_50', path)
    assert build_backbone('resnet50', path).output_shape == (None, 2048)


def test_every_registered_net_builds():
    for name, build in NETS.items():
        if not name.startswith('osnet'):  # one code path; its tests below build two widths
            assert build().output_shape[-1] > 0, name


def test_last_stride_one_doubles_the_resolution_with_the_same_weights(tmp_path):
    path = str(tmp_path / 'r50.weights.h5')
    build_backbone('resnet_v1_50').save_weights(path)
    backbone = build_backbone('resnet_v1_50', path, last_stride=1)  # the same variables fit
    feature_map = keras.Model(backbone.input,
                              backbone.get_layer('block4.unit_3.bottleneck_v1.relu').output)
    assert feature_map(np.zeros((1, 256, 128, 3), np.float32)).shape == (1, 16, 8, 2048)
    with pytest.raises(InputError, match='--last_stride 1 is for resnet_v1_101 and resnet_v1_50'):
        build_backbone('lunet', last_stride=1)


def osnet_parameter_count(width):
    """OSNet's parameters (batch-norm statistics included) from Table 1 of the paper, by hand:
    conv1 7x7, three stages of two bottlenecks, the first two stages with a transition 1x1,
    conv5 1x1, FC 512 with batch norm; no bias before a batch norm."""
    def conv_bn(c_in, c_out, kernel=1):
        return kernel * kernel * c_in * c_out + 4 * c_out  # gamma, beta, moving mean, variance

    def bottleneck(c_in, c_out):
        m = c_out // 4
        lite = m * m + 9 * m + 4 * m  # 1x1, depthwise 3x3, batch norm
        gate = (m * (m // 16) + m // 16) + ((m // 16) * m + m)  # two FCs with biases, shared
        projection = conv_bn(c_in, c_out) if c_in != c_out else 0
        return conv_bn(c_in, m) + (1 + 2 + 3 + 4) * lite + gate + conv_bn(m, c_out) + projection

    c0, c1, c2, c3 = (round(c * width) for c in (64, 256, 384, 512))
    return (conv_bn(3, c0, 7)
            + bottleneck(c0, c1) + bottleneck(c1, c1) + conv_bn(c1, c1)
            + bottleneck(c1, c2) + bottleneck(c2, c2) + conv_bn(c2, c2)
            + bottleneck(c2, c3) + bottleneck(c3, c3)
            + conv_bn(c3, c3) + c3 * 512 + 4 * 512)


@pytest.fixture(scope='module')
def osnet_x0_25():
    keras.utils.set_random_seed(0)
    return build_backbone('osnet_x0_25')


@pytest.mark.parametrize('name, width, published', [('osnet_x0_25', 0.25, 0.2),
                                                    ('osnet_x1_0', 1.0, 2.2)])
def test_osnet_parameter_counts(request, name, width, published):
    """The paper's counts in millions without the classifier (torchreid's model zoo), and the
    exact count of its Table 1."""
    backbone = (request.getfixturevalue('osnet_x0_25') if name == 'osnet_x0_25'
                else build_backbone(name))
    assert backbone.count_params() == osnet_parameter_count(width)
    assert round(backbone.count_params() / 1e6, 1) == published


def test_osnet_output_shapes(osnet_x0_25):
    """Table 1's resolutions at 256x128: conv1 128x64, max pool 64x32, conv2 64x32 (then a
    transition to 32x16), conv3 32x16 (then 16x8), conv4 and conv5 16x8; the 512-D feature at
    any size down to 32x16."""
    outputs = {name: osnet_x0_25.get_layer(layer).output for name, layer in [
        ('conv1', 'conv1.relu'), ('pool1', 'pool1'), ('conv2', 'conv2.block2.relu'),
        ('conv3', 'conv3.block2.relu'), ('conv4', 'conv4.block2.relu'),
        ('conv5', 'conv5.relu'), ('feature', 'fc.relu')]}
    maps = keras.Model(osnet_x0_25.input, outputs)(np.zeros((1, 256, 128, 3), np.float32))
    assert {name: tuple(m.shape) for name, m in maps.items()} == {
        'conv1': (1, 128, 64, 16), 'pool1': (1, 64, 32, 16), 'conv2': (1, 64, 32, 64),
        'conv3': (1, 32, 16, 96), 'conv4': (1, 16, 8, 128), 'conv5': (1, 16, 8, 128),
        'feature': (1, 512)}
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 16, 3)).astype(np.float32)
    features = osnet_x0_25(images).numpy()
    assert features.shape == (3, 512) and np.isfinite(features).all()


def test_osnet_fused_and_trains(osnet_x0_25):
    """Its fused batch norms (as train.py runs it) compute what Keras' do; then two of
    train.py's steps (batch-hard soft margin, Adam) on one batch of four noisy colours: the
    loss falls by a quarter or more (by 50% and 36% from the initialisations of seeds 0 and 1)
    and every weight moves, but the gates' first FC where its ReLU is dead: a quarter-width
    gate has a single hidden unit. Eagerly: tracing this net's 18,000-op training graph takes
    longer than tests may."""
    rng = np.random.default_rng(0)
    colours = np.repeat(rng.uniform(0, 255, (4, 1, 1, 3)), 2, axis=0)
    images = np.clip(colours + rng.normal(0, 40, (8, 32, 16, 3)), 0, 255).astype(np.float32)
    labels, rows = tf.constant(np.repeat(np.arange(4), 2)), tf.range(8)
    model = fuse(osnet_x0_25)
    expected = osnet_x0_25(images).numpy()
    np.testing.assert_allclose(model(images), expected, rtol=1e-4,
                               atol=1e-4 * np.abs(expected).max())
    optimizer = keras.optimizers.Adam(3e-5)
    optimizer.build(model.trainable_variables)
    step = training.make_train_step(model, optimizer)
    before = {w.path: w.numpy() for w in model.trainable_variables}
    tf.config.run_functions_eagerly(True)
    try:
        losses = [step(images, labels, rows)['losses'].numpy().mean() for _ in range(2)]
    finally:
        tf.config.run_functions_eagerly(False)
    assert losses[1] < 0.75 * losses[0]
    still = [w.path for w in model.trainable_variables if np.array_equal(w, before[w.path])]
    assert all('.gate.fc' in path for path in still), still
