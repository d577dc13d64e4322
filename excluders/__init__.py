"""Excluders by name: which gallery entries a query ignores (see excluders/base.py).

Add an excluder by writing a module with an `Excluder` subclass and naming it here.
"""
from tripletreid.errors import InputError
from excluders.camera import CameraExcluder
from excluders.diagonal import DiagonalExcluder
from excluders.duke import DukeExcluder
from excluders.market1501 import Market1501Excluder
from excluders.mars import MarsExcluder

EXCLUDERS = {
    'market1501': Market1501Excluder,
    'duke': DukeExcluder,
    'diagonal': DiagonalExcluder,
    'camera': CameraExcluder,
    'mars': MarsExcluder,
}


def create(name, gallery, camera_pattern=None):
    """The excluder `name` for the gallery Dataset; `camera_pattern` only for `camera`."""
    if camera_pattern is None:
        return EXCLUDERS[name](gallery)
    if name != 'camera':
        raise InputError(f'--camera_pattern applies to --excluder camera only, not {name}')
    return CameraExcluder(gallery, camera_pattern)
