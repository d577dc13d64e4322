"""`--initial_checkpoint` with TF-slim ImageNet checkpoints: our backbones reproduce TF-slim's.

The references are TF-slim graphs with random weights and batch-norm statistics, saved as the
files slim's README links (`resnet_v1_50.ckpt` in TF1's one-file format, MobileNet as a V2
prefix). On images of even size, slim's explicit padding of strided convolutions differs from
'SAME', so agreement also shows that we pad and stride as slim does.
"""
import pytest

from helpers import slim_reference as ref
from tripletreid.errors import InputError
from tripletreid.model import build_backbone

TOLERANCE = 1e-4  # relative: max |ours - slim| / max |slim|


@pytest.fixture
def small_resnets(monkeypatch):
    ref.use_small_resnets(monkeypatch)


@pytest.fixture(scope='module')
def small_resnet_file(tmp_path_factory):
    """A small resnet_v1_50 ImageNet-style checkpoint (with logits) and its reference output."""
    path = str(tmp_path_factory.mktemp('slim') / 'resnet_v1_50.ckpt')
    images = ref.random_images(2, 64, 32, ref.RGB_MEAN, 8)
    expected = ref.save_reference(
        path, lambda x: ref.resnet(x, units=ref.SMALL_UNITS, num_classes=10), images, v1=True)
    return path, images, expected


def test_resnet_v1_50_reproduces_slim(tmp_path):
    """The full network, from a V1 one-file checkpoint with ImageNet logits (ignored)."""
    path = str(tmp_path / 'resnet_v1_50.ckpt')
    images = ref.random_images(3, 64, 32, ref.RGB_MEAN, 8)
    expected = ref.save_reference(path, lambda x: ref.resnet(x, num_classes=1000), images,
                                  v1=True)
    backbone = build_backbone('resnet_v1_50', path)
    assert ref.relative_difference(backbone(images), expected) < TOLERANCE


def test_mobilenet_v1_reproduces_slim(tmp_path):
    """From a V2 prefix named as slim's file, with ImageNet logits (ignored)."""
    path = str(tmp_path / 'mobilenet_v1_1.0_224.ckpt')
    images = ref.random_images(3, 64, 32)
    expected = ref.save_reference(path, ref.mobilenet, images)
    backbone = build_backbone('mobilenet_v1_1_224', path)
    assert ref.relative_difference(backbone(images), expected) < TOLERANCE


def test_resnet_v1_101_reproduces_slim(tmp_path, small_resnets):
    path = str(tmp_path / 'resnet_v1_101.ckpt')
    images = ref.random_images(2, 64, 32, ref.RGB_MEAN, 8)
    expected = ref.save_reference(
        path, lambda x: ref.resnet(x, 'resnet_v1_101', ref.SMALL_UNITS), images)
    assert ref.relative_difference(build_backbone('resnet_v1_101', path)(images),
                                   expected) < TOLERANCE


def test_small_resnet_v1_50_reproduces_slim(small_resnet_file, small_resnets):
    path, images, expected = small_resnet_file
    assert ref.relative_difference(build_backbone('resnet_v1_50', path)(images),
                                   expected) < TOLERANCE


def drop(name):
    return lambda tensors: tensors.pop(name)


def shrink(name):
    return lambda tensors: tensors.__setitem__(name, tensors[name][..., :-1])


@pytest.mark.parametrize('change, model, message', [
    (drop('resnet_v1_50/block2/unit_1/bottleneck_v1/conv2/BatchNorm/moving_variance'),
     'resnet_v1_50', 'no variable resnet_v1_50/block2/unit_1/bottleneck_v1/conv2/BatchNorm/'
                     'moving_variance'),
    (shrink('resnet_v1_50/block1/unit_2/bottleneck_v1/conv2/weights'), 'resnet_v1_50',
     r'variable resnet_v1_50/block1/unit_2/bottleneck_v1/conv2/weights has shape '
     r'\(3, 3, 64, 63\) in the checkpoint, \(3, 3, 64, 64\) in the model'),
    (None, 'resnet_v1_101', r'no variable resnet_v1_101/conv1/weights .*scopes: resnet_v1_50'),
    (None, 'mobilenet_v1_1_224', 'no variable MobilenetV1/Conv2d_0/weights'),
    (None, 'lunet', 'backbone lunet has no TF-slim counterpart'),
], ids=['missing', 'misshapen', 'other depth', 'other network', 'no slim layout'])
def test_a_checkpoint_that_does_not_fit_is_refused(small_resnet_file, small_resnets, tmp_path,
                                                   change, model, message):
    path = small_resnet_file[0]
    if change:
        path = str(tmp_path / 'changed.ckpt')
        ref.rewrite_checkpoint(small_resnet_file[0], path, change)
    with pytest.raises(InputError, match=r'--initial_checkpoint .* does not fit backbone '
                                         + model + ': ' + message) as error:
        build_backbone(model, path)
    assert '\n' not in str(error.value)


def test_a_file_that_is_no_checkpoint_is_refused(tmp_path):
    path = tmp_path / 'resnet_v1_50.ckpt'
    path.write_text('not a checkpoint')
    with pytest.raises(InputError, match='not a readable TensorFlow checkpoint'):
        build_backbone('resnet_v1_50', str(path))
