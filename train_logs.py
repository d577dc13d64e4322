"""What training reports each step: the console/log line, TensorBoard, and `--detailed_logs`."""
import logging
import os
import time
from datetime import timedelta

import numpy as np
import tensorflow as tf

LOG = logging.getLogger('train')


def open_memmap(path, dtype, shape):
    """A memory-mapped array on disk, created on the first run and reopened on resume."""
    mode = 'r+' if os.path.exists(path) else 'w+'
    return np.memmap(path, dtype=dtype, mode=mode, shape=shape)


class TrainingLogs:
    """Console line and `train.log`, TensorBoard summaries, and the optional detailed arrays.

    `--detailed_logs` writes, as the official code, `embeddings.dat`, `losses.dat` and
    `fids.dat` in the experiment root: [train_iterations, P*K(, D)] arrays, row = step - 1.
    """

    def __init__(self, args, start_step, fid_length):
        self.args = args
        self.start_step = start_step
        self.started = time.time()
        self.writer = tf.summary.create_file_writer(args.experiment_root)
        self.detailed = None
        if args.detailed_logs:
            size, iters = args.batch_p * args.batch_k, args.train_iterations
            root = args.experiment_root
            self.detailed = {
                'embeddings': open_memmap(os.path.join(root, 'embeddings.dat'), np.float32,
                                          (iters, size, args.embedding_dim)),
                'losses': open_memmap(os.path.join(root, 'losses.dat'), np.float32,
                                      (iters, size)),
                'fids': open_memmap(os.path.join(root, 'fids.dat'), f'S{fid_length}', (iters, size)),
            }

    def write(self, step, values, fids, learning_rate, seconds):
        losses = values['losses']
        done = step - self.start_step
        eta = (time.time() - self.started) / done * (self.args.train_iterations - step)
        LOG.info('iter:%6d, loss min|avg|max: %.3f|%.3f|%6.3f, batch-p@%d: %.2f%%, '
                 'ETA: %s (%.2fs/it)', step, losses.min(), losses.mean(), losses.max(),
                 self.args.batch_k - 1, 100 * values['prec_at_k'],
                 timedelta(seconds=int(eta)), seconds)
        self._summaries(step, values, learning_rate, seconds)
        if self.detailed is not None:
            row = step - 1
            self.detailed['embeddings'][row] = values['embeddings']
            self.detailed['losses'][row] = losses
            self.detailed['fids'][row] = fids

    def _summaries(self, step, values, learning_rate, seconds):
        with self.writer.as_default(step=step):
            tf.summary.scalar('loss', values['losses'].mean())
            tf.summary.scalar('batch_top1', values['top1'])
            tf.summary.scalar(f'batch_prec_at_{self.args.batch_k - 1}', values['prec_at_k'])
            tf.summary.scalar('active_count', values['active'])
            tf.summary.scalar('learning_rate', learning_rate)
            tf.summary.scalar('timings/seconds_per_iteration', seconds)
            tf.summary.histogram('losses', values['losses'])
            tf.summary.histogram('dists/all', values['dists'])
            tf.summary.histogram('dists/positive', values['positive_dists'])
            tf.summary.histogram('dists/negative', values['negative_dists'])
            tf.summary.histogram('embedding_lengths',
                                 np.linalg.norm(values['embeddings'], axis=1))

    def close(self):
        self.writer.flush()
        if self.detailed is not None:
            for array in self.detailed.values():
                array.flush()
