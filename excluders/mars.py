"""MARS: frame names like `bbox_test/0001/0001C1T0001F001.jpg` (identity 0001, camera 1,
tracklet 0001, frame 001). As the official MARS evaluation: the query identity's gallery entries
from the query camera are ignored, and so is the junk (identity `00-1`); the distractors
(identity `0000`) stay as ordinary non-matching gallery entries. With `evaluate.py --tracklets`
each tracklet is named by its first frame, so the rule applies to tracklets alike."""
import re

import numpy as np

from excluders.base import parse_file_names
from excluders.market1501 import Market1501Excluder

_JUNK_NAME = '00-1'


class MarsExcluder(Market1501Excluder):
    """Market-1501's rules with MARS's frame names (junk written `00-1`)."""
    PATTERN = re.compile(r'^(?P<pid>\d{4}|00-1)C(?P<camera>\d+)T\d+F\d+')
    HINT = 'expected MARS frame names like 0001C1T0001F001.jpg'

    def keys(self, dataset):
        parsed = parse_file_names(dataset, self.PATTERN, self.HINT)
        pids = np.where(parsed['pid'] == _JUNK_NAME, '-1', parsed['pid']).astype(np.int64)
        return np.stack([pids, parsed['camera'].astype(np.int64)], axis=1)
