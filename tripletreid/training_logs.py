"""What training reports each step: the console/log line, TensorBoard, `--detailed_logs`, and
warnings about the training's health."""
import collections
import logging
import os
import time
from datetime import timedelta

import numpy as np
import tensorflow as tf

from heads import HEADS
from tripletreid import health
from tripletreid.losses import LOSSES

LOG = logging.getLogger('train')
# Logged beside the triplet loss when in use.
IDENTITY_LOSSES = ('id_loss', 'center_loss', 'verification_loss')


def open_memmap(path, dtype, shape):
    """A memory-mapped array on disk, created on the first run and reopened on resume; a run
    extended (`--extend_to`) grows it by the new steps' rows, written before they are read."""
    if not os.path.exists(path):
        return np.memmap(path, dtype=dtype, mode='w+', shape=shape)
    size = np.dtype(dtype).itemsize * int(np.prod(shape))
    if os.path.getsize(path) < size:
        os.truncate(path, size)
    return np.memmap(path, dtype=dtype, mode='r+', shape=shape)


class Eta:
    """The time left, from the mean duration of the last `window` steps.

    The clock starts at the end of the first `tracing` steps, whose times say little about
    the others: the first traces the step and fills the input pipeline, the second traces it
    again for any batch size (`reduce_retracing`). The first estimate comes after the next.
    """

    def __init__(self, window=50, tracing=2):
        self.ends = collections.deque(maxlen=window + 1)
        self.tracing = tracing

    def update(self, now, steps_left):
        """Record a step that ended at `now`; seconds left for `steps_left` more, or None."""
        self.tracing -= 1
        if self.tracing > 0:
            return None
        self.ends.append(now)
        if len(self.ends) < 2:
            return None
        return (self.ends[-1] - self.ends[0]) / (len(self.ends) - 1) * steps_left


def read_scalars(experiment_root, *tags):
    """{tag: {step: value}} of scalars that training wrote for TensorBoard, to test or plot."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(experiment_root, size_guidance={'tensors': 0})
    events.Reload()
    return {tag: {event.step: float(tf.make_ndarray(event.tensor_proto))
                  for event in events.Tensors(tag)} for tag in tags}


class TrainingLogs:
    """Console line and `train.log`, TensorBoard summaries, and the optional detailed arrays.

    `--detailed_logs` writes, as the official code, `embeddings.dat`, `losses.dat` and
    `fids.dat` in the experiment root: [train_iterations, P*K(, D)] arrays, row = step - 1; the
    smaller batches of a curriculum fill the start of their row, the rest is NaN (no file name).
    A `health.HealthMonitor` watches every step: a collapse or stall is a WARNING with advice
    when it starts, an INFO line when it ends, a marker on the console line while it lasts.
    """

    def __init__(self, config, start_step, fid_length):
        """`config` is the experiment's `TrainConfig`; `fid_length` the longest file name."""
        self.train_iterations = config.train_iterations
        self.batch_k = config.batch_k
        self.start_step = start_step
        self.curriculum = config.curriculum()
        self.sizes = None  # (P, K) of the last batch
        self.health = health.HealthMonitor(config.margin, stalls=not config.identity_losses)
        self.remedies = health.remedies(config, HEADS, LOSSES)
        self.eta = Eta()
        self.log_every = config.log_every
        self.writer = tf.summary.create_file_writer(config.experiment_root)
        self.detailed = None
        if config.detailed_logs:
            size, iters = config.batch_p * config.batch_k, config.train_iterations
            root = config.experiment_root
            self.detailed = {
                'embeddings': open_memmap(os.path.join(root, 'embeddings.dat'), np.float32,
                                          (iters, size, config.embedding_dim)),
                'losses': open_memmap(os.path.join(root, 'losses.dat'), np.float32,
                                      (iters, size)),
                'fids': open_memmap(os.path.join(root, 'fids.dat'), f'S{fid_length}',
                                    (iters, size)),
            }

    def write(self, step, values, fids, learning_rate, seconds):
        losses = values['losses']
        eta = self.eta.update(time.time(), self.train_iterations - step)
        console = (step % self.log_every == 0 or step == self.start_step + 1
                   or step == self.train_iterations)
        sizes = self.curriculum.sizes(step - 1)
        if sizes != self.sizes:
            self.sizes = sizes
            LOG.info('Batches of P=%d identities of K=%d images from step %d on', *sizes, step)
        self._check_health(step, values)
        markers = ''.join(f' [{marker}]' for marker in self.health.markers())
        extra = ''.join(f', {name.replace("_", "-")}: {values[name]:.3f}'
                        for name in IDENTITY_LOSSES if name in values)
        LOG.info('iter:%6d, loss min|avg|max: %.3f|%.3f|%6.3f, batch-p@%d: %.2f%%%s, '
                 'ETA: %s (%.2fs/it)%s', step, losses.min(), losses.mean(), losses.max(),
                 sizes[1] - 1, 100 * values['prec_at_k'], extra,
                 '?' if eta is None else timedelta(seconds=int(eta)), seconds, markers,
                 extra={'console': console})
        self._summaries(step, values, learning_rate, seconds)
        if self.detailed is not None:
            for name, value in (('embeddings', values['embeddings']), ('losses', losses),
                                ('fids', fids)):
                self._store(name, step - 1, value)

    def _store(self, name, row, value):
        """Row `row` of a detailed array: `value`, then NaN (or no file name) where the batch of
        a curriculum stage is smaller than the final one."""
        array = self.detailed[name]
        array[row, len(value):] = b'' if array.dtype.kind == 'S' else np.nan
        array[row, :len(value)] = value

    def _check_health(self, step, values):
        """Feed the health monitor the step's scalar summaries, those TensorBoard gets (the
        active fraction of the batch's size, which a curriculum changes), so that a logged run
        replays as it ran (up to TensorBoard's float32)."""
        losses = values['losses']
        for event in self.health.update(step, losses.mean(), health.spread(values['embeddings']),
                                        values['prec_at_k'], values['active'] / len(losses)):
            (LOG.warning if event.started else LOG.info)(
                self.health.describe(event, self.remedies))

    def _summaries(self, step, values, learning_rate, seconds):
        scalars = {'loss': values['losses'].mean(),
                   **{name: values[name] for name in IDENTITY_LOSSES if name in values},
                   'batch_top1': values['top1'],
                   f'batch_prec_at_{self.batch_k - 1}': values['prec_at_k'],
                   'active_count': values['active'], 'learning_rate': learning_rate,
                   'health/distance_spread': self.health.values['spread'],
                   'health/collapsed': int(self.health.collapse.active),
                   'health/stalled': int(self.health.stall.active),
                   'timings/seconds_per_iteration': seconds}
        histograms = {'losses': values['losses'], 'dists/all': values['dists'],
                      'dists/positive': values['positive_dists'],
                      'dists/negative': values['negative_dists'],
                      'embedding_lengths': np.linalg.norm(values['embeddings'], axis=1)}
        self._write_summaries(np.int64(step),
                              {name: np.float32(value) for name, value in scalars.items()},
                              histograms)

    @tf.function(reduce_retracing=True)
    def _write_summaries(self, step, scalars, histograms):
        """One graph for a step's summaries: written op by op in eager mode they took 38 ms
        a step here, a quarter of a small network's step; traced, 4 ms."""
        with self.writer.as_default(step=step):
            for name, value in scalars.items():
                tf.summary.scalar(name, value)
            for name, value in histograms.items():
                tf.summary.histogram(name, value)

    def close(self):
        self.writer.flush()
        if self.detailed is not None:
            for array in self.detailed.values():
                array.flush()
