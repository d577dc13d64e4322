"""data/demo.py: a deterministic, Market-1501-like synthetic dataset with ready CSVs."""
import collections
import os
import re
import subprocess
import sys

import cv2
import pytest

from tripletreid.errors import InputError
from tripletreid.csv_dataset import read_csv
from data.demo_set import make_demo_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKET_NAME = re.compile(r'^(?P<pid>-1|\d{4})_c(?P<cam>\d)s\d_\d{6}_(?P<box>\d{2})\.jpg$')
FOLDERS = ('bounding_box_train', 'query', 'bounding_box_test')
TINY = dict(num_train_ids=4, num_test_ids=3, images_per_camera=2, num_cameras=3, height=32,
            width=16, num_distractors=2, num_junk=2)


def make(root, seed=0):
    make_demo_dataset(str(root), seed=seed, **TINY)
    return str(root)


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    return make(tmp_path_factory.mktemp('demo') / 'market')


def parse(root):
    """{folder: [(pid, camera, box, name)]} from the file names alone."""
    parsed = {}
    for folder in FOLDERS:
        names = sorted(os.listdir(os.path.join(root, folder)))
        matches = [(MARKET_NAME.match(name), name) for name in names]
        assert all(match for match, _ in matches), names
        parsed[folder] = [(m['pid'], int(m['cam']), m['box'], name) for m, name in matches]
    return parsed


def files_and_bytes(root):
    result = {}
    for directory, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(directory, name), 'rb') as f:
                result[os.path.relpath(os.path.join(directory, name), root)] = f.read()
    return result


def test_deterministic_for_a_seed(demo, tmp_path):
    assert files_and_bytes(make(tmp_path / 'again')) == files_and_bytes(demo)
    assert files_and_bytes(make(tmp_path / 'other', seed=1)) != files_and_bytes(demo)


def test_identities_and_cameras(demo):
    parsed = parse(demo)
    train = {pid for pid, *_ in parsed['bounding_box_train']}
    query = {pid for pid, *_ in parsed['query']}
    gallery = {pid for pid, *_ in parsed['bounding_box_test']}
    assert len(train) == TINY['num_train_ids'] and len(query) == TINY['num_test_ids']
    assert not train & (query | gallery)
    assert query <= gallery and gallery - query == {'0000', '-1'}
    cameras = collections.defaultdict(set)
    for folder in FOLDERS:
        for pid, cam, _, _ in parsed[folder]:
            assert 1 <= cam <= TINY['num_cameras']
            cameras[folder, pid].add(cam)
    for pid in train:
        assert len(cameras['bounding_box_train', pid]) >= 2
    for pid in query:  # one query per camera, and matches in every camera of the identity
        assert len(cameras['query', pid]) >= 2
        assert cameras['query', pid] == cameras['bounding_box_test', pid]
        assert len([q for q in parsed['query'] if q[0] == pid]) == len(cameras['query', pid])
    assert {box for *_, box, _ in parsed['query']} == {'00'}


def test_csvs_list_every_image(demo):
    for split, folder in zip(('train', 'query', 'test'), FOLDERS):
        dataset = read_csv(os.path.join(demo, f'market1501_{split}.csv'))
        names = sorted(os.listdir(os.path.join(demo, folder)))
        assert list(dataset.fids) == [f'{folder}/{name}' for name in names]
        assert list(dataset.pids) == [name.split('_')[0] for name in names]


def test_images_decode_to_the_requested_size(demo):
    for folder in FOLDERS:
        for name in os.listdir(os.path.join(demo, folder)):
            image = cv2.imread(os.path.join(demo, folder, name))
            assert image is not None and image.shape == (TINY['height'], TINY['width'], 3)


def test_refuses_a_folder_that_is_not_empty(demo):
    with pytest.raises(InputError, match='not empty'):
        make(demo)


def test_cli(tmp_path):
    command = [sys.executable, '-m', 'data.demo', str(tmp_path / 'd'), '--train_ids', '2',
               '--test_ids', '2', '--cameras', '2', '--images_per_camera', '1', '--height', '32',
               '--width', '16', '--distractors', '0', '--junk', '0']
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert os.path.exists(tmp_path / 'd' / 'market1501_test.csv')
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 2 and 'not empty' in again.stderr
    assert 'Traceback' not in again.stderr
