"""The images a command is given: a dataset CSV, a folder, or image files, as one Dataset.

A CSV gives identities (and cameras in a third column); a folder (searched recursively) or
files give paths only. Cameras can also come from a regular expression with a named group
`camera` searched in each path (`--camera_pattern`).
"""
import os

import numpy as np

from excluders.base import parse_file_names
from excluders.camera import compile_camera_pattern
from tripletreid.csv_dataset import Dataset, read_csv
from tripletreid.errors import InputError

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.gif')


def read_images(sources, image_root=None, camera_pattern=None):
    """(Dataset, root): the images of `sources` (one CSV, one folder, or image files), their
    `fids` relative to `root` (the CSV's `image_root`, default its folder; the folder; or '' for
    files). `pids` is None without a CSV; `cams` from the CSV's third column or
    `camera_pattern`."""
    sources = list(sources)
    if len(sources) == 1 and sources[0].lower().endswith('.csv'):
        dataset = read_csv(sources[0])
        root = image_root if image_root is not None else os.path.dirname(sources[0])
    elif image_root is not None:
        raise InputError('--image_root is for a CSV of images (its paths are relative to it)')
    elif len(sources) == 1 and os.path.isdir(sources[0]):
        root = sources[0]
        fids = sorted(os.path.relpath(os.path.join(folder, name), root)
                      for folder, _, names in os.walk(root) for name in names
                      if name.lower().endswith(IMAGE_SUFFIXES))
        if not fids:
            raise InputError(f'{root}: no {", ".join(IMAGE_SUFFIXES)} images in this folder')
        dataset = Dataset(root, None, np.array(fids), lines=np.arange(1, len(fids) + 1))
    else:
        for source in sources:
            if os.path.isdir(source):
                raise InputError(f'{source}: give one folder alone, or image files')
        root = ''
        dataset = Dataset('the command line', None, np.array(sources),
                          lines=np.arange(1, len(sources) + 1))
    if camera_pattern is not None:
        pattern = compile_camera_pattern(camera_pattern)
        hint = f'--camera_pattern {camera_pattern!r} finds no camera in it'
        dataset.cams = parse_file_names(dataset, pattern, hint, basename=False)['camera']
    return dataset, root


def full_paths(dataset, root):
    """The path of each image, `root` joined to its `fid`."""
    return np.array([os.path.join(root, fid) for fid in dataset.fids]) if root else dataset.fids
