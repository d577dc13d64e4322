"""Running an exported model in its own runtime: LiteRT's interpreter (`ai-edge-litert`) for
`.tflite`, ONNX Runtime for `.onnx`, TensorFlow for a SavedModel, Keras for a `.keras` file.

Each runner maps a uint8 batch [n, h, w, 3] (any h and w) to float32 embeddings [n, D]. Nothing
here imports TensorFlow, LiteRT or ONNX Runtime until a runner is made; a missing one is a
one-line `InputError` naming the extra that installs it.
"""
import numpy as np

from tripletreid.errors import InputError

EXTRA = 'pip install -e ".[export]"'
# What each format needs beyond TensorFlow: (module, package) to convert and to run.
NEEDS = {'tflite': [('ai_edge_litert.interpreter', 'ai-edge-litert')],
         'onnx': [('tf2onnx', 'tf2onnx'), ('onnx', 'onnx'), ('onnxruntime', 'onnxruntime')]}


def require(format_):
    """Import what `format_` needs to be converted and run, or a one-line InputError."""
    import importlib
    for module, package in NEEDS.get(format_, []):
        try:
            importlib.import_module(module)
        except ImportError:
            raise InputError(f'--format {format_} needs {package}: {EXTRA}') from None


class LiteRunner:
    """A `.tflite` model (bytes or a path) in LiteRT's interpreter; the input is resized to each
    batch's shape (its batch and image sizes are dynamic)."""

    def __init__(self, model, threads=None):
        require('tflite')
        from ai_edge_litert.interpreter import Interpreter
        content = model if isinstance(model, bytes) else None
        self.interpreter = Interpreter(model_path=None if content else model,
                                       model_content=content, num_threads=threads)
        self.input = self.interpreter.get_input_details()[0]['index']
        self.output = self.interpreter.get_output_details()[0]['index']
        self.shape = None

    def __call__(self, batch):
        batch = np.ascontiguousarray(batch, dtype=np.uint8)
        if batch.shape != self.shape:
            self.interpreter.resize_tensor_input(self.input, batch.shape, strict=False)
            self.interpreter.allocate_tensors()
            self.shape = batch.shape
        self.interpreter.set_tensor(self.input, batch)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output).copy()


class OnnxRunner:
    """An `.onnx` model (bytes or a path) in ONNX Runtime on the CPU."""

    def __init__(self, model, threads=None):
        require('onnx')
        import onnxruntime
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(model, options,
                                                    providers=['CPUExecutionProvider'])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, batch):
        return self.session.run(None, {self.input: np.ascontiguousarray(batch, np.uint8)})[0]


class SavedModelRunner:
    def __init__(self, path, threads=None):
        import tensorflow as tf
        self.tf = tf
        self.serve = tf.saved_model.load(path).signatures['serving_default']

    def __call__(self, batch):
        return self.serve(images=self.tf.constant(batch, self.tf.uint8))['embeddings'].numpy()


class KerasRunner:
    def __init__(self, path, threads=None):
        import keras
        self.model = keras.models.load_model(path)

    def __call__(self, batch):
        return np.asarray(self.model(np.asarray(batch, np.uint8)))


RUNNERS = {'tflite': LiteRunner, 'onnx': OnnxRunner, 'savedmodel': SavedModelRunner,
           'keras': KerasRunner}


def runner(format_, model, threads=None):
    """The runner of an exported `model` (a path; bytes for tflite and onnx)."""
    return RUNNERS[format_](model, threads)


def embed_images(run, images, batch_size=32):
    """Embeddings [N, D] of a list of uint8 images [h, w, 3] with `run`: images of one size go
    together, `batch_size` at a time; rows in the order of `images`."""
    result = [None] * len(images)
    by_shape = {}
    for i, image in enumerate(images):
        by_shape.setdefault(image.shape, []).append(i)
    for rows in by_shape.values():
        for start in range(0, len(rows), batch_size):
            part = rows[start:start + batch_size]
            for i, emb in zip(part, run(np.stack([images[i] for i in part]))):
                result[i] = emb
    return np.stack(result).astype(np.float32)
