"""Training checkpoints in the experiment root: `checkpoint-<step>.index/.data-*`, as TF1 named
them.

A checkpoint holds the model, the optimizer (its step counter and Adam moments), the step and,
with ID or center losses, their classifier and centers.
The input pipeline needs no state: its batches are a function of (seed, step).
"""
import glob
import os
import re
import shutil
import tempfile

import tensorflow as tf

from tripletreid.errors import InputError

PREFIX = 'checkpoint'
NOT_RESUMABLE = 'NOT_RESUMABLE'  # a file saying why `--resume` cannot continue this experiment
_NAME = re.compile(PREFIX + r'-(\d+)\.index$')


def complete_checkpoints(directory):
    """{step: path prefix} of the checkpoints whose index and data files are all present.

    A checkpoint interrupted while being written lacks files and is passed over, so a kill at
    the wrong moment falls back to the previous checkpoint instead of failing to resume.
    """
    found = {}
    for index in glob.glob(os.path.join(glob.escape(directory), PREFIX + '-*.index')):
        match = _NAME.search(os.path.basename(index))
        prefix = index[:-len('.index')]
        if match and _data_complete(prefix):
            found[int(match.group(1))] = prefix
    return found


def _data_complete(prefix):
    shards = glob.glob(glob.escape(prefix) + '.data-*-of-*')
    if not shards:
        return False
    total = int(shards[0].rsplit('-of-', 1)[1])
    return len(shards) == total


def _remove_files(directory, pattern):
    """Remove the files (and folders) of `directory` that match the glob `pattern`, index
    files first, so that no index outlives its data."""
    found = glob.glob(os.path.join(glob.escape(directory), pattern))
    for path in sorted(found, key=lambda p: not p.endswith('.index')):
        if os.path.isfile(path):
            os.remove(path)
        else:
            shutil.rmtree(path, ignore_errors=True)


def _fsync(path):
    """Flush `path` (a file, or a folder's entries) to disk, so a power cut keeps it too."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def latest_checkpoint(directory):
    """Path prefix of the newest complete checkpoint in `directory`, or None."""
    found = complete_checkpoints(directory)
    return found[max(found)] if found else None


class TrainingCheckpoints:
    """Save and restore (model, optimizer, step) in `directory`; keep all, or the last `keep`.

    `extra` names further objects to save beside them (e.g. `identity=` the classifier and
    centers of `tripletreid.losses.identity.IdentityLosses`); None ones are left out. A worker that
    `writes` nothing (all but the chief of a multi-worker run) still takes part in each save,
    whose collective reads need every worker, into a folder it then removes.
    """

    def __init__(self, directory, model, optimizer, keep=0, writes=True, **extra):
        self.directory = directory
        self.keep = keep
        self.writes = writes
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
        extra = {name: value for name, value in extra.items() if value is not None}
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=self.step,
                                              **extra)

    def save(self, step):
        """Write checkpoint `step` so that a crash at any moment leaves no partial one.

        It is written under a hidden temporary prefix, synced to disk, and renamed into place
        data first and index last: `complete_checkpoints` sees it only once it is whole.
        """
        self.step.assign(step)
        if not self.writes:
            with tempfile.TemporaryDirectory() as scratch:
                self.checkpoint.write(os.path.join(scratch, PREFIX))
            return
        final = os.path.join(self.directory, f'{PREFIX}-{step}')
        partial = os.path.join(self.directory, f'.{PREFIX}-{step}.partial')
        _remove_files(self.directory, f'.{PREFIX}-*.partial*')  # what a crash left
        try:
            self.checkpoint.write(partial)
            _remove_files(self.directory, f'{PREFIX}-{step}.*')  # no old index by new data
            written = sorted(glob.glob(glob.escape(partial) + '.*'),
                             key=lambda path: path.endswith('.index'))
            for path in written:
                _fsync(path)
                os.replace(path, final + path[len(partial):])
            _fsync(self.directory)
        except (tf.errors.OpError, OSError) as error:  # a full disk, say
            _remove_files(self.directory, f'.{PREFIX}-*.partial*')
            reason = str(getattr(error, 'message', None) or error).strip().splitlines()[0]
            raise InputError(f'{final}: cannot write the checkpoint ({reason})') from None
        if self.keep:
            for old in sorted(complete_checkpoints(self.directory))[:-self.keep]:
                _remove_files(self.directory, f'{PREFIX}-{old}.*')

    def forbid_resume(self, reason):
        """Mark the experiment as one `restore_latest` refuses, saying `reason`."""
        with open(os.path.join(self.directory, NOT_RESUMABLE), 'w') as f:
            f.write(reason + '\n')

    def restore_latest(self):
        """Restore the newest complete checkpoint and return its step."""
        marker = os.path.join(self.directory, NOT_RESUMABLE)
        if os.path.exists(marker):
            with open(marker) as f:
                raise InputError(f'{self.directory}: {f.read().strip()}')
        path = latest_checkpoint(self.directory)
        if path is None:
            raise InputError(f'{self.directory}: no complete checkpoint to resume from')
        self.checkpoint.read(path).assert_consumed()
        return int(self.step.numpy())


def restore_model(model, path):
    """Load only the model's weights from the training checkpoint `path` (for embedding)."""
    try:
        status = tf.train.Checkpoint(model=model).read(path)
        status.expect_partial().assert_existing_objects_matched()
    except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError,
            AssertionError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ''
        # The half-restored checkpoint object warns about every variable when collected.
        tf.get_logger().setLevel('ERROR')
        raise InputError(f'checkpoint {path} does not fit the model of args.json: '
                         f'{first}') from None
