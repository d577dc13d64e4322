"""data/build_csv.py: the official Market/Duke CSV layout, folders and pattern modes, refusals."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tripletreid.csv_dataset import read_csv
from tripletreid.errors import InputError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MARKET_FILES = {
    'bounding_box_train': ['0002_c2s1_000301_01.jpg', '0002_c1s1_000451_03.jpg',
                           '0007_c3s3_077419_03.jpg', 'Thumbs.db'],
    'query': ['0003_c1s6_015971_00.jpg', '0001_c1s1_001051_00.jpg'],
    'bounding_box_test': ['0001_c1s1_001051_03.jpg', '0000_c1s1_000151_01.jpg',
                          '-1_c1s1_000401_03.jpg', '-1_c6s3_094992_04.jpg.jpg',
                          '0003_c3s3_064744_02.jpg', 'Thumbs.db'],
}
MARKET_CSVS = {  # as in the official repository: identity verbatim, sorted, no camera
    'market1501_train.csv': '0002,bounding_box_train/0002_c1s1_000451_03.jpg\n'
                            '0002,bounding_box_train/0002_c2s1_000301_01.jpg\n'
                            '0007,bounding_box_train/0007_c3s3_077419_03.jpg\n',
    'market1501_query.csv': '0001,query/0001_c1s1_001051_00.jpg\n'
                            '0003,query/0003_c1s6_015971_00.jpg\n',
    'market1501_test.csv': '-1,bounding_box_test/-1_c1s1_000401_03.jpg\n'
                           '-1,bounding_box_test/-1_c6s3_094992_04.jpg.jpg\n'
                           '0000,bounding_box_test/0000_c1s1_000151_01.jpg\n'
                           '0001,bounding_box_test/0001_c1s1_001051_03.jpg\n'
                           '0003,bounding_box_test/0003_c3s3_064744_02.jpg\n',
}
DUKE_FILES = {
    'bounding_box_train': ['0005_c2_f0046985.jpg', '0001_c2_f0046182.jpg',
                           '0001_c6_f0030883.jpg'],
    'query': ['0005_c2_f0046985.jpg'],
    'bounding_box_test': ['0019_c1_f0051230.jpg', '0005_c5_f0051901.jpg'],
}
DUKE_CSVS = {
    'dukeMTMC_train.csv': '0001,bounding_box_train/0001_c2_f0046182.jpg\n'
                          '0001,bounding_box_train/0001_c6_f0030883.jpg\n'
                          '0005,bounding_box_train/0005_c2_f0046985.jpg\n',
    'dukeMTMC_query.csv': '0005,query/0005_c2_f0046985.jpg\n',
    'dukeMTMC_test.csv': '0005,bounding_box_test/0005_c5_f0051901.jpg\n'
                         '0019,bounding_box_test/0019_c1_f0051230.jpg\n',
}


def make_files(root, files):
    """Empty files named like a dataset: {sub-folder: [names]}."""
    for folder, names in files.items():
        os.makedirs(os.path.join(root, folder), exist_ok=True)
        for name in names:
            open(os.path.join(root, folder, name), 'w').close()
    return str(root)


def run(*args, script=False):
    command = ['data/build_csv.py'] if script else ['-m', 'data.build_csv']
    return subprocess.run([sys.executable, *command, *map(str, args)], cwd=REPO,
                          capture_output=True, text=True)


def read_text(path):
    with open(path, newline='') as f:
        return f.read()


def assert_refused(result, *words):
    """Exit code 2 and one line on stderr without a traceback, holding `words` (after the
    progress lines of --check_images, if any)."""
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.strip().splitlines()
             if not line.startswith('Checking the images of ')]
    assert len(lines) == 1 and 'Traceback' not in result.stderr, result.stderr
    assert lines[0].startswith('build_csv.py: error: ')
    for word in words:
        assert word in lines[0]


@pytest.mark.parametrize('command,files,expected', [
    ('market1501', MARKET_FILES, MARKET_CSVS), ('duke', DUKE_FILES, DUKE_CSVS)])
@pytest.mark.parametrize('script', [False, True])
def test_official_layout(tmp_path, command, files, expected, script):
    root = make_files(tmp_path / 'dataset', files)
    result = run(command, root, tmp_path / 'csv', script=script)
    assert result.returncode == 0, result.stderr
    for name, text in expected.items():
        assert read_text(tmp_path / 'csv' / name) == text
    assert len(result.stdout.splitlines()) == 3
    assert 'rows' in result.stdout and 'identities' in result.stdout


def test_market_summary_counts_cameras(tmp_path):
    root = make_files(tmp_path / 'dataset', MARKET_FILES)
    result = run('market1501', root, tmp_path)
    assert f'{tmp_path}/market1501_test.csv: 5 rows, 4 identities, 3 cameras' in result.stdout


def test_folders(tmp_path):
    root = make_files(tmp_path / 'people', {
        'bob': ['b.JPG', 'a.png', 'notes.txt'], 'ann,lee': ['x.jpeg'], 'ann,lee/side': ['y.bmp'],
        'carl/.hidden': ['z.jpg']})
    result = run('folders', root, tmp_path / 'out.csv')
    assert result.returncode == 0, result.stderr
    assert read_text(tmp_path / 'out.csv') == ('"ann,lee","ann,lee/side/y.bmp"\n'
                                               '"ann,lee","ann,lee/x.jpeg"\n'
                                               'bob,bob/a.png\n'
                                               'bob,bob/b.JPG\n')
    dataset = read_csv(str(tmp_path / 'out.csv'))
    assert list(dataset.pids) == ['ann,lee', 'ann,lee', 'bob', 'bob'] and dataset.cams is None
    assert '4 rows, 2 identities, no camera information' in result.stdout


def test_pattern_with_camera(tmp_path):
    root = make_files(tmp_path / 'shots', {'day1': ['p12-cam3.png', 'p7-cam1.png'],
                                           'day2': ['p12-cam1.png']})
    result = run('pattern', root, tmp_path / 'out.csv',
                 '--pattern', r'p(?P<identity>\d+)-cam(?P<camera>\d+)\.png$')
    assert result.returncode == 0, result.stderr
    assert read_text(tmp_path / 'out.csv') == ('12,day1/p12-cam3.png,3\n'
                                               '7,day1/p7-cam1.png,1\n'
                                               '12,day2/p12-cam1.png,1\n')
    assert '3 rows, 2 identities, 2 cameras' in result.stdout


def test_pattern_skip_unmatched_warns(tmp_path):
    root = make_files(tmp_path / 'shots', {'.': ['p1_a.jpg', 'p2_b.jpg', 'junk.jpg']})
    result = run('pattern', root, tmp_path / 'out.csv', '--pattern', r'^p(?P<identity>\d+)_',
                 '--skip_unmatched')
    assert result.returncode == 0, result.stderr
    assert read_text(tmp_path / 'out.csv') == '1,p1_a.jpg\n2,p2_b.jpg\n'
    assert 'warning' in result.stderr and '1 of 3' in result.stderr and 'junk.jpg' in result.stderr


def test_overwrite_replaces(tmp_path):
    root = make_files(tmp_path / 'people', {'bob': ['a.jpg']})
    (tmp_path / 'out.csv').write_text('old\n')
    assert run('folders', root, tmp_path / 'out.csv', '--overwrite').returncode == 0
    assert read_text(tmp_path / 'out.csv') == 'bob,bob/a.jpg\n'


def test_check_images_accepts_real_images(tmp_path):
    os.makedirs(tmp_path / 'people' / 'bob')
    cv2.imwrite(str(tmp_path / 'people' / 'bob' / 'a.jpg'), np.zeros((8, 4, 3), np.uint8))
    result = run('folders', tmp_path / 'people', tmp_path / 'out.csv', '--check_images')
    assert result.returncode == 0, result.stderr


def test_refuses_empty_folder(tmp_path):
    (tmp_path / 'empty').mkdir()
    assert_refused(run('folders', tmp_path / 'empty', tmp_path / 'out.csv'), 'is empty')


def test_refuses_missing_folder(tmp_path):
    root = make_files(tmp_path / 'dataset', {'query': ['0001_c1s1_001051_00.jpg']})
    assert_refused(run('market1501', root, tmp_path), 'bounding_box_train', 'no such folder')


def test_refuses_folder_without_images(tmp_path):
    root = make_files(tmp_path / 'people', {'bob': ['notes.txt']})
    assert_refused(run('folders', root, tmp_path / 'out.csv'), 'no .jpg', '1 other file')


def test_refuses_unmatched_names(tmp_path):
    files = {**MARKET_FILES, 'query': ['0001_c1s1_001051_00.jpg', 'IMG_0001.jpg']}
    result = run('market1501', make_files(tmp_path / 'dataset', files), tmp_path)
    assert_refused(result, '1 of 2', 'IMG_0001.jpg', '--skip_unmatched')
    assert not os.path.exists(tmp_path / 'market1501_train.csv')  # nothing half-written


def test_refuses_images_outside_identity_folders(tmp_path):
    root = make_files(tmp_path / 'people', {'bob': ['a.jpg'], '.': ['loose.jpg']})
    assert_refused(run('folders', root, tmp_path / 'out.csv'), 'loose.jpg')


def test_refuses_pattern_without_identity_group(tmp_path):
    root = make_files(tmp_path / 'people', {'bob': ['a.jpg']})
    assert_refused(run('pattern', root, tmp_path / 'out.csv', '--pattern', r'(\w+)/'),
                   'identity')


def test_refuses_existing_output(tmp_path):
    root = make_files(tmp_path / 'people', {'bob': ['a.jpg']})
    (tmp_path / 'out.csv').write_text('old\n')
    assert_refused(run('folders', root, tmp_path / 'out.csv'), 'exists', '--overwrite')
    assert read_text(tmp_path / 'out.csv') == 'old\n'


def test_refuses_unreadable_image(tmp_path):
    root = tmp_path / 'people'
    os.makedirs(root / 'bob')
    cv2.imwrite(str(root / 'bob' / 'good.jpg'), np.zeros((8, 4, 3), np.uint8))
    (root / 'bob' / 'broken.jpg').write_text('not an image')
    result = run('folders', root, tmp_path / 'out.csv', '--check_images')
    assert_refused(result, '1 of 2', 'bob/broken.jpg')
    assert not os.path.exists(tmp_path / 'out.csv')


def test_refuses_truncated_jpeg(tmp_path):
    # A JPEG cut in half keeps a valid header; OpenCV would decode it partially without error.
    root = tmp_path / 'people'
    os.makedirs(root / 'ann')
    image = np.random.default_rng(0).integers(0, 256, (64, 32, 3), dtype=np.uint8)
    ok, data = cv2.imencode('.jpg', image)
    (root / 'ann' / 'whole.jpg').write_bytes(data.tobytes())
    (root / 'ann' / 'half.jpg').write_bytes(data.tobytes()[:len(data) // 2])
    result = run('folders', root, tmp_path / 'out.csv', '--check_images')
    assert_refused(result, '1 of 2', 'ann/half.jpg')


def test_folders_take_the_camera_from_the_file_name(tmp_path, capsys):
    from data import build_csv
    root = make_files(tmp_path / 'people', {'ann': ['x_c1_1.jpg', 'x_c2_2.jpg'],
                                            'bob': ['y_c2_1.jpg']})
    build_csv.main(['folders', root, str(tmp_path / 'out.csv'),
                    '--camera_pattern', r'_c(?P<camera>\d+)_'])
    assert read_text(tmp_path / 'out.csv') == ('ann,ann/x_c1_1.jpg,1\n'
                                               'ann,ann/x_c2_2.jpg,2\n'
                                               'bob,bob/y_c2_1.jpg,2\n')
    assert '3 rows, 2 identities, 2 cameras' in capsys.readouterr().out
    (tmp_path / 'people' / 'bob' / 'no_camera.jpg').write_bytes(b'')
    with pytest.raises(InputError, match=r'1 of 4 image\(s\) do not match `\^\(\?P<identity>'
                                         r'\[\^/\]\+\)/` and `_c\(\?P<camera>.*bob/no_camera'):
        build_csv.main(['folders', root, str(tmp_path / 'again.csv'),
                        '--camera_pattern', r'_c(?P<camera>\d+)_'])
    with pytest.raises(InputError, match='--camera_pattern .*camera'):
        build_csv.main(['folders', root, str(tmp_path / 'again.csv'), '--camera_pattern', 'c'])


def test_summary_counts_in_the_singular_and_the_plural(tmp_path, capsys):
    from data import build_csv
    root = make_files(tmp_path / 'people', {'bob': ['a_c1.jpg']})
    build_csv.main(['folders', root, str(tmp_path / 'out.csv'), '--camera_pattern',
                    r'_c(?P<camera>\d)'])
    assert capsys.readouterr().out.strip().endswith('out.csv: 1 row, 1 identity, 1 camera')


def test_every_positional_argument_has_help(capsys):
    from data import build_csv
    for command in ('folders', 'pattern', 'merge', 'market1501'):
        with pytest.raises(SystemExit):
            build_csv.main([command, '--help'])
        usage = capsys.readouterr().out
        positionals = usage.split('positional arguments:')[1].split('options:')[0]
        lines = [line for line in positionals.splitlines() if line.strip()]
        assert all(len(line.split()) > 1 for line in lines), usage  # a name and its help
