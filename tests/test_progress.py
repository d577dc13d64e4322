"""The progress line of long steps: a few plain lines off a terminal, tqdm's on one; the image
check and CSV building counting what they say they count (embedding: test_embed.py)."""
import io
import os

import cv2
import numpy as np

from tripletreid import progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_plain_lines_off_a_terminal():
    stream = io.StringIO()
    bar = progress.bar(8, 'Work', file=stream)
    for _ in range(8):
        bar.update()
    bar.close()
    lines = stream.getvalue().splitlines()
    assert '\r' not in stream.getvalue()
    assert [line.split(' (')[0] for line in lines] == [
        'Work: 2/8 images', 'Work: 4/8 images', 'Work: 6/8 images', 'Work: 8/8 images']
    assert all('images/s' in line and 'left)' in line for line in lines)


def test_one_line_for_a_piece_that_passes_several_quarters():
    stream = io.StringIO()
    bar = progress.bar(10, 'Work', unit='row', file=stream)
    bar.update(1)   # under a quarter: nothing
    bar.update(8)   # passes the first three quarters: one line
    bar.update(1)
    assert [line.split(' (')[0] for line in stream.getvalue().splitlines()] == [
        'Work: 9/10 rows', 'Work: 10/10 rows']


def test_a_terminal_gets_a_line_redrawn_in_place():
    stream = Terminal()
    bar = progress.bar(3, 'Work', file=stream)
    bar.update(3)
    bar.close()
    assert '\r' in stream.getvalue() and '3/3' in stream.getvalue()


def test_quiet_prints_nothing(capsys):
    bar = progress.bar(3, 'Work', quiet=True)
    bar.update(3)
    bar.close()
    assert capsys.readouterr().err == ''


def test_image_check_counts_the_images_that_fail_too(tmp_path, capsys):
    from tripletreid import pipeline
    good = cv2.imencode('.png', np.zeros((4, 4, 3), np.uint8))[1].tobytes()
    paths = []
    for i, data in enumerate([good, b'\x89PNG broken', good, b'\x89PNG broken']):
        (tmp_path / f'{i}.png').write_bytes(data)
        paths.append(str(tmp_path / f'{i}.png'))
    assert list(pipeline.find_undecodable(np.array(paths), 2)) == [1, 3]
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith('Checking images: 4/4 images (') and '\r' not in err
    pipeline.find_undecodable(np.array(paths), 2, quiet=True)
    assert capsys.readouterr().err == ''


def test_build_csv_check_images_shows_progress(tmp_path, capsys):
    from data import build_csv
    for name in ('a', 'b'):
        os.makedirs(tmp_path / 'people' / name)
        cv2.imwrite(str(tmp_path / 'people' / name / '1.jpg'), np.zeros((8, 4, 3), np.uint8))
    build_csv.main(['folders', str(tmp_path / 'people'), str(tmp_path / 'out.csv'),
                    '--check_images', '--threads', '2'])
    err = capsys.readouterr().err
    assert f'Checking the images of {tmp_path / "people"}: 2/2 images' in err
    assert '\r' not in err
