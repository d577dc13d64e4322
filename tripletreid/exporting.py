"""Exported models that run without this project, taking uint8 images of any size and returning
embeddings (the resizing inside): a SavedModel, a `.keras` file, a LiteRT `.tflite` flatbuffer
(float32, float16, dynamic-range int8 or full int8) or an ONNX model (tf2onnx).

Every format keeps dynamic batch and image sizes: both converters handle the resize of a
dynamic input (measured: LiteRT's interpreter takes `resize_tensor_input`, ONNX Runtime any
shape). The file is written beside its path, checked by `verify` (the caller's), then renamed
into place: a refused or interrupted export leaves nothing.
"""
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
SUFFIXES = {'keras': KERAS_SUFFIX, 'tflite': '.tflite', 'onnx': '.onnx'}
QUANTIZATIONS = ('none', 'float16', 'dynamic_int8', 'int8')
ONNX_OPSET = 18  # the newest tf2onnx 1.17 writes; ONNX Runtime runs it


def output_paths(output, format_):
    """{format: path} to write, from --output and --format (see their help)."""
    output = os.path.normpath(output)
    suffix_of = {suffix: name for name, suffix in SUFFIXES.items()}
    named = next((name for suffix, name in suffix_of.items() if output.endswith(suffix)), None)
    format_ = format_ or named or 'savedmodel'
    if format_ in SUFFIXES and named != format_:
        what = {'keras': 'a Keras file', 'tflite': 'a LiteRT file', 'onnx': 'an ONNX file'}[
            format_]
        raise InputError(f'--output {output}: {what} must end in {SUFFIXES[format_]}')
    if format_ in ('savedmodel', 'both') and named:
        raise InputError(f'--output {output}: with --format {format_}, --output names the '
                         f'SavedModel directory, without {SUFFIXES[named]}')
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


def tflite_bytes(portable, quantize='none', representative=None):
    """The LiteRT flatbuffer of the portable model, converted from its SavedModel (converting
    the Keras model directly gives NaN embeddings in TF 2.21: its variables are not frozen).

    `quantize`: `none` (float32), `float16` (weights), `dynamic_int8` (int8 weights, float
    activations) or `int8` (every op in int8, the activation ranges calibrated on
    `representative`, a function returning an iterable of uint8 images [h, w, 3]); the input
    stays uint8 and the output float32."""
    with tempfile.TemporaryDirectory() as folder:
        write_saved_model(portable, os.path.join(folder, 'model'))
        converter = tf.lite.TFLiteConverter.from_saved_model(os.path.join(folder, 'model'))
        if quantize != 'none':
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == 'float16':
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == 'int8':
            converter.representative_dataset = lambda: (
                {INPUT_NAME: image[None]} for image in representative())
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return converter.convert()


def onnx_bytes(portable):
    """The ONNX model of the portable model (tf2onnx, opset `ONNX_OPSET`): input `images`
    uint8 [batch, height, width, 3], output `embeddings` float32 [batch, D]."""
    import logging

    import tf2onnx
    logging.getLogger('tf2onnx').setLevel(logging.ERROR)
    signature = [tf.TensorSpec([None, None, None, 3], tf.uint8, name=INPUT_NAME)]
    function = tf.function(lambda images: {OUTPUT_NAME: portable(images, training=False)},
                           input_signature=signature)
    proto, _ = tf2onnx.convert.from_function(function, input_signature=signature,
                                             opset=ONNX_OPSET)
    return proto.SerializeToString()


def write_bytes(content):
    def write(path):
        with open(path, 'wb') as f:
            f.write(content)
    return write


def export(model, format_, path, size, verify=None, quantize='none', representative=None):
    """Write `model` (embeddings of float images) as `format_` (`savedmodel`, `keras`,
    `tflite` or `onnx`) taking uint8 images resized to `size` inside; returns the seconds it
    took. `verify(format_, tmp_path)`, if given, checks the written file before it is renamed
    into place (its exception leaves nothing behind); `quantize` and `representative` are
    `tflite_bytes`'s."""
    began = time.time()
    # A SavedModel holds TensorFlow ops only, and runs faster with fused batch norms; a
    # .keras file holds layers, and must hold Keras' own to load without this project.
    portable = portable_model(fuse(model) if format_ != 'keras' else model, size)
    if format_ == 'tflite':
        write = write_bytes(tflite_bytes(portable, quantize, representative))
    elif format_ == 'onnx':
        write = write_bytes(onnx_bytes(portable))
    else:
        def write(tmp):
            WRITERS[format_](portable, tmp)

    def write_and_verify(tmp):
        write(tmp)
        if verify is not None:
            verify(format_, tmp)

    write_atomically(path, write_and_verify)
    return time.time() - began
