"""evaluate.py on hand-worked cases, through the command line and as a function."""
import json
import os
import re
import subprocess
import sys

import cv2
import h5py
import numpy as np
import pytest

from tripletreid import evaluation
import excluders
from tripletreid import pictures
from tripletreid.errors import InputError
from tripletreid.csv_dataset import read_csv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVALUATE = os.path.join(ROOT, 'evaluate.py')

# The hand-made Market-1501 case: (identity, file, position on a line). Embeddings are
# [position, 0], so distances are |position difference| (squared for sqeuclidean).
MARKET_GALLERY = [
    ('0001', 'bounding_box_test/0001_c1s1_000001_00.jpg', 0),   # g0
    ('0001', 'bounding_box_test/0001_c2s1_000002_00.jpg', 2),   # g1
    ('0002', 'bounding_box_test/0002_c1s1_000003_00.jpg', 1),   # g2
    ('-1', 'bounding_box_test/-1_c3s1_000004_00.jpg', 0),       # g3 junk
    ('0000', 'bounding_box_test/0000_c4s1_000005_00.jpg', 3),   # g4 distractor
    ('0002', 'bounding_box_test/0002_c3s1_000006_00.jpg', 5),   # g5
    ('0001', 'bounding_box_test/0001_c5s1_000007_00.jpg', 3),   # g6
    ('0004', 'bounding_box_test/0004_c2s1_000008_00.jpg', 10),  # g7
]
MARKET_QUERY = [
    ('0001', 'query/0001_c1s1_000010_00.jpg', 0),   # q0
    ('0002', 'query/0002_c1s1_000011_00.jpg', 1),   # q1
    ('0003', 'query/0003_c2s1_000012_00.jpg', 0),   # q2: identity not in the gallery
    ('0004', 'query/0004_c2s1_000013_00.jpg', 10),  # q3: its only match is from its camera
]
# q0 ignores g0 (same identity and camera) and the junk g3, both at distance 0. Valid order:
#   g2(1,-) g1(2,+) g4(3,-) g6(3,+, after g4 in gallery order) g5(5,-) g7(10,-): ranks 2, 4.
#   sklearn: (1/2 + 2/4)/2 = 1/2; market: ((1/2 + 0)/2 + (2/4 + 1/3)/2)/2 = 1/3; INP 2/4.
# q1 ignores g2 (same camera) and g3. Valid order: g0(1) g1(1) g4(2) g6(2) g5(4,+) g7(9): rank 5.
#   sklearn: 1/5; market: (1/5 + 0/4)/2 = 1/10; INP 1/5.
# q2 and q3 have no valid match: skipped. Two queries evaluated:
#   mAP 7/20 (sklearn) or 13/60 (market); mINP 7/20; CMC over 2 queries, first ranks 2 and 5.
MARKET_CMC = [0, 1 / 2, 1 / 2, 1 / 2, 1, 1, 1, 1]
MARKET_SKIPPED = ['query/0003_c2s1_000012_00.jpg', 'query/0004_c2s1_000013_00.jpg']


def write_case(tmp_path, name, rows):
    """`name`.csv and `name`.h5 (embeddings [position, 0]) for rows (identity, file[, camera],
    position); returns their paths."""
    csv_path, h5_path = tmp_path / f'{name}.csv', tmp_path / f'{name}.h5'
    csv_path.write_text(''.join(','.join(row[:-1]) + '\n' for row in rows))
    write_h5(h5_path, [[row[-1], 0] for row in rows])
    return str(csv_path), str(h5_path)


def write_h5(path, values, name='emb'):
    with h5py.File(path, 'w') as f:
        f[name] = np.asarray(values, dtype=np.float32)


def market_args(tmp_path, metric='euclidean'):
    query_csv, query_h5 = write_case(tmp_path, 'query', MARKET_QUERY)
    gallery_csv, gallery_h5 = write_case(tmp_path, 'gallery', MARKET_GALLERY)
    return ['--excluder', 'market1501', '--metric', metric,
            '--query_dataset', query_csv, '--query_embeddings', query_h5,
            '--gallery_dataset', gallery_csv, '--gallery_embeddings', gallery_h5]


def run(args, cwd):
    return subprocess.run([sys.executable, EVALUATE, *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def with_option(args, flag, value):
    """`args` with the value of `flag` replaced (or the flag added)."""
    if flag not in args:
        return [*args, flag, value]
    i = args.index(flag)
    return [*args[:i + 1], value, *args[i + 2:]]


@pytest.mark.parametrize('extra, metric, aps, mean_ap', [
    ([], 'euclidean', [1 / 2, 1 / 5], 7 / 20),
    (['--use_market_ap', '--batch_size', '1'], 'sqeuclidean', [1 / 3, 1 / 10], 13 / 60),
    (['--batch_size', '3'], 'cityblock', [1 / 2, 1 / 5], 7 / 20),
])
def test_market_case_through_the_command_line(tmp_path, extra, metric, aps, mean_ap):
    out = tmp_path / 'out.json'
    result = run(market_args(tmp_path, metric) + extra + ['--filename', str(out)], tmp_path)
    assert result.returncode == 0, result.stderr
    saved = json.loads(out.read_text())
    assert saved['aps'] == pytest.approx(aps, rel=1e-12)
    assert saved['mAP'] == pytest.approx(mean_ap, rel=1e-12)
    assert saved['CMC'] == pytest.approx(MARKET_CMC)
    assert saved['mINP'] == pytest.approx(7 / 20)
    assert saved['first_ranks'] == [2, 5]
    assert saved['skipped_queries'] == MARKET_SKIPPED
    assert (saved['num_queries'], saved['num_evaluated_queries']) == (4, 2)
    for fid in MARKET_SKIPPED:
        assert f'warning: query {fid} has no valid match' in result.stderr
    assert '2 of 4 queries evaluated, 2 skipped' in result.stdout
    assert (f'mAP: {mean_ap:.2%} | top-1: 0.00% | top-2: 50.00% | top-5: 100.00% | '
            'mINP: 35.00%') in result.stdout


def api_case(tmp_path, excluder_name, gallery_rows, query_rows, batch_size, ap_rule):
    query_csv, query_h5 = write_case(tmp_path, 'query', query_rows)
    gallery_csv, gallery_h5 = write_case(tmp_path, 'gallery', gallery_rows)
    query, gallery = read_csv(query_csv), read_csv(gallery_csv)
    return evaluation.evaluate_embeddings(
        evaluation.load_embeddings(query_h5, query),
        evaluation.load_embeddings(gallery_h5, gallery),
        query, gallery, excluders.create(excluder_name, gallery), 'euclidean', batch_size,
        ap_rule)


# Query = gallery: A1 A2 (identity a), B1 B2 (b), C1 (c) at 0, 1, 3, 5, 10; each ignores itself.
# A1: A2 first -> AP 1. A2: A1 first -> AP 1. B2: B1 first -> AP 1.
# B1 (at 3): A2 and B2 both at 2, A2 first in gallery order -> B2 at rank 2;
#   sklearn 1/2 (1 match among 2 at <= 2), market (1/2 + 0)/2 = 1/4; INP 1/2.
# C1 has no other c: skipped. mAP 7/8 (sklearn) or 13/16 (market), mINP 7/8,
# first ranks 1, 1, 2, 1 -> CMC [3/4, 1, 1, 1, 1].
DIAGONAL_ROWS = [('a', 'A1.jpg', 0), ('a', 'A2.jpg', 1), ('b', 'B1.jpg', 3),
                 ('b', 'B2.jpg', 5), ('c', 'C1.jpg', 10)]


@pytest.mark.parametrize('batch_size', [1, 2, 256])
@pytest.mark.parametrize('ap_rule, mean_ap', [('sklearn', 7 / 8), ('market', 13 / 16)])
def test_diagonal_case_in_any_batch_size(tmp_path, batch_size, ap_rule, mean_ap):
    result = api_case(tmp_path, 'diagonal', DIAGONAL_ROWS, DIAGONAL_ROWS, batch_size, ap_rule)
    assert result['mAP'] == pytest.approx(mean_ap, rel=1e-12)
    assert result['CMC'] == pytest.approx([3 / 4, 1, 1, 1, 1])
    assert result['mINP'] == pytest.approx(7 / 8)
    assert result['skipped_queries'] == ['C1.jpg']


# One query of identity p from camera 1 at 0; the gallery's p from camera 1 (at 1, nearest)
# is ignored, so the other camera's p (at 2) comes after the stranger at 1.5: rank 2,
# AP 1/2 (sklearn) and CMC [0, 1, 1].
@pytest.mark.parametrize('excluder_name, gallery_rows, query_rows', [
    ('camera', [('p', 'g0.jpg', 'c1', 1), ('p', 'g1.jpg', 'c2', 2), ('q', 'g2.jpg', 'c1', 1.5)],
     [('p', 'q0.jpg', 'c1', 0)]),
    ('duke', [('0005', '0005_c1_f0000001.jpg', 1), ('0005', '0005_c2_f0000002.jpg', 2),
              ('0007', '0007_c1_f0000003.jpg', 1.5)],
     [('0005', '0005_c1_f0000009.jpg', 0)]),
])
def test_same_camera_match_is_ignored(tmp_path, excluder_name, gallery_rows, query_rows):
    result = api_case(tmp_path, excluder_name, gallery_rows, query_rows, 256, 'sklearn')
    assert result['aps'] == [pytest.approx(1 / 2)]
    assert result['CMC'] == pytest.approx([0, 1, 1])


def test_no_evaluable_query_is_an_error(tmp_path):
    with pytest.raises(InputError, match='no query of .* has a valid match'):
        api_case(tmp_path, 'diagonal', DIAGONAL_ROWS[4:], DIAGONAL_ROWS[4:], 256, 'sklearn')


def test_ranked_lists_leave_out_excluded_entries(tmp_path):
    query_csv, query_h5 = write_case(tmp_path, 'query', MARKET_QUERY)
    gallery_csv, gallery_h5 = write_case(tmp_path, 'gallery', MARKET_GALLERY)
    query, gallery = read_csv(query_csv), read_csv(gallery_csv)
    ranked, is_match, distances = evaluation.ranked_lists(
        evaluation.load_embeddings(query_h5, query),
        evaluation.load_embeddings(gallery_h5, gallery),
        query, gallery, excluders.create('market1501', gallery), 'euclidean', [0, 1])
    # The valid orders worked out above, six valid entries each, then nothing (-1).
    np.testing.assert_array_equal(ranked, [[2, 1, 4, 6, 5, 7, -1, -1, -1, -1],
                                           [0, 1, 4, 6, 5, 7, -1, -1, -1, -1]])
    np.testing.assert_array_equal(is_match[:, :6], [[0, 1, 0, 1, 0, 0], [0, 0, 0, 0, 1, 0]])
    assert not is_match[:, 6:].any()
    np.testing.assert_array_equal(distances, [[1, 2, 3, 3, 5, 10] + [np.inf] * 4,
                                              [1, 1, 2, 2, 4, 9] + [np.inf] * 4])


CELL_WIDTH = pictures.TILE_SIZE[0] + 2 * (pictures.FRAME + pictures.GAP)
CELL_HEIGHT = (pictures.TILE_SIZE[1] + 2 * (pictures.FRAME + pictures.GAP)
               + pictures.CAPTION_LINES * pictures.LINE_HEIGHT)


def frame_color(image, row, column):
    """The BGR colour of the frame of cell `column` (0 = the query) in ranked-list `row`."""
    x = column * CELL_WIDTH + (pictures.QUERY_GAP if column else 0) + pictures.GAP + 1
    return tuple(image[row * CELL_HEIGHT + CELL_HEIGHT // 2, x])


def picture_case(tmp_path):
    """The Market case's images, query and gallery in folders of their own; the flags."""
    for folder, rows in (('query_images', MARKET_QUERY), ('gallery_images', MARKET_GALLERY)):
        for _, fid, _ in rows:
            os.makedirs(tmp_path / folder / os.path.dirname(fid), exist_ok=True)
            cv2.imwrite(str(tmp_path / folder / fid), np.full((20, 10, 3), 200, np.uint8))
    return market_args(tmp_path) + [
        '--picture_dir', str(tmp_path / 'pictures'), '--filename', str(tmp_path / 'out.json'),
        '--query_image_root', str(tmp_path / 'query_images'),
        '--gallery_image_root', str(tmp_path / 'gallery_images'),
        '--picture_queries', '4', '--picture_seed', '0', '--run_name', 'my_run']


def test_pictures(tmp_path):
    import evaluate
    evaluate.main(picture_case(tmp_path))
    assert cv2.imread(str(tmp_path / 'pictures' / 'cmc.png')) is not None
    image = cv2.imread(str(tmp_path / 'pictures' / 'ranked_list.png'))
    assert image.shape == (4 * CELL_HEIGHT, 11 * CELL_WIDTH + pictures.QUERY_GAP, 3)
    green, red, white = pictures.MATCH_COLOR, pictures.MISS_COLOR, (255, 255, 255)
    # q0's valid order: miss, match, miss, match, miss, miss; q1's: four misses, a match.
    assert [frame_color(image, 0, c) for c in range(8)] == [
        pictures.QUERY_COLOR, red, green, red, green, red, red, white]
    assert [frame_color(image, 1, c) for c in range(1, 7)] == [red, red, red, red, green, red]
    caption = image[CELL_HEIGHT - pictures.CAPTION_LINES * pictures.LINE_HEIGHT:CELL_HEIGHT,
                    :CELL_WIDTH]
    assert (caption < 128).any()  # the query's caption is drawn (dark text on white)


def test_ranked_list_captions():
    # q0 of the Market case at position 0: its valid order g2 g1 g4 g6 g5 g7 at distances
    # 1 2 3 3 5 10; cameras as the file names say.
    gallery = pictures.Images([fid for _, fid, _ in MARKET_GALLERY],
                              [pid for pid, _, _ in MARKET_GALLERY],
                              ['1', '2', '1', '3', '4', '3', '5', '2'])
    queries = pictures.Images(['q.jpg'], ['0001'], None)
    rows = pictures.ranked_captions(queries, gallery, [[2, 1, -1]], [[1.0, 2.5, np.inf]])
    assert rows == [[['query 0001', 'cam ?'], ['#1 0002', 'cam 1 d 1'],
                     ['#2 0001', 'cam 2 d 2.5'], []]]


def test_cmc_legend_holds_the_run_name_and_the_map(tmp_path, monkeypatch):
    import evaluate
    labels = {}
    monkeypatch.setattr(pictures, 'save_cmc_curve',
                        lambda curves, path, title: labels.update(curves))
    evaluate.main(picture_case(tmp_path))
    assert list(labels) == ['my_run: mAP 35.0%']  # 7/20
    assert labels['my_run: mAP 35.0%'] == pytest.approx(MARKET_CMC)


@pytest.mark.parametrize('flag, folder, fid', [
    ('--gallery_image_root', 'gallery_images', 'bounding_box_test/0004_c2s1_000008_00.jpg'),
    ('--query_image_root', 'query_images', 'query/0003_c2s1_000012_00.jpg'),
])
def test_a_missing_picture_image_stops_before_any_work(tmp_path, flag, folder, fid):
    import evaluate
    args = picture_case(tmp_path)
    os.remove(tmp_path / folder / fid)
    with pytest.raises(InputError, match=f'^{flag} .*{folder}: .*{fid} is missing$'):
        evaluate.main(args)
    assert os.listdir(tmp_path / 'pictures') == [] and not os.path.exists(tmp_path / 'out.json')


@pytest.mark.parametrize('flags, message', [
    (['--picture_dir', 'p', '--query_image_root', '.'],
     '--query_image_root needs --gallery_image_root'),
    (['--image_root', '.'], 'add --picture_dir'),
    (['--run_name', 'mine'], '--run_name names the run in cmc.png; add --picture_dir'),
])
def test_picture_flags_that_cannot_work(tmp_path, monkeypatch, flags, message):
    import evaluate
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=message):
        evaluate.main(market_args(tmp_path) + flags)


def replaced(flag, name, write):
    """An error case: `write(path)` makes the file `name`, which `flag` then points at."""
    def make_args(tmp_path, args):
        write(tmp_path / name)
        return with_option(args, flag, str(tmp_path / name))
    return make_args


def bad_gallery_csv(path):
    rows = [row[:2] for row in MARKET_GALLERY]
    rows[2] = ('0002', 'images/person.jpg')
    path.write_text(''.join(','.join(row) + '\n' for row in rows))


ERROR_CASES = {
    'missing h5': (replaced('--query_embeddings', 'no.h5', lambda path: None),
                   'no.h5: no such file'),
    'not HDF5': (replaced('--query_embeddings', 'text.h5', lambda path: path.write_text('x')),
                 'text.h5: not a readable HDF5 file'),
    'no emb': (replaced('--query_embeddings', 'other.h5',
                        lambda path: write_h5(path, np.zeros((4, 2)), 'features')),
               'other.h5: no dataset `emb` .found: features'),
    'row count': (replaced('--query_embeddings', 'rows.h5',
                           lambda path: write_h5(path, np.zeros((3, 2)))),
                  r'rows.h5: 3 embeddings, but .*query.csv has 4 rows'),
    'sizes differ': (replaced('--query_embeddings', 'wide.h5',
                              lambda path: write_h5(path, np.zeros((4, 3)))),
                     'embedding sizes differ: 3 in .*wide.h5, 2 in .*gallery.h5'),
    'NaN': (replaced('--query_embeddings', 'nan.h5',
                     lambda path: write_h5(path, [[0, 0], [np.nan, 0], [0, 0], [0, 0]])),
            r'nan.h5: row 1 holds NaN or infinite values; it is '
            r'query/0002_c1s1_000011_00.jpg of .*query.csv:2'),
    'infinite': (replaced('--gallery_embeddings', 'inf.h5',
                          lambda path: write_h5(path, np.r_[np.zeros((7, 2)), [[np.inf, 0]]])),
                 'inf.h5: row 7 holds NaN or infinite values'),
    'bad file name': (replaced('--gallery_dataset', 'bad.csv', bad_gallery_csv),
                      r'bad.csv:3: cannot parse the file name .images/person.jpg.'),
    'pattern without camera excluder': (
        lambda tmp_path, args: with_option(args, '--camera_pattern', '(?P<camera>c)'),
        '--camera_pattern applies to --excluder camera only'),
}


@pytest.mark.parametrize('case', ERROR_CASES)
def test_bad_input_is_one_line_and_keeps_the_json(tmp_path, case):
    make_args, message = ERROR_CASES[case]
    out = tmp_path / 'out.json'
    out.write_text('{"old": true}\n')
    args = make_args(tmp_path, market_args(tmp_path)) + ['--filename', str(out), '--overwrite']
    result = run(args, tmp_path)
    assert result.returncode == 2
    # Hand-made files hold no paths: a warning that their rows cannot be checked may come first.
    lines = [line for line in result.stderr.strip().splitlines()
             if not line.startswith('warning: ')]
    assert len(lines) == 1, result.stderr
    assert 'Traceback' not in result.stderr
    assert re.search(message, result.stderr), result.stderr
    assert out.read_text() == '{"old": true}\n'


def test_unknown_excluder_is_an_argparse_error(tmp_path):
    result = run(with_option(market_args(tmp_path), '--excluder', 'cuhk03'), tmp_path)
    assert result.returncode == 2
    assert 'Traceback' not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        "evaluate.py: error: argument --excluder: invalid choice: 'cuhk03'")


def test_existing_json_is_kept_without_overwrite(tmp_path):
    out = tmp_path / 'out.json'
    out.write_text('{"old": true}\n')
    result = run(market_args(tmp_path) + ['--filename', str(out)], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (f'evaluate.py: error: {out} exists already; '
                                     'pass --overwrite to replace it')
    assert out.read_text() == '{"old": true}\n'


def test_import_does_not_load_tensorflow():
    code = ('import sys, evaluate, excluders; '
            'from tripletreid import evaluation, metrics, pictures; '
            'print(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")))')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '[]'


def test_plain_evaluation_loads_no_scipy_tqdm_or_plotting(tmp_path):
    # Their imports took a few tenths of a second of evaluate.py's whole run (issue 19);
    # re-ranking, progress lines and pictures load them when asked for.
    code = ('import json, sys, evaluate; evaluate.main(json.loads(sys.argv[1])); '
            'print(sorted({m.split(".")[0] for m in sys.modules} & '
            '{"scipy", "tqdm", "sklearn", "matplotlib", "cv2"}))')
    args = market_args(tmp_path) + ['--filename', str(tmp_path / 'result.json')]
    result = subprocess.run([sys.executable, '-c', code, json.dumps(args)], capture_output=True,
                            text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == '[]'
    assert (tmp_path / 'result.json').exists()


def test_normalize_ranks_by_angle(tmp_path):
    # Query (1, 0) of identity 0001. Gallery: 0001 at (10, 1), far but at 5.7 degrees; 0002 at
    # (0.5, 0.5), near but at 45 degrees. Euclidean ranks 0002 first (AP 1/2); after scaling to
    # unit length, 0001 is first (AP 1).
    (tmp_path / 'q.csv').write_text('0001,query/0001_c1s1_000001_00.jpg\n')
    (tmp_path / 'g.csv').write_text('0001,bounding_box_test/0001_c2s1_000002_00.jpg\n'
                                    '0002,bounding_box_test/0002_c2s1_000003_00.jpg\n')
    write_h5(tmp_path / 'q.h5', [[1, 0]])
    write_h5(tmp_path / 'g.h5', [[10, 1], [0.5, 0.5]])
    args = ['--excluder', 'market1501', '--metric', 'euclidean',
            '--query_dataset', 'q.csv', '--query_embeddings', 'q.h5',
            '--gallery_dataset', 'g.csv', '--gallery_embeddings', 'g.h5']
    for extra, mean_ap in (([], 0.5), (['--normalize'], 1.0)):
        out = tmp_path / f'out{len(extra)}.json'
        result = run(args + extra + ['--filename', str(out)], tmp_path)
        assert result.returncode == 0, result.stderr
        saved = json.loads(out.read_text())
        assert saved['mAP'] == pytest.approx(mean_ap)
        assert saved['normalized'] == bool(extra)
