"""For custom datasets: ignore the query identity's gallery images from the query's camera.

The camera of each image is the third CSV column (`identity,path,camera`), or, with
`--camera_pattern`, the named group `camera` of a regular expression searched in the path as
written in the CSV, e.g. `_c(?P<camera>\\d+)_` or `^cam(?P<camera>\\d+)/`. Identities are the
CSV's first column. Nothing is junk.
"""

import numpy as np

from tripletreid.cli import named_pattern
from tripletreid.errors import InputError
from excluders.base import SameCameraExcluder, encode, parse_file_names


def compile_camera_pattern(pattern):
    """The compiled `--camera_pattern`, which must have a named group `camera`."""
    return named_pattern('--camera_pattern', pattern, 'camera')


class CameraExcluder(SameCameraExcluder):
    """Same identity (CSV column 1) and same camera (CSV column 3 or `camera_pattern`)."""

    def __init__(self, gallery, camera_pattern=None):
        self.pattern = None if camera_pattern is None else compile_camera_pattern(camera_pattern)
        self.pid_vocabulary = np.unique(gallery.pids)
        self.camera_vocabulary = np.unique(self.cameras(gallery))
        super().__init__(gallery)

    def keys(self, dataset):
        return np.stack([encode(dataset.pids, self.pid_vocabulary),
                         encode(self.cameras(dataset), self.camera_vocabulary)], axis=1)

    def cameras(self, dataset):
        """Each image's camera as the CSV or --camera_pattern gives it (keys hold codes)."""
        if self.pattern is not None:
            hint = f'--camera_pattern {self.pattern.pattern!r} finds no camera in it'
            return parse_file_names(dataset, self.pattern, hint, basename=False)['camera']
        if dataset.cams is None:
            raise InputError(f'{dataset.csv_path}: the camera excluder needs a third CSV column '
                             '(identity,path,camera) or --camera_pattern')
        return dataset.cams
