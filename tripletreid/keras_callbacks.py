"""A Keras callback that measures retrieval (mAP, CMC) during `model.fit`, as evaluate.py does.

The training loss says little about retrieval; this embeds a query/gallery split every N epochs
and scores it with `tripletreid.evaluation.evaluate_embeddings`, evaluate.py's own evaluation,
so its figures are evaluate.py's on the same embeddings.
"""
import keras
import numpy as np
import tensorflow as tf

import excluders
from tripletreid import evaluation
from tripletreid.csv_dataset import Dataset


def _split(name, part, prefix):
    """(inputs, the Dataset evaluate.py would read) of `part` = (inputs, labels[, cameras]);
    file names `prefix`0, `prefix`1, ... tell the images apart for the excluder."""
    inputs, labels, *cameras = part
    labels = np.asarray(labels)
    return inputs, Dataset(name, labels.astype(str),
                           np.array([f'{prefix}{i}' for i in range(len(labels))]),
                           np.asarray(cameras[0]).astype(str) if cameras else None)


class RetrievalEvaluation(keras.callbacks.Callback):
    """mAP and top-k accuracy (CMC) of `query` against `gallery` every `every` epochs, in the
    logs (`retrieval_mAP`, `retrieval_top1`, ...) and, with `log_dir`, in a TensorBoard event
    file there (step = epoch, 0-based, as Keras' TensorBoard callback counts).

    `query` and `gallery` are (inputs, identity labels) or (inputs, labels, cameras), inputs
    as `model.predict` takes them. Without `gallery`, every query is searched among the other
    queries (evaluate.py's `diagonal` excluder). With cameras, a gallery image of the query's
    identity seen by the query's camera is ignored (the `camera` excluder); without, nothing
    is. `metric` is evaluate.py's `--metric`; `ranks` the top-k accuracies logged.
    """

    def __init__(self, query, gallery=None, metric='euclidean', every=1, log_dir=None,
                 ranks=(1, 5, 10), batch_size=256):
        super().__init__()
        if every < 1:
            raise ValueError(f'every must be a positive number of epochs, not {every}')
        if gallery is not None and (len(query) == 3) != (len(gallery) == 3):
            raise ValueError('give cameras for both query and gallery, or for neither')
        self.query_inputs, self.query = _split('query split', query, 'q')
        self.gallery_inputs, self.gallery = ((self.query_inputs, self.query) if gallery is None
                                             else _split('gallery split', gallery, 'g'))
        self.excluder = excluders.create('diagonal' if self.query.cams is None else 'camera',
                                         self.gallery)
        self.metric, self.every, self.log_dir = metric, every, log_dir
        self.ranks, self.batch_size = ranks, batch_size
        self._writer = None

    def evaluate(self, model=None):
        """evaluate.py's result dict (mAP, CMC, mINP, per-query values) for `model` (the one
        being trained if None)."""
        model = model or self.model
        query_embs = model.predict(self.query_inputs, batch_size=self.batch_size, verbose=0)
        gallery_embs = (query_embs if self.gallery_inputs is self.query_inputs else
                        model.predict(self.gallery_inputs, batch_size=self.batch_size, verbose=0))
        return evaluation.evaluate_embeddings(
            np.asarray(query_embs, np.float64), np.asarray(gallery_embs, np.float64), self.query,
            self.gallery, self.excluder, self.metric, self.batch_size)

    def figures(self, result):
        """{log name: value} of a result: mAP and the top-k accuracies the gallery allows."""
        cmc = result['CMC']
        return {'retrieval_mAP': result['mAP'],
                **{f'retrieval_top{k}': cmc[k - 1] for k in self.ranks if k <= len(cmc)}}

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        figures = self.figures(self.evaluate())
        if logs is not None:
            logs.update(figures)
        if self.log_dir is not None:
            self._writer = self._writer or tf.summary.create_file_writer(self.log_dir)
            with self._writer.as_default():
                for name, value in figures.items():
                    tf.summary.scalar(name, value, step=epoch)
            self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
