"""DukeMTMC-reID: names like `bounding_box_test/0005_c2_f0046985.jpg` (identity 0005,
camera 2). Same identity and camera is ignored; so is identity -1, as in the official
excluder, though DukeMTMC-reID itself has no such junk."""
import re

from excluders.market1501 import Market1501Excluder


class DukeExcluder(Market1501Excluder):
    """Market-1501's rules with DukeMTMC-reID's file names."""
    PATTERN = re.compile(r'^(?P<pid>-1|\d+)_c(?P<camera>\d+)_')
    HINT = 'expected DukeMTMC-reID names like 0005_c2_f0046985.jpg'
