"""The error type of bad user input, and the one of a file that cannot be written."""


class InputError(Exception):
    """Bad user input. The scripts report it as one line (no traceback) and exit with 2."""


def cannot_write(path, error):
    """The one-line InputError of an OSError met writing `path`."""
    return InputError(f'{path}: cannot write ({error.strerror or error})')
