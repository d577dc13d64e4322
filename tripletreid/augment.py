"""Training-time augmentations beyond the official flip and crop."""
import tensorflow as tf


def random_erasing(image, seed, probability, area=(0.02, 0.4), min_aspect=0.3):
    """Random Erasing (Zhong et al. 2020): with `probability`, overwrite a rectangle with noise.

    The rectangle covers a uniform share in `area` of the image, with an aspect ratio (height
    over width) log-uniform in [min_aspect, 1 / min_aspect], clipped to the image, at a uniform
    position; its pixels become uniform noise in [0, 255]. Stateless: the same `seed` erases the
    same rectangle, so batches stay a function of (seed, step).
    """
    height, width = image.shape[0], image.shape[1]
    draw = tf.random.stateless_uniform([5], seed)
    share = area[0] + draw[0] * (area[1] - area[0])
    log_aspect = tf.math.log(min_aspect) * (1.0 - 2.0 * draw[1])
    size = share * height * width
    box_h = tf.clip_by_value(tf.round(tf.sqrt(size * tf.exp(log_aspect))), 1.0, height)
    box_w = tf.clip_by_value(tf.round(tf.sqrt(size / tf.exp(log_aspect))), 1.0, width)
    top = tf.floor(draw[2] * (height - box_h + 1))
    left = tf.floor(draw[3] * (width - box_w + 1))
    rows = tf.range(height, dtype=tf.float32)[:, None]
    cols = tf.range(width, dtype=tf.float32)[None, :]
    inside = (rows >= top) & (rows < top + box_h) & (cols >= left) & (cols < left + box_w)
    erase = inside & (draw[4] < probability)
    noise = tf.random.stateless_uniform(
        tf.shape(image), tf.random.experimental.stateless_fold_in(seed, 1), maxval=255.0)
    return tf.where(erase[:, :, None], noise, image)
