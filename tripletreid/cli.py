"""What the scripts share around their `main`: one-line errors, argument types, logging,
TensorFlow's quiet start and clean stops on signals.

Nothing here imports TensorFlow at import time, so that `--help` and flag errors come at once.
"""
import argparse
import logging
import os
import re
import signal
import sys

from tripletreid.errors import InputError, cannot_write


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, with each flag error on one line that names the flag and points to
    `--help` (argparse's own prints the whole usage before it)."""

    def error(self, message):
        self.exit(2, f'{self.prog}: error: {message} (see {self.prog} --help)\n')


def quiet_tensorflow():
    """Import TensorFlow with its C++ start-up chatter hidden (device probing, CPU notes).

    TensorFlow >= 2.18 prints these through absl before TF_CPP_MIN_LOG_LEVEL applies, which
    would bury our one-line errors; Python exceptions still show, after stderr is restored.
    """
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    sys.stderr.flush()
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf
        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def run(main):
    """Run `main()`, turning an `InputError` into a one-line message and exit code 2, and a
    Ctrl+C outside the training loop (which stops cleanly by itself) into one line and 130."""
    prog = os.path.basename(sys.argv[0])
    try:
        main()
    except InputError as error:
        print(f'{prog}: error: {error}', file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f'{prog}: interrupted', file=sys.stderr)
        sys.exit(130)


# Argument types (same names as the official code).

def _number_above(arg, type_, lowest, what):
    try:
        value = type_(arg)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{arg!r} is not {what}') from None
    if value <= lowest:
        raise argparse.ArgumentTypeError(f'{arg!r} is not {what}')
    return value


def positive_int(arg):
    return _number_above(arg, int, 0, 'a positive integer')


def nonnegative_int(arg):
    return _number_above(arg, int, -1, 'a non-negative integer')


def positive_float(arg):
    return _number_above(arg, float, 0.0, 'a positive number')


def nonnegative_float(arg):
    value = _number_above(arg, float, float('-inf'), 'a number')
    if not value >= 0:
        raise argparse.ArgumentTypeError(f'{arg!r} is not a non-negative number')
    return value


def margin_value(arg):
    """`soft`, `none` or a non-negative float, as the official `--margin` takes."""
    if isinstance(arg, str) and arg.lower() in ('soft', 'none'):
        return arg.lower()
    try:
        value = float(arg)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f'{arg!r} is neither `soft`, `none` nor a number') from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError(f'margin {arg!r} must be a non-negative number')
    return value


def named_pattern(flag, pattern, group, alternative=''):
    """The compiled regular expression `pattern` given to `flag`, which must name the group
    `group`; `alternative` says what else the flag takes, for the message."""
    try:
        regex = re.compile(pattern)
    except re.error as error:
        what = f'neither {alternative} nor a regular expression' if alternative else \
            'not a regular expression'
        raise InputError(f'{flag} {pattern!r}: {what} ({error})') from None
    if group not in regex.groupindex:
        raise InputError(f'{flag} {pattern!r} has no named group `{group}`; write it like '
                         f'(?P<{group}>...)')
    return regex


def _float(arg):
    try:
        return float(arg)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{arg!r} is not a number') from None


def finite_float(arg):
    """Any finite number."""
    value = _float(arg)
    if value != value or value in (float('inf'), float('-inf')):
        raise argparse.ArgumentTypeError(f'{arg!r} is not a finite number')
    return value


def probability(arg):
    """A number in [0, 1]."""
    value = _float(arg)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f'{arg!r} is not between 0 and 1')
    return value


def readable_directory(arg):
    """An existing, readable folder (checked now, so never applied to stored args.json paths)."""
    if not os.path.isdir(arg):
        raise argparse.ArgumentTypeError(f'{arg!r} is not a directory')
    if not os.access(arg, os.R_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f'{arg!r} is not readable')
    return arg


def readable_file(arg):
    if not os.path.isfile(arg):
        raise argparse.ArgumentTypeError(f'{arg!r} is not a file')
    if not os.access(arg, os.R_OK):
        raise argparse.ArgumentTypeError(f'{arg!r} is not readable')
    return arg


def shard(arg):
    """`I/N`: the I-th of N parts (1 <= I <= N), as the pair (I, N)."""
    try:
        index, count = (int(part) for part in arg.split('/'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'{arg!r} is not I/N (e.g. 2/4)') from None
    if not 1 <= index <= count:
        raise argparse.ArgumentTypeError(f'{arg!r}: I/N needs 1 <= I <= N')
    return index, count


FILESYSTEM_TYPES = (readable_directory, readable_file)


def explicit_flags(parser, argv=None):
    """The destinations of the flags actually given on the command line (not defaults)."""
    quiet = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    for action in parser._actions:
        if not action.option_strings or action.dest == 'help':
            continue
        if action.nargs == 0:  # store_true and friends
            quiet.add_argument(*action.option_strings, dest=action.dest,
                               action='store_const', const=action.const)
        else:
            quiet.add_argument(*action.option_strings, dest=action.dest)
    return set(vars(quiet.parse_known_args(argv)[0]))


def init_logging(log_file=None, level=logging.INFO):
    """Log to stderr and, if given, append to `log_file` (as the official `train.log`). A
    record made with `extra={'console': False}` goes to the file only (train.py --log_every)."""
    handlers = [logging.StreamHandler(sys.stderr)]
    handlers[0].addFilter(lambda record: getattr(record, 'console', True))
    if log_file:
        try:
            handlers.append(logging.FileHandler(log_file, mode='a'))
        except OSError as error:
            raise cannot_write(log_file, error) from None
    logging.getLogger('absl').setLevel(logging.WARNING)  # checkpoint chatter
    logging.basicConfig(level=level, handlers=handlers, force=True,
                        format='%(asctime)s [%(levelname)s] %(name)s: %(message)s')


# Signals: finish the current step, then stop cleanly.

class Uninterrupt:
    """Context manager that turns the first SIGINT/SIGTERM into a flag (`interrupted`).

    The loop checks the flag after each step, saves and exits cleanly; a second signal
    restores the default handling and aborts at once.
    """

    def __init__(self, signals=(signal.SIGINT, signal.SIGTERM), log=None):
        self.signals = signals
        self.log = log or logging.getLogger()
        self.interrupted = False
        self.original = {}

    def _handle(self, signum, frame):
        if self.interrupted:
            self._restore()
            signal.raise_signal(signum)
            return
        self.interrupted = True
        self.log.warning('%s received: stopping after this step (send it again to abort now)',
                         signal.Signals(signum).name)

    def _restore(self):
        for signum, handler in self.original.items():
            signal.signal(signum, handler)

    def __enter__(self):
        self.original = {s: signal.signal(s, self._handle) for s in self.signals}
        return self

    def __exit__(self, *exc):
        self._restore()
        return False
