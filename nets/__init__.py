"""Backbones by name, as `--model_name` chooses them.

Each entry builds a Keras model mapping raw RGB images in [0, 255] (any size) to one feature
vector per image. A new backbone is one new file plus one line here (see the README).
"""
from tripletreid.errors import InputError
from tripletreid.registry import Registry

NETS = Registry({
    'resnet_v1_50': 'nets.resnet_v1:resnet_v1_50',
    'resnet_v1_101': 'nets.resnet_v1:resnet_v1_101',
    'mobilenet_v1_1_224': 'nets.mobilenet_v1:build',
    'lunet': 'nets.lunet:build',
    'resnet50': 'nets.keras_resnet50:build',
    'osnet_x0_25': 'nets.osnet:osnet_x0_25',
    'osnet_x0_5': 'nets.osnet:osnet_x0_5',
    'osnet_x0_75': 'nets.osnet:osnet_x0_75',
    'osnet_x1_0': 'nets.osnet:osnet_x1_0',
})

# Backbones whose builder reads its weights file itself (Keras Applications' own loader).
BUILDS_WITH_WEIGHTS = {'resnet50'}
# Backbones whose last downsampling can be switched off (`--last_stride 1`).
TAKE_LAST_STRIDE = {'resnet_v1_50', 'resnet_v1_101'}


def check_last_stride(name, last_stride):
    if last_stride != 2 and name not in TAKE_LAST_STRIDE:
        raise InputError(f'--last_stride {last_stride} is for '
                         f'{" and ".join(sorted(TAKE_LAST_STRIDE))}, not {name}')
