"""Backbones by name, as `--model_name` chooses them.

Each entry builds a Keras model mapping raw RGB images in [0, 255] (any size) to one feature
vector per image. A new backbone is one new file plus one line here.
"""
import functools
import os

from common import InputError
from nets import keras_resnet50, lunet, mobilenet_v1, resnet_v1, slim_checkpoint
from nets.weights import build_with_own_loader, load_keras_weights

NETS = {
    'resnet_v1_50': functools.partial(resnet_v1.build, 50),
    'resnet_v1_101': functools.partial(resnet_v1.build, 101),
    'mobilenet_v1_1_224': mobilenet_v1.build,
    'lunet': lunet.build,
    'resnet50': keras_resnet50.build,
}

# Backbones whose builder reads its weights file itself (Keras Applications' own loader).
BUILDS_WITH_WEIGHTS = {'resnet50'}
# Backbones whose last downsampling can be switched off (`--last_stride 1`).
TAKE_LAST_STRIDE = {'resnet_v1_50', 'resnet_v1_101'}


def check_last_stride(name, last_stride):
    if last_stride != 2 and name not in TAKE_LAST_STRIDE:
        raise InputError(f'--last_stride {last_stride} is for '
                         f'{" and ".join(sorted(TAKE_LAST_STRIDE))}, not {name}')


def build_backbone(name, initial_checkpoint=None, last_stride=2):
    """The backbone `name`, with weights from `initial_checkpoint` if given.

    That is a local Keras `.h5` file, or a TF1 checkpoint (slim's ImageNet files) by its prefix.
    """
    build = NETS[name]
    check_last_stride(name, last_stride)
    if last_stride != 2:
        build = functools.partial(build, last_stride=last_stride)
    if initial_checkpoint and slim_checkpoint.is_tf_checkpoint(initial_checkpoint):
        return slim_checkpoint.load_backbone(build(), initial_checkpoint)
    if initial_checkpoint and not os.path.isfile(initial_checkpoint):
        raise InputError(f'--initial_checkpoint {initial_checkpoint}: no such file')
    if name in BUILDS_WITH_WEIGHTS:
        return build_with_own_loader(build, name, initial_checkpoint)
    backbone = build()
    if initial_checkpoint:
        load_keras_weights(backbone, initial_checkpoint)
    return backbone
