"""CUHK03 (Li et al., CVPR 2014): the new protocol CUHK03-NP (Zhong et al., CVPR 2017), or the
classic 20 random splits from the release's `cuhk-03.mat`.

CUHK03-NP: the `cuhk03-np/` folder holds `labeled/` and `detected/` (the hand-drawn and the
detector's boxes), each in the Market-1501 layout (`bounding_box_train/`, `query/`,
`bounding_box_test/`) with names `<pid>_c<camera>_<n>.png` (`0001_c1_1.png`; the camera is the
view, 1 or 2, of the person's camera pair). 767 training and 700 test identities.

Classic: `cuhk03_release/cuhk-03.mat` (MATLAB v7.3, which is HDF5) holds the images themselves:
`detected` and `labeled` are 5 cells, one per camera pair, of persons x 10 images (slots 1-5
from the pair's first view, 6-10 from its second; empty where missing), and `testsets` 20 cells
of 100 (pair, person) rows, the test identities of each split; the others train. The images are
written as `<pair>_<person>_<view>_<slot>.png`.
"""
import os
import re

import h5py
import numpy as np
import PIL.Image

from data.builders import Row, build_splits, finish, output_paths, required_file
from tripletreid.errors import InputError
from tripletreid.files import atomic_path, refuse_overwrite

BOXES = ('detected', 'labeled')
NP_NAME = re.compile(r'^(?P<identity>\d+)_c(?P<camera>\d+)_\d+\.png$')
NP_SPLITS = (('train', 'bounding_box_train'), ('query', 'query'), ('test', 'bounding_box_test'))
MAT_NAMES = ('cuhk-03.mat', os.path.join('cuhk03_release', 'cuhk-03.mat'))
SLOTS = 10  # images per person and pair: slots 1-5 from view 1, 6-10 from view 2


def build_cuhk03np(dataset_root, output_dir, boxes='detected', **options):
    """`cuhk03np_<boxes>_{train,query,test}.csv` (`identity,path,camera`, paths
    `<boxes>/<split folder>/<name>.png` relative to the `cuhk03-np` folder)."""
    splits = [(split, f'{boxes}/{folder}') for split, folder in NP_SPLITS]
    return build_splits(dataset_root, output_dir, f'cuhk03np_{boxes}', NP_NAME, splits,
                        extension='.png', with_camera=True, **options)


def find_mat(dataset_root):
    """The path of `cuhk-03.mat` in `dataset_root` or its `cuhk03_release/`."""
    for name in MAT_NAMES:
        if os.path.isfile(os.path.join(dataset_root, name)):
            return os.path.join(dataset_root, name)
    return required_file(os.path.join(dataset_root, MAT_NAMES[-1]),
                         'the CUHK03 release, needed by --classic_split')


def _references(mat, path, key):
    """The object references of the cell array `key`, flattened."""
    cell = mat.get(key)
    if not isinstance(cell, h5py.Dataset) or cell.dtype != h5py.ref_dtype:
        raise InputError(f'{path}: no cell array `{key}` (found: {", ".join(mat)})')
    return cell[()].ravel()


def open_mat(path):
    """`cuhk-03.mat` opened with h5py."""
    try:
        return h5py.File(path, 'r')
    except OSError:
        raise InputError(f'{path}: not a MATLAB v7.3 (HDF5) file, which the CUHK03 release '
                         'is') from None


def read_classic(mat, path, boxes):
    """(images, test sets) of the opened `cuhk-03.mat`: images {(pair, person, slot):
    reference}, all 1-based, empty cells left out; test sets [set of (pair, person)], one per
    split."""
    images = {}
    for pair, reference in enumerate(_references(mat, path, boxes), start=1):
        cells = mat[reference]
        if cells.ndim != 2 or cells.shape[0] != SLOTS or cells.dtype != h5py.ref_dtype:
            raise InputError(f'{path}: `{boxes}`{{{pair}}} is not a cell array of persons x '
                             f'{SLOTS} images (found shape {cells.shape[::-1]})')
        for (slot, person), image in np.ndenumerate(cells[()]):
            if mat[image].ndim == 3:  # MATLAB's empty cells are stored as 2 zeros
                images[pair, person + 1, slot + 1] = image
    persons = {(pair, person) for pair, person, _ in images}
    test_sets = []
    for split, reference in enumerate(_references(mat, path, 'testsets'), start=1):
        rows = np.asarray(mat[reference][()]).T
        if rows.ndim != 2 or rows.shape[1] != 2:
            raise InputError(f'{path}: `testsets`{{{split}}} must be rows of (camera pair, '
                             f'person), found shape {rows.shape}')
        test = {(int(pair), int(person)) for pair, person in rows}
        unknown = sorted(test - persons)
        if unknown:
            raise InputError(f'{path}: `testsets`{{{split}}} names camera pair {unknown[0][0]}, '
                             f'person {unknown[0][1]}, who has no {boxes} image')
        test_sets.append(test)
    return images, test_sets


def _image_name(pair, person, slot):
    view = 1 if slot <= SLOTS // 2 else 2
    return f'{pair}_{person:03d}_{view}_{slot:02d}.png', f'{pair}_{view}'


def extract_images(mat, path, images, image_dir, overwrite):
    """Write every image of `images` as a PNG in `image_dir` (each atomically, so that an
    interrupted run leaves whole files); existing ones are kept unless `overwrite`. Returns the
    number written."""
    os.makedirs(image_dir, exist_ok=True)
    written = 0
    for (pair, person, slot), reference in sorted(images.items()):
        target = os.path.join(image_dir, _image_name(pair, person, slot)[0])
        if os.path.exists(target) and not overwrite:
            continue
        pixels = np.asarray(mat[reference][()])
        if pixels.dtype != np.uint8 or pixels.shape[0] != 3:
            raise InputError(f'{path}: image {slot} of camera pair {pair}, person {person} is '
                             f'not 8-bit RGB (shape {pixels.shape[::-1]}, {pixels.dtype})')
        with atomic_path(target) as tmp:
            PIL.Image.fromarray(np.ascontiguousarray(pixels.T)).save(tmp, format='PNG')
        written += 1
    return written


def build_cuhk03_classic(dataset_root, output_dir, split, boxes='detected', image_dir=None,
                         overwrite=False, check=False, threads=8):
    """Split `split` (1..20) of the classic protocol: extract the images of `cuhk-03.mat` into
    `image_dir` (default `<output_dir>/cuhk03_<boxes>_images`) and write
    `cuhk03_<boxes>_split<split>_{train,test}.csv` (`identity,path,camera`, paths relative to
    `image_dir`; identity `<pair>_<person>`, camera `<pair>_<view>`). The test CSV is query and
    gallery at once: evaluate it against itself with `--excluder camera`.
    """
    path = find_mat(dataset_root)
    image_dir = image_dir or os.path.join(output_dir, f'cuhk03_{boxes}_images')
    paths = output_paths(output_dir, f'cuhk03_{boxes}_split{split:02d}', ('train', 'test'),
                         overwrite)
    if os.path.exists(image_dir) and not os.path.isdir(image_dir):
        refuse_overwrite(image_dir)
    with open_mat(path) as mat:
        images, test_sets = read_classic(mat, path, boxes)
        if not 1 <= split <= len(test_sets):
            raise InputError(f'--classic_split {split}: {path} has splits 1..{len(test_sets)}')
        written = extract_images(mat, path, images, image_dir, overwrite)
    print(f'{image_dir}: {len(images)} images, {written} written now')
    rows = {'train': [], 'test': []}
    for pair, person, slot in sorted(images):
        name, camera = _image_name(pair, person, slot)
        split_name = 'test' if (pair, person) in test_sets[split - 1] else 'train'
        rows[split_name].append(Row(f'{pair}_{person:03d}', name, camera))
    outputs = [(paths[name], image_dir, rows[name], True) for name in ('train', 'test')]
    return finish(outputs, check, threads)
