"""Backbones and heads: slim layout, registries, weights files."""
import numpy as np
import pytest

import keras
from tripletreid.errors import InputError
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
