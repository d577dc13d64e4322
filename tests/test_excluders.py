"""The excluders: masks worked out by hand, and file names they cannot parse."""
import numpy as np
import pytest

import excluders
from tripletreid.errors import InputError
from tripletreid.csv_dataset import read_csv

F, T = False, True


def dataset(tmp_path, name, rows):
    """A Dataset read from a CSV written with `rows` (tuples of columns)."""
    path = tmp_path / name
    path.write_text(''.join(','.join(row) + '\n' for row in rows))
    return read_csv(str(path))


def mask(excluder_name, gallery, query, **options):
    excluder = excluders.create(excluder_name, gallery, **options)
    return excluder(excluder.keys(query))


MARKET_GALLERY = [
    ('0001', 'bounding_box_test/0001_c1s1_000151_01.jpg'),  # g0: identity 1, camera 1
    ('0001', 'bounding_box_test/0001_c2s1_000301_01.jpg'),  # g1: identity 1, camera 2
    ('-1', 'bounding_box_test/-1_c1s1_000401_03.jpg'),      # g2: junk
    ('0000', 'bounding_box_test/0000_c1s1_000501_02.jpg'),  # g3: distractor, camera 1
    ('0002', 'bounding_box_test/0002_c1s1_000451_03.jpg'),  # g4: identity 2, camera 1
]


def test_market1501(tmp_path):
    gallery = dataset(tmp_path, 'gallery.csv', MARKET_GALLERY)
    query = dataset(tmp_path, 'query.csv', [('0001', 'query/0001_c1s1_001051_00.jpg'),
                                            ('0002', 'query/0002_c2s1_000551_00.jpg')])
    # Query 1 (camera 1) ignores g0 (same identity, same camera) and the junk g2; the other
    # camera's g1 and the distractor g3 stay. Query 2 (camera 2) ignores only the junk: g4 is
    # its identity but from camera 1.
    np.testing.assert_array_equal(mask('market1501', gallery, query),
                                  [[T, F, T, F, F],
                                   [F, F, T, F, F]])


def test_duke(tmp_path):
    gallery = dataset(tmp_path, 'gallery.csv', [
        ('0005', 'bounding_box_test/0005_c2_f0046985.jpg'),
        ('0005', 'bounding_box_test/0005_c5_f0051339.jpg'),
        ('0007', 'bounding_box_test/0007_c2_f0047210.jpg'),
    ])
    query = dataset(tmp_path, 'query.csv', [('0005', 'query/0005_c2_f0046000.jpg'),
                                            ('0007', 'query/0007_c8_f0047000.jpg')])
    # Only the same identity from the same camera: (0005, c2) for the first query; the
    # second query is camera 8, which the gallery does not have.
    np.testing.assert_array_equal(mask('duke', gallery, query), [[T, F, F], [F, F, F]])


def test_diagonal_ignores_only_the_same_file(tmp_path):
    rows = [('a', 'x/1.jpg'), ('a', 'x/2.jpg'), ('b', 'x/3.jpg')]
    gallery = dataset(tmp_path, 'gallery.csv', rows)
    query = dataset(tmp_path, 'query.csv', rows + [('a', 'x/other.jpg')])
    np.testing.assert_array_equal(mask('diagonal', gallery, query),
                                  [[T, F, F], [F, T, F], [F, F, T], [F, F, F]])


def test_camera_from_the_third_csv_column(tmp_path):
    gallery = dataset(tmp_path, 'gallery.csv', [('p', 'a.jpg', 'north'), ('p', 'b.jpg', 'south'),
                                                ('q', 'c.jpg', 'north')])
    query = dataset(tmp_path, 'query.csv', [('p', 'd.jpg', 'north'), ('q', 'e.jpg', 'east')])
    # Query p/north ignores gallery p/north only; q/east's camera is not in the gallery.
    np.testing.assert_array_equal(mask('camera', gallery, query), [[T, F, F], [F, F, F]])


def test_camera_pattern_searches_the_path_and_overrides_the_column(tmp_path):
    gallery = dataset(tmp_path, 'gallery.csv', [('p', 'cam1/a.jpg', 'x'), ('p', 'cam2/b.jpg', 'x'),
                                                ('q', 'cam1/c.jpg', 'x')])
    query = dataset(tmp_path, 'query.csv', [('p', 'cam2/d.jpg', 'x'), ('q', 'cam1/e.jpg', 'x')])
    np.testing.assert_array_equal(
        mask('camera', gallery, query, camera_pattern=r'^cam(?P<camera>\d+)/'),
        [[F, T, F], [F, F, T]])


def test_market_name_it_cannot_parse_names_file_and_line(tmp_path):
    gallery = dataset(tmp_path, 'gallery.csv', MARKET_GALLERY + [('0003', 'images/person3.jpg')])
    with pytest.raises(InputError, match=r'gallery\.csv:6: .*images/person3\.jpg'):
        excluders.create('market1501', gallery)


def test_query_name_it_cannot_parse_names_file_and_line(tmp_path):
    gallery = dataset(tmp_path, 'gallery.csv', MARKET_GALLERY)
    query = dataset(tmp_path, 'query.csv', [('0001', 'query/0001_c1s1_001051_00.jpg'),
                                            ('0002', 'query/0002_c2_f0046985.jpg')])
    with pytest.raises(InputError, match=r'query\.csv:2: .*0002_c2_f0046985\.jpg'):
        excluders.create('market1501', gallery).keys(query)


def test_duke_rejects_market_names(tmp_path):
    gallery = dataset(tmp_path, 'gallery.csv', MARKET_GALLERY)
    with pytest.raises(InputError, match=r'gallery\.csv:1: .*0001_c1s1_000151_01\.jpg'):
        excluders.create('duke', gallery)


@pytest.mark.parametrize('pattern, message', [
    (r'cam(\d+)', 'no named group `camera`'),
    (r'cam(?P<camera>\d+', 'not a regular expression'),
    (r'^cam(?P<camera>\d+)/', r'gallery\.csv:2: .*other/b\.jpg'),
])
def test_bad_camera_patterns(tmp_path, pattern, message):
    gallery = dataset(tmp_path, 'gallery.csv', [('p', 'cam1/a.jpg'), ('p', 'other/b.jpg')])
    with pytest.raises(InputError, match=message):
        excluders.create('camera', gallery, camera_pattern=pattern)


def test_camera_excluder_needs_cameras(tmp_path):
    gallery = dataset(tmp_path, 'gallery.csv', [('p', 'a.jpg')])
    with pytest.raises(InputError, match=r'gallery\.csv: the camera excluder needs'):
        excluders.create('camera', gallery)


def test_camera_pattern_only_for_the_camera_excluder(tmp_path):
    gallery = dataset(tmp_path, 'gallery.csv', MARKET_GALLERY)
    with pytest.raises(InputError, match='--camera_pattern applies to --excluder camera'):
        excluders.create('market1501', gallery, camera_pattern='(?P<camera>x)')


def test_registry_names():
    assert set(excluders.EXCLUDERS) == {'market1501', 'duke', 'diagonal', 'camera', 'mars'}
