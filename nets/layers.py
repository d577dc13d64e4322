"""Layers the backbones share."""
import keras


@keras.saving.register_keras_serializable(package='triplet_reid')
class Preprocess(keras.layers.Layer):
    """Map raw RGB images in [0, 255] to what a backbone was trained on.

    `(x[..., ::-1] if bgr else x) * scale - mean`, so that every model takes the same input and
    an exported model needs no outside preprocessing.
    """

    def __init__(self, mean=(0.0, 0.0, 0.0), scale=1.0, bgr=False, **kwargs):
        super().__init__(**kwargs)
        self.mean = tuple(float(m) for m in mean)
        self.scale = float(scale)
        self.bgr = bool(bgr)

    def call(self, images):
        images = keras.ops.cast(images, self.compute_dtype)
        if self.bgr:
            images = keras.ops.flip(images, axis=-1)
        return images * self.scale - keras.ops.convert_to_tensor(self.mean, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), 'mean': self.mean, 'scale': self.scale, 'bgr': self.bgr}
