"""data/build_csv.py on the field's datasets: MSMT17 (V1, V2), CUHK03-NP and the classic
cuhk-03.mat, MARS, VeRi-776, VehicleID, and several datasets merged into one training CSV.

Each dataset is a folder of empty files (or tiny .mat files) named exactly as the real ones;
the expected CSVs are written out by hand.
"""
import os
import subprocess
import sys

import h5py
import numpy as np
import PIL.Image
import pytest
import scipy.io

from data import build_csv
from tripletreid.errors import InputError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_files(root, paths):
    """Empty files at `paths` (relative to `root`, `/` separators)."""
    for path in paths:
        os.makedirs(os.path.dirname(os.path.join(root, path)), exist_ok=True)
        open(os.path.join(root, path), 'w').close()
    return str(root)


def write(path, text):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)


def read(path):
    with open(path, newline='') as f:
        return f.read()


def build(*argv):
    """Run `python -m data.build_csv` in-process (its summary lines go to stdout)."""
    build_csv.main([str(arg) for arg in argv])


def refused(*argv):
    """The one-line message with which the build is refused."""
    with pytest.raises(InputError) as error:
        build(*argv)
    message = str(error.value)
    assert '\n' not in message
    return message


def test_help_lists_every_dataset():
    result = subprocess.run([sys.executable, '-m', 'data.build_csv', '--help'], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for command in ('market1501', 'duke', 'msmt17', 'cuhk03', 'mars', 'veri', 'vehicleid',
                    'merge', 'folders', 'pattern'):
        assert f'    {command} ' in result.stdout, command
    result = subprocess.run([sys.executable, '-m', 'data.build_csv', 'mars', 'no_such_folder',
                             'out'], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr == (
        'build_csv.py: error: no_such_folder/info/train_name.txt: no such file\n')


# MSMT17: list files `<pid folder>/<name> <pid>`, the camera is the name's third field.
MSMT_LISTS = {
    'list_train.txt': '0000/0000_000_01_0303morning_0015_0.jpg 0\n'
                      '0000/0000_001_05_0303noon_0100_1.jpg 0\n'
                      '0001/0001_000_02_0113morning_0002_0.jpg 1\n',
    'list_val.txt': '0001/0001_001_02_0113morning_0009_3.jpg 1\n',
    'list_query.txt': '0000/0000_000_11_0302afternoon_0501_0.jpg 0\n',
    'list_gallery.txt': '0000/0000_001_03_0302noon_0022_1.jpg 0\n'
                        '\n'
                        '0002/0002_000_11_0114morning_0042_0.jpg 2\n',
}


def msmt17(root, train='train', test='test', lists=None):
    lists = {**MSMT_LISTS, **(lists or {})}
    for name, text in lists.items():
        write(root / name, text)
        folder = test if name in ('list_query.txt', 'list_gallery.txt') else train
        make_files(root, [f'{folder}/{line.split()[0]}' for line in text.splitlines()
                          if line.strip() and not line.startswith('#')])
    return root


@pytest.mark.parametrize('train,test', [('train', 'test'), ('mask_train_v2', 'mask_test_v2')])
def test_msmt17(tmp_path, capsys, train, test):
    root = msmt17(tmp_path / 'MSMT17', train, test)
    build('msmt17', root, tmp_path / 'csv')
    assert read(tmp_path / 'csv' / 'msmt17_train.csv') == (
        f'0,{train}/0000/0000_000_01_0303morning_0015_0.jpg,01\n'
        f'0,{train}/0000/0000_001_05_0303noon_0100_1.jpg,05\n'
        f'1,{train}/0001/0001_000_02_0113morning_0002_0.jpg,02\n')
    assert read(tmp_path / 'csv' / 'msmt17_query.csv') == (
        f'0,{test}/0000/0000_000_11_0302afternoon_0501_0.jpg,11\n')
    assert read(tmp_path / 'csv' / 'msmt17_test.csv') == (
        f'0,{test}/0000/0000_001_03_0302noon_0022_1.jpg,03\n'
        f'2,{test}/0002/0002_000_11_0114morning_0042_0.jpg,11\n')
    out = capsys.readouterr().out
    assert 'msmt17_train.csv: 3 rows, 2 identities, 3 cameras' in out
    assert 'msmt17_query.csv: 1 row, 1 identity, 1 camera' in out
    assert 'msmt17_test.csv: 2 rows, 2 identities, 2 cameras' in out


def test_msmt17_with_val(tmp_path, capsys):
    root = msmt17(tmp_path / 'MSMT17_V1')
    build('msmt17', root, tmp_path, '--with_val')
    assert read(tmp_path / 'msmt17_train.csv').endswith(
        '1,train/0001/0001_000_02_0113morning_0002_0.jpg,02\n'
        '1,train/0001/0001_001_02_0113morning_0009_3.jpg,02\n')
    assert 'msmt17_train.csv: 4 rows, 2 identities, 3 cameras' in capsys.readouterr().out


@pytest.mark.parametrize('lists,message', [
    ({'list_val.txt': '0001/0001_001_02_0113morning_0009_3.jpg\n'},
     "list_val.txt:1: expected `<image> <integer label>` like "
     "`0000/0000_000_01_0303morning_0015_0.jpg 0`, found "
     "'0001/0001_001_02_0113morning_0009_3.jpg'"),
    ({'list_query.txt': '0000/0000_000_11_0302afternoon_0501_0.jpg zero\n'},
     'list_query.txt:1: expected `<image> <integer label>`'),
    ({'list_query.txt': '0000/0000_000_11_0302afternoon_0501_0.jpg 0\n0000/IMG_0001.jpg 0\n'},
     "list_query.txt:2: '0000/IMG_0001.jpg' is not an MSMT17 image like "
     '0000/0000_000_01_0303morning_0015_0.jpg; pass --skip_unmatched to leave them out'),
])
def test_msmt17_refuses_bad_lists(tmp_path, lists, message):
    root = msmt17(tmp_path / 'MSMT17_V1', lists=lists)
    assert message in refused('msmt17', root, tmp_path, '--with_val')
    assert not os.path.exists(tmp_path / 'msmt17_train.csv')


def test_msmt17_skip_unmatched(tmp_path, capsys):
    lists = {'list_query.txt': '0000/0000_000_11_0302afternoon_0501_0.jpg 0\n0000/IMG_1.jpg 0\n'}
    build('msmt17', msmt17(tmp_path / 'MSMT17_V1', lists=lists), tmp_path, '--skip_unmatched')
    assert read(tmp_path / 'msmt17_query.csv') == (
        '0,test/0000/0000_000_11_0302afternoon_0501_0.jpg,11\n')
    assert 'left out 1 of 2 images that are not an MSMT17 image' in capsys.readouterr().err


def test_msmt17_refuses_missing_image_and_layout(tmp_path):
    root = msmt17(tmp_path / 'MSMT17_V1')
    os.remove(root / 'test' / '0002' / '0002_000_11_0114morning_0042_0.jpg')
    assert refused('msmt17', root, tmp_path) == (
        f'{root}/list_gallery.txt:3: {root}/test/0002/0002_000_11_0114morning_0042_0.jpg is '
        'missing')
    assert 'MSMT17_V1' in refused('msmt17', tmp_path, tmp_path)  # the parent folder given
    os.remove(root / 'list_query.txt')
    assert refused('msmt17', root, tmp_path) == f'{root}/list_query.txt: no such file'


# CUHK03-NP: Market-like folders in labeled/ and detected/, names <pid>_c<view>_<n>.png.
CUHK03NP_FILES = ['detected/bounding_box_train/0003_c1_2.png',
                  'detected/bounding_box_train/0001_c2_6.png',
                  'detected/bounding_box_train/0001_c1_1.png',
                  'detected/query/0005_c1_1.png', 'detected/query/0005_c2_1.png',
                  'detected/bounding_box_test/0007_c2_1.png',
                  'detected/bounding_box_test/0005_c1_2.png',
                  'detected/bounding_box_test/0005_c2_3.png',
                  'labeled/bounding_box_train/0002_c1_1.png', 'labeled/query/0004_c1_1.png',
                  'labeled/bounding_box_test/0004_c2_1.png']


def test_cuhk03np(tmp_path, capsys):
    root = make_files(tmp_path / 'cuhk03-np', CUHK03NP_FILES)
    build('cuhk03', root, tmp_path / 'csv')
    assert read(tmp_path / 'csv' / 'cuhk03np_detected_train.csv') == (
        '0001,detected/bounding_box_train/0001_c1_1.png,1\n'
        '0001,detected/bounding_box_train/0001_c2_6.png,2\n'
        '0003,detected/bounding_box_train/0003_c1_2.png,1\n')
    assert read(tmp_path / 'csv' / 'cuhk03np_detected_query.csv') == (
        '0005,detected/query/0005_c1_1.png,1\n'
        '0005,detected/query/0005_c2_1.png,2\n')
    assert read(tmp_path / 'csv' / 'cuhk03np_detected_test.csv') == (
        '0005,detected/bounding_box_test/0005_c1_2.png,1\n'
        '0005,detected/bounding_box_test/0005_c2_3.png,2\n'
        '0007,detected/bounding_box_test/0007_c2_1.png,2\n')
    assert 'cuhk03np_detected_test.csv: 3 rows, 2 identities, 2 cameras' in capsys.readouterr().out
    build('cuhk03', root, tmp_path / 'csv', '--boxes', 'labeled')
    assert read(tmp_path / 'csv' / 'cuhk03np_labeled_query.csv') == (
        '0004,labeled/query/0004_c1_1.png,1\n')


def test_cuhk03np_refuses_unknown_names(tmp_path):
    root = make_files(tmp_path / 'cuhk03-np', CUHK03NP_FILES + ['detected/query/0005_1.png'])
    message = refused('cuhk03', root, tmp_path)
    assert 'detected/query: 1 of 3 image(s) do not match' in message and '0005_1.png' in message


# cuhk-03.mat (MATLAB v7.3 = HDF5): `detected` holds one cell per camera pair, persons x 10
# image slots (stored transposed, 10 x persons, as MATLAB does); `testsets` (pair, person) rows.
def pixels(seed, height=4, width=2):
    """An RGB image as MATLAB holds it (height x width x 3) with distinct values."""
    return (np.arange(height * width * 3).reshape(height, width, 3) + seed).astype(np.uint8)


CLASSIC_IMAGES = {(1, 1, 1): 10, (1, 1, 6): 20, (1, 2, 2): 30, (1, 2, 7): 40,
                  (2, 1, 1): 50, (2, 1, 2): 60, (2, 1, 6): 70}  # (pair, person, slot): seed


def write_cuhk03_mat(path, test_sets=([[1, 2]], [[2, 1]])):
    with h5py.File(path, 'w') as mat:
        refs = mat.create_group('#refs#')

        def ref(name, data):
            return refs.create_dataset(name, data=data).ref

        empty = ref('empty', np.zeros(2, np.uint64))  # MATLAB's empty cell
        pairs = []
        for pair, persons in ((1, 2), (2, 1)):
            cells = np.full((10, persons), empty, dtype=h5py.ref_dtype)
            for person in range(1, persons + 1):
                for slot in range(1, 11):
                    seed = CLASSIC_IMAGES.get((pair, person, slot))
                    if seed is not None:
                        cells[slot - 1, person - 1] = ref(f'i{pair}{person}{slot}',
                                                          pixels(seed).T)
            pairs.append(ref(f'pair{pair}', cells))
        mat.create_dataset('detected', data=np.array([pairs], dtype=h5py.ref_dtype))
        sets = [ref(f'test{i}', np.array(rows, np.float64).T) for i, rows in enumerate(test_sets)]
        mat.create_dataset('testsets', data=np.array([sets], dtype=h5py.ref_dtype))


def test_cuhk03_classic_split(tmp_path, capsys):
    os.makedirs(tmp_path / 'cuhk03' / 'cuhk03_release')
    write_cuhk03_mat(tmp_path / 'cuhk03' / 'cuhk03_release' / 'cuhk-03.mat')
    build('cuhk03', tmp_path / 'cuhk03', tmp_path / 'csv', '--classic_split', 1)
    images = tmp_path / 'csv' / 'cuhk03_detected_images'
    assert sorted(os.listdir(images)) == ['1_001_1_01.png', '1_001_2_06.png', '1_002_1_02.png',
                                          '1_002_2_07.png', '2_001_1_01.png', '2_001_1_02.png',
                                          '2_001_2_06.png']
    # The pixels come out as MATLAB shows them: 4 high, 2 wide, RGB.
    assert np.array_equal(np.asarray(PIL.Image.open(images / '2_001_2_06.png')), pixels(70))
    assert read(tmp_path / 'csv' / 'cuhk03_detected_split01_test.csv') == (
        '1_002,1_002_1_02.png,1_1\n'
        '1_002,1_002_2_07.png,1_2\n')
    assert read(tmp_path / 'csv' / 'cuhk03_detected_split01_train.csv') == (
        '1_001,1_001_1_01.png,1_1\n'
        '1_001,1_001_2_06.png,1_2\n'
        '2_001,2_001_1_01.png,2_1\n'
        '2_001,2_001_1_02.png,2_1\n'
        '2_001,2_001_2_06.png,2_2\n')
    out = capsys.readouterr().out
    assert f'{images}: 7 images, 7 written now' in out
    assert 'split01_train.csv: 5 rows, 2 identities, 4 cameras' in out
    build('cuhk03', tmp_path / 'cuhk03', tmp_path / 'csv', '--classic_split', 2)
    assert read(tmp_path / 'csv' / 'cuhk03_detected_split02_test.csv').startswith('2_001,')
    assert f'{images}: 7 images, 0 written now' in capsys.readouterr().out  # kept


def test_cuhk03_classic_refusals(tmp_path):
    root = tmp_path / 'cuhk03'
    root.mkdir()
    assert refused('cuhk03', root, tmp_path, '--classic_split', 1).startswith(
        f'{root}/cuhk03_release/cuhk-03.mat: no such file')
    write(root / 'cuhk-03.mat', 'not HDF5')
    assert 'not a MATLAB v7.3 (HDF5) file' in refused('cuhk03', root, tmp_path,
                                                      '--classic_split', 1)
    write_cuhk03_mat(root / 'cuhk-03.mat')
    assert refused('cuhk03', root, tmp_path, '--classic_split', 3) == (
        f'--classic_split 3: {root}/cuhk-03.mat has splits 1..2')
    assert 'no cell array `labeled`' in refused('cuhk03', root, tmp_path, '--classic_split', 1,
                                                '--boxes', 'labeled')
    write_cuhk03_mat(root / 'cuhk-03.mat', test_sets=([[1, 3]],))
    assert refused('cuhk03', root, tmp_path, '--classic_split', 1) == (
        f'{root}/cuhk-03.mat: `testsets`{{1}} names camera pair 1, person 3, who has no '
        'detected image')
    assert os.listdir(root) == ['cuhk-03.mat']  # nothing written
    assert sorted(os.listdir(tmp_path)) == ['cuhk03']


# MARS: frames named <pid>C<camera>T<tracklet>F<frame>.jpg in bbox_*/<pid>/, tracklets in the
# info/*.mat files (first frame, last frame, pid, camera; rows of the name lists, 1-based).
MARS_TRAIN = ['0001C1T0001F001.jpg', '0001C1T0001F002.jpg', '0001C2T0002F001.jpg',
              '0003C1T0001F001.jpg']
MARS_TEST = ['0002C1T0001F001.jpg', '0002C1T0001F002.jpg', '0002C3T0002F001.jpg',
             '0000C2T0003F001.jpg', '00-1C3T0004F001.jpg', '0002C1T0005F001.jpg']
MARS_TRAIN_TRACKS = [[1, 2, 1, 1], [3, 3, 1, 2], [4, 4, 3, 1]]
MARS_TEST_TRACKS = [[1, 2, 2, 1], [3, 3, 2, 3], [4, 4, 0, 2], [5, 5, -1, 3], [6, 6, 2, 1]]
MARS_TEST_CSV = ('0002,bbox_test/0002/0002C1T0001F001.jpg,1,00001\n'
                 '0002,bbox_test/0002/0002C1T0001F002.jpg,1,00001\n'
                 '0002,bbox_test/0002/0002C3T0002F001.jpg,3,00002\n'
                 '0000,bbox_test/0000/0000C2T0003F001.jpg,2,00003\n'
                 '-1,bbox_test/00-1/00-1C3T0004F001.jpg,3,00004\n'
                 '0002,bbox_test/0002/0002C1T0005F001.jpg,1,00005\n')


def mars(root, test_names=MARS_TEST, test_tracks=MARS_TEST_TRACKS, hdf5=False):
    """A MARS folder; with `hdf5` the test tracks are a MATLAB v7.3 file."""
    make_files(root, [f'bbox_train/{n[:4]}/{n}' for n in MARS_TRAIN]
               + [f'bbox_test/{n[:4]}/{n}' for n in MARS_TEST])
    write(root / 'info' / 'train_name.txt', '\n'.join(MARS_TRAIN) + '\n')
    write(root / 'info' / 'test_name.txt', '\n'.join(test_names) + '\n')
    scipy.io.savemat(root / 'info' / 'tracks_train_info.mat',
                     {'track_train_info': np.array(MARS_TRAIN_TRACKS, np.float64)})
    if hdf5:
        with h5py.File(root / 'info' / 'tracks_test_info.mat', 'w') as f:
            f['track_test_info'] = np.array(test_tracks, np.float64).T
    else:
        scipy.io.savemat(root / 'info' / 'tracks_test_info.mat',
                         {'track_test_info': np.array(test_tracks, np.float64)})
    scipy.io.savemat(root / 'info' / 'query_IDX.mat', {'query_IDX': np.array([[1, 2]])})
    return root


@pytest.mark.parametrize('hdf5', [False, True])
def test_mars(tmp_path, capsys, hdf5):
    build('mars', mars(tmp_path / 'MARS', hdf5=hdf5), tmp_path / 'csv')
    assert read(tmp_path / 'csv' / 'mars_train.csv') == (
        '0001,bbox_train/0001/0001C1T0001F001.jpg,1,00001\n'
        '0001,bbox_train/0001/0001C1T0001F002.jpg,1,00001\n'
        '0001,bbox_train/0001/0001C2T0002F001.jpg,2,00002\n'
        '0003,bbox_train/0003/0003C1T0001F001.jpg,1,00003\n')
    assert read(tmp_path / 'csv' / 'mars_query.csv') == MARS_TEST_CSV[:MARS_TEST_CSV.index('0000,')]
    assert read(tmp_path / 'csv' / 'mars_test.csv') == MARS_TEST_CSV
    out = capsys.readouterr().out
    assert 'mars_train.csv: 4 rows, 2 identities, 2 cameras, 3 tracklets' in out
    assert 'mars_query.csv: 3 rows, 1 identity, 2 cameras, 2 tracklets' in out
    assert 'mars_test.csv: 6 rows, 3 identities, 3 cameras, 5 tracklets' in out


def test_mars_refusals(tmp_path):
    root = mars(tmp_path / 'MARS', test_tracks=[*MARS_TEST_TRACKS[:4], [5, 6, -1, 3]])
    assert refused('mars', root, tmp_path) == (
        f'{root}/info/tracks_test_info.mat: row 5 gives identity -1 and camera 3, but frame '
        f'{root}/info/test_name.txt:6 is 0002C1T0005F001.jpg')
    root = mars(tmp_path / 'MARS2', test_names=[*MARS_TEST[:2], '0002_c3_0002.jpg'])
    assert refused('mars', root, tmp_path) == (
        f"{root}/info/test_name.txt:3: '0002_c3_0002.jpg' is not a MARS frame name like "
        '0001C1T0001F001.jpg')
    root = mars(tmp_path / 'MARS3', test_tracks=[*MARS_TEST_TRACKS[:4], [5, 7, 2, 1]])
    assert refused('mars', root, tmp_path) == (
        f'{root}/info/tracks_test_info.mat: row 5: frames 5..7 are not rows of '
        f'{root}/info/test_name.txt (1..6)')
    os.remove(root / 'info' / 'query_IDX.mat')
    assert refused('mars', root, tmp_path) == (
        f'{root}/info/query_IDX.mat: no such file (expected a .mat file with `query_IDX`)')
    assert not [name for name in os.listdir(tmp_path) if name.endswith('.csv')]


# VeRi-776 and VehicleID.
def test_veri(tmp_path, capsys):
    root = make_files(tmp_path / 'VeRi', [
        'image_train/0002_c003_00020000_0.jpg', 'image_train/0001_c002_00017000_1.jpg',
        'image_train/0001_c001_00016450_0.jpg', 'image_query/0003_c002_00030000_0.jpg',
        'image_test/0003_c002_00030000_0.jpg', 'image_test/0003_c004_00031000_1.jpg',
        'image_test/0006_c004_00032000_0.jpg'])
    build('veri', root, tmp_path / 'csv')
    assert read(tmp_path / 'csv' / 'veri_train.csv') == (
        '0001,image_train/0001_c001_00016450_0.jpg,001\n'
        '0001,image_train/0001_c002_00017000_1.jpg,002\n'
        '0002,image_train/0002_c003_00020000_0.jpg,003\n')
    assert read(tmp_path / 'csv' / 'veri_query.csv') == (
        '0003,image_query/0003_c002_00030000_0.jpg,002\n')
    assert read(tmp_path / 'csv' / 'veri_test.csv') == (
        '0003,image_test/0003_c002_00030000_0.jpg,002\n'
        '0003,image_test/0003_c004_00031000_1.jpg,004\n'
        '0006,image_test/0006_c004_00032000_0.jpg,004\n')
    assert 'veri_test.csv: 3 rows, 2 identities, 2 cameras' in capsys.readouterr().out


VEHICLEID_LISTS = {'train_list.txt': '0000001 1\n0000002 1\n0000010 7\n',
                   'test_list_800.txt': '0000100 20\n0000101 20\n0000102 21\n',
                   'test_list_1600.txt': '0000100 20\n0000101 20\n0000102 21\n0000103 22\n',
                   'test_list_2400.txt': '0000104 23\n0000105 23\n'}


def vehicleid(root, lists=VEHICLEID_LISTS):
    for name, text in lists.items():
        write(root / 'train_test_split' / name, text)
    make_files(root, sorted({f'image/{line.split()[0]}.jpg' for text in lists.values()
                             for line in text.splitlines() if len(line.split()) == 2}))
    return root


def test_vehicleid(tmp_path, capsys):
    build('vehicleid', vehicleid(tmp_path / 'VehicleID'), tmp_path / 'csv')
    assert read(tmp_path / 'csv' / 'vehicleid_train.csv') == (
        '1,image/0000001.jpg\n1,image/0000002.jpg\n7,image/0000010.jpg\n')
    assert read(tmp_path / 'csv' / 'vehicleid_test800.csv') == (
        '20,image/0000100.jpg\n20,image/0000101.jpg\n21,image/0000102.jpg\n')
    assert read(tmp_path / 'csv' / 'vehicleid_test2400.csv') == (
        '23,image/0000104.jpg\n23,image/0000105.jpg\n')
    out = capsys.readouterr().out
    assert 'vehicleid_test1600.csv: 4 rows, 3 identities, no camera information' in out


def test_vehicleid_refusals(tmp_path):
    root = vehicleid(tmp_path / 'VehicleID',
                     {**VEHICLEID_LISTS, 'test_list_800.txt': '0000100 20\n0000101\n'})
    assert refused('vehicleid', root, tmp_path) == (
        f'{root}/train_test_split/test_list_800.txt:2: expected `<image> <integer label>` like '
        "`0004763 8`, found '0000101'")
    root = vehicleid(tmp_path / 'VehicleID2')
    os.remove(root / 'train_test_split' / 'test_list_2400.txt')
    assert refused('vehicleid', root, tmp_path) == (
        f'{root}/train_test_split/test_list_2400.txt: no such file')
    root = vehicleid(tmp_path / 'VehicleID3')
    os.remove(root / 'image' / '0000010.jpg')
    assert refused('vehicleid', root, tmp_path) == (
        f'{root}/train_test_split/train_list.txt:3: {root}/image/0000010.jpg is missing')
    assert not [name for name in os.listdir(tmp_path) if name.endswith('.csv')]


# Several datasets in one training CSV.
def test_merge(tmp_path, capsys):
    write(tmp_path / 'a' / 'a.csv', '0002,bounding_box_train/0002_c1s1_000451_03.jpg,1\n'
                                   '0007,bounding_box_train/0007_c3s3_077419_03.jpg,3\n')
    write(tmp_path / 'b' / 'b.csv', '0002,train/0002/0002_000_01_0303morning_0015_0.jpg\n')
    sources = ['--source', 'market', tmp_path / 'a' / 'a.csv', tmp_path / 'a',
               '--source', 'msmt', tmp_path / 'b' / 'b.csv', tmp_path / 'b']
    build('merge', tmp_path / 'all.csv', *sources, '--image_root', tmp_path)
    assert read(tmp_path / 'all.csv') == (
        'market_0002,a/bounding_box_train/0002_c1s1_000451_03.jpg\n'
        'market_0007,a/bounding_box_train/0007_c3s3_077419_03.jpg\n'
        'msmt_0002,b/train/0002/0002_000_01_0303morning_0015_0.jpg\n')
    assert 'all.csv: 3 rows, 3 identities, no camera information' in capsys.readouterr().out
    build('merge', tmp_path / 'abs.csv', *sources[:4])  # one source with cameras, absolute
    assert read(tmp_path / 'abs.csv') == (
        f'market_0002,{tmp_path}/a/bounding_box_train/0002_c1s1_000451_03.jpg,market_1\n'
        f'market_0007,{tmp_path}/a/bounding_box_train/0007_c3s3_077419_03.jpg,market_3\n')
    assert 'abs.csv: 2 rows, 2 identities, 2 cameras' in capsys.readouterr().out
    assert refused('merge', tmp_path / 'x.csv', *sources[:4], *sources[:4]) == (
        '--source market: the name is given twice')
    assert 'the name must be' in refused('merge', tmp_path / 'x.csv', '--source', 'a_b',
                                         *sources[2:4])
