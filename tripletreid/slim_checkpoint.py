"""TF1 checkpoints of TF-slim networks (Google's ImageNet files, the official training code's)
mapped onto our Keras layers by name.

Our slim-layout layers are named after slim's variable scopes with '.' for '/', so each
variable's checkpoint name is derived rather than tabulated: the network's scope, the layer
name, then slim's name for the variable's role (`weights`, `depthwise_weights`, `biases`,
`gamma`, `beta`, `moving_mean`, `moving_variance`). Every model variable must be found with its
shape; the checkpoint's other variables (logits, optimizer slots, `global_step`) are ignored.
"""
import os

import keras
import tensorflow as tf

from tripletreid.errors import InputError

# The variable scope slim builds each of our slim-layout backbones under.
SCOPES = {
    'resnet_v1_50': 'resnet_v1_50/',
    'resnet_v1_101': 'resnet_v1_101/',
    'mobilenet_v1_1_224': 'MobilenetV1/',
}
# Keras variable name -> slim's (a depthwise kernel is slim's `depthwise_weights`).
ROLES = {'kernel': 'weights', 'bias': 'biases', 'gamma': 'gamma', 'beta': 'beta',
         'moving_mean': 'moving_mean', 'moving_variance': 'moving_variance'}


def is_tf_checkpoint(path):
    """Whether `path` is a TF checkpoint rather than a Keras `.h5` file.

    TF1's V2 format is a prefix with `<path>.index` beside it (slim's MobileNet files); the V1
    format is one file under the name itself (slim's 2016 ResNet files, `resnet_v1_50.ckpt`).
    """
    return os.path.isfile(path + '.index') or (os.path.isfile(path) and not path.endswith('.h5'))


def slim_name(layer, variable, scope='', renames=None):
    """The checkpoint name of `variable` of `layer`; `renames`: our first name part -> slim's."""
    if isinstance(layer, keras.layers.DepthwiseConv2D) and variable.name == 'kernel':
        role = 'depthwise_weights'
    else:
        role = ROLES[variable.name]
    first, *rest = layer.name.split('.')
    return '/'.join([scope + (renames or {}).get(first, first), *rest, role])


def named_variables(layers, scope='', renames=None):
    """[(variable, checkpoint name)] of every variable of `layers`."""
    return [(variable, slim_name(layer, variable, scope, renames))
            for layer in layers for variable in layer.weights]


def backbone_variables(backbone, context):
    """[(variable, checkpoint name)] of a slim-layout backbone, under its slim scope."""
    if backbone.name not in SCOPES:
        raise InputError(f'{context}: backbone {backbone.name} has no TF-slim counterpart '
                         f'(TF checkpoints fit {", ".join(SCOPES)})')
    return named_variables(backbone.layers, SCOPES[backbone.name])


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _top_scopes(shapes):
    """The checkpoint's top-level scopes, which tell which network it holds."""
    return ', '.join(sorted({name.split('/')[0] for name in shapes})[:8])


def check_variables(shapes, named, context):
    """Stop at the first model variable the checkpoint lacks or holds with another shape."""
    for variable, name in named:
        if name not in shapes:
            raise InputError(f'{context}: no variable {name} (for {variable.path}) in the '
                             f'checkpoint; its top-level scopes: {_top_scopes(shapes)}')
        if tuple(shapes[name]) != tuple(variable.shape):
            raise InputError(f'{context}: variable {name} has shape {tuple(shapes[name])} in '
                             f'the checkpoint, {tuple(variable.shape)} in the model')


def variable_shapes(path):
    """{name: shape} of the TF checkpoint `path`."""
    try:
        return tf.train.load_checkpoint(path).get_variable_to_shape_map()
    except tf.errors.OpError as error:
        raise InputError(f'{path}: not a readable TensorFlow checkpoint '
                         f'({_first_line(error)})') from None


def load_variables(path, named, context):
    """Assign each (variable, name) from the TF checkpoint `path`; all are checked first.

    `context` starts the message of a missing or misshapen variable (flag, file, model).
    """
    try:
        reader = tf.train.load_checkpoint(path)
        check_variables(reader.get_variable_to_shape_map(), named, context)
        for variable, name in named:
            variable.assign(reader.get_tensor(name))
    except tf.errors.OpError as error:
        raise InputError(f'{path}: not a readable TensorFlow checkpoint '
                         f'({_first_line(error)})') from None


def load_backbone(backbone, path):
    """Load a TF-slim checkpoint (e.g. slim's ImageNet `resnet_v1_50.ckpt`) into `backbone`."""
    context = f'--initial_checkpoint {path} does not fit backbone {backbone.name}'
    load_variables(path, backbone_variables(backbone, context), context)
    return backbone
