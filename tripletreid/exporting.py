"""Exported models that run without this project: a SavedModel or a `.keras` file taking uint8
images of any size and returning embeddings (the resizing inside)."""
import os
import shutil
import tempfile
import time

import keras
import tensorflow as tf

from tripletreid.errors import InputError
from tripletreid.fused_batch_norm import fuse

SIGNATURE = 'serving_default'
INPUT_NAME, OUTPUT_NAME = 'images', 'embeddings'
KERAS_SUFFIX = '.keras'


def output_paths(output, format_):
    """{format: path} to write, from --output and --format (see their help)."""
    output = os.path.normpath(output)
    is_keras = output.endswith(KERAS_SUFFIX)
    format_ = format_ or ('keras' if is_keras else 'savedmodel')
    if format_ == 'keras' and not is_keras:
        raise InputError(f'--output {output}: a Keras file must end in {KERAS_SUFFIX}')
    if format_ != 'keras' and is_keras:
        raise InputError(f'--output {output}: with --format {format_}, --output names the '
                         f'SavedModel directory, without {KERAS_SUFFIX}')
    paths = {'savedmodel': output, 'keras': output + KERAS_SUFFIX} if format_ == 'both' else {
        format_: output}
    return paths


def portable_model(model, size):
    """uint8 images of any size to embeddings, with the resizing inside; core layers only."""
    images = keras.Input((None, None, 3), dtype='uint8', name=INPUT_NAME)
    # Only a cast: Resizing would round a uint8 input's result back to uint8.
    floats = keras.layers.Rescaling(1.0, name='to_float32')(images)
    # Resizing's call defaults to training=True, which Keras would pass on to the batch norms
    # after it when the model is called without `training` (batch statistics, and updated
    # moving averages). An explicit False keeps a plain call in inference mode; a caller's
    # own `training` still takes precedence.
    resized = keras.layers.Resizing(*size, interpolation='bilinear', name='resize')(
        floats, training=False)
    embeddings = keras.layers.Identity(name=OUTPUT_NAME)(model(resized))
    return keras.Model(images, embeddings, name=f'{model.name}_uint8')


def write_saved_model(portable, path):
    """A SavedModel whose `serving_default` signature takes uint8 images of any size.

    The endpoint carries the variables it uses; `archive.track(portable)` would store each of
    them a second time and double the file.
    """
    archive = keras.export.ExportArchive()
    archive.add_endpoint(
        SIGNATURE, lambda images: {OUTPUT_NAME: portable(images, training=False)},
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name=INPUT_NAME)])
    archive.write_out(path, verbose=False)


WRITERS = {'savedmodel': write_saved_model, 'keras': keras.Model.save}


def write_atomically(path, write):
    """`write(tmp)` beside `path`, then rename: an interrupted export leaves no partial model.

    Works for directories (a SavedModel) too: an output being replaced is first moved into the
    staging folder, which is then deleted with it.
    """
    staging = tempfile.mkdtemp(prefix=f'.{os.path.basename(path)}.', suffix='.tmp',
                               dir=os.path.dirname(os.path.abspath(path)))
    try:
        tmp = os.path.join(staging, os.path.basename(path))
        write(tmp)
        if os.path.lexists(path):
            os.replace(path, os.path.join(staging, 'replaced'))
        os.replace(tmp, path)
    finally:
        shutil.rmtree(staging)


def size_mb(path):
    """Megabytes of a file or of a directory tree, for the report."""
    if os.path.isfile(path):
        return os.path.getsize(path) / 1e6
    return sum(os.path.getsize(os.path.join(folder, name))
               for folder, _, names in os.walk(path) for name in names) / 1e6


def export(model, format_, path, size):
    """Write `model` (embeddings of float images) as `format_` (`savedmodel` or `keras`) taking
    uint8 images resized to `size` inside; returns the seconds it took."""
    began = time.time()
    # A SavedModel holds TensorFlow ops only, and runs faster with fused batch norms; a
    # .keras file holds layers, and must hold Keras' own to load without this project.
    portable = portable_model(fuse(model) if format_ == 'savedmodel' else model, size)
    write_atomically(path, lambda tmp: WRITERS[format_](portable, tmp))
    return time.time() - began
