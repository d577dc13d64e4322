"""Market-1501: names like `bounding_box_test/0002_c1s1_000451_03.jpg` (identity 0002,
camera 1). Same identity and camera is ignored, as are junk images (identity -1); the
distractors (identity 0000) stay as ordinary non-matching gallery images."""
import re

import numpy as np

from excluders.base import SameCameraExcluder, parse_file_names

_JUNK = -1


class Market1501Excluder(SameCameraExcluder):
    """Identity and camera come from the file name, as in the official excluder."""
    PATTERN = re.compile(r'^(?P<pid>-1|\d+)_c(?P<camera>\d+)s\d+_')
    HINT = 'expected Market-1501 names like 0002_c1s1_000451_03.jpg'

    def keys(self, dataset):
        parsed = parse_file_names(dataset, self.PATTERN, self.HINT)
        return np.stack([parsed['pid'].astype(np.int64), parsed['camera'].astype(np.int64)],
                        axis=1)

    def junk(self, keys):
        return keys[:, 0] == _JUNK
