"""Keras Applications' ResNet50 (its own layout, caffe preprocessing), under the name `resnet50`.

Its ImageNet file (`resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5`) fits this layout and
not the slim one of `resnet_v1_50`; it is read from a path the user gives, never downloaded.
"""
import keras

from nets.layers import preprocess

CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


def build(weights=None):
    """The backbone: raw RGB in [0, 255] to the 2048-D average pool; `weights` a local file."""
    images = keras.Input((None, None, 3), name='images')
    x = preprocess(images, mean=CAFFE_BGR_MEAN, bgr=True)
    resnet = keras.applications.ResNet50(include_top=False, weights=weights, pooling='avg',
                                         input_shape=(None, None, 3))
    return keras.Model(images, resnet(x), name='resnet50')
