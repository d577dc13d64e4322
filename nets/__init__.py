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


def build_backbone(name, initial_checkpoint=None):
    """The backbone `name`, with weights from `initial_checkpoint` if given.

    That is a local Keras `.h5` file, or a TF1 checkpoint (slim's ImageNet files) by its prefix.
    """
    if initial_checkpoint and slim_checkpoint.is_tf_checkpoint(initial_checkpoint):
        return slim_checkpoint.load_backbone(NETS[name](), initial_checkpoint)
    if initial_checkpoint and not os.path.isfile(initial_checkpoint):
        raise InputError(f'--initial_checkpoint {initial_checkpoint}: no such file')
    if name in BUILDS_WITH_WEIGHTS:
        return build_with_own_loader(NETS[name], name, initial_checkpoint)
    backbone = NETS[name]()
    if initial_checkpoint:
        load_keras_weights(backbone, initial_checkpoint)
    return backbone
