"""Evaluation protocols beyond one query set against one gallery: tracklets of video datasets
(MARS: `evaluate.py --tracklets column --excluder mars`) and VehicleID's randomly drawn
galleries (`--gallery_draws`), on hand-worked cases."""
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

import evaluate
import excluders
from data import build_csv
from test_datasets import mars
from tripletreid import evaluation, gallery_draws, tracklets
from tripletreid.csv_dataset import read_csv
from tripletreid.errors import InputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_h5(path, positions):
    """Embeddings [position, 0]: distances are differences of positions."""
    with h5py.File(path, 'w') as f:
        f['emb'] = np.array([[p, 0] for p in positions], np.float32)
    return str(path)


def run_evaluate(args, cwd):
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'evaluate.py'), *map(str, args)],
                            capture_output=True, text=True, cwd=cwd, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


# The MARS case, tracklets as data/mars.py writes them (test_datasets.py): gallery = every test
# tracklet; frame positions give the tracklet means
#   G1 0002 cam1 (0, 2 -> 1)   G2 0002 cam3 (5)   G3 0000 cam2 (3, distractor)
#   G4 00-1 cam3 (1, junk)     G5 0002 cam1 (1.5)
# Queries: Q1 = G1, Q2 = G2.
# Q1 (at 1) ignores itself, G5 (same identity and camera, at 0.5) and the junk G4 (at 0);
#   valid order G3 (2, -), G2 (4, +): AP 1/2, first rank 2, INP 1/2.
# Q2 (at 5) ignores itself; valid order G3 (2, -), G5 (3.5, +), G1 (4, +): the junk G4 (at 4)
#   would tie with G1. AP (1/2 + 2/3) / 2 = 7/12, first rank 2, INP 2/3.
# mAP 13/24, mINP 7/12, CMC 0, 1, 1, 1, 1.
GALLERY_FRAMES = [0, 2, 5, 3, 1, 1.5]
QUERY_FRAMES = [0, 2, 5]


def mars_case(tmp_path):
    build_csv.main(['mars', str(mars(tmp_path / 'MARS')), str(tmp_path)])
    return (str(tmp_path / 'mars_query.csv'), write_h5(tmp_path / 'q.h5', QUERY_FRAMES),
            str(tmp_path / 'mars_test.csv'), write_h5(tmp_path / 'g.h5', GALLERY_FRAMES))


def test_mars_tracklets_through_the_command_line(tmp_path, capsys):
    query_csv, query_h5, gallery_csv, gallery_h5 = mars_case(tmp_path)
    capsys.readouterr()
    run_evaluate(['--excluder', 'mars', '--metric', 'euclidean', '--tracklets', 'column',
                  '--query_dataset', query_csv, '--query_embeddings', query_h5,
                  '--gallery_dataset', gallery_csv, '--gallery_embeddings', gallery_h5,
                  '--filename', tmp_path / 'out.json'], tmp_path)
    result = json.loads((tmp_path / 'out.json').read_text())
    assert result['aps'] == pytest.approx([1 / 2, 7 / 12])
    assert result['mAP'] == pytest.approx(13 / 24)
    assert result['mINP'] == pytest.approx(7 / 12)
    assert result['first_ranks'] == [2, 2]
    assert result['CMC'] == pytest.approx([0, 1, 1, 1, 1])
    assert result['tracklets'] == {'spec': 'column', 'aggregator': 'mean', 'query': 2,
                                   'gallery': 5}


def test_tracklets_from_a_file_name_pattern(tmp_path):
    """The same case with tracklets named by MARS's file names instead of the fourth column."""
    query_csv, query_h5, gallery_csv, gallery_h5 = mars_case(tmp_path)
    spec = r'(?P<tracklet>[^/]+)F\d+\.jpg$'
    query, query_embs = tracklets.aggregate(
        read_csv(query_csv), evaluation.load_embeddings(query_h5, read_csv(query_csv)), spec)
    gallery, gallery_embs = tracklets.aggregate(
        read_csv(gallery_csv), evaluation.load_embeddings(gallery_h5, read_csv(gallery_csv)),
        spec)
    assert gallery.tracklets.tolist() == ['0002C1T0001', '0002C3T0002', '0000C2T0003',
                                          '00-1C3T0004', '0002C1T0005']
    assert gallery.fids[0] == 'bbox_test/0002/0002C1T0001F001.jpg'  # named by its first frame
    assert gallery_embs[:, 0].tolist() == [1, 5, 3, 1, 1.5]
    result = evaluation.evaluate_embeddings(query_embs, gallery_embs, query, gallery,
                                            excluders.create('mars', gallery), 'euclidean')
    assert result['aps'] == pytest.approx([1 / 2, 7 / 12])


def test_tracklet_aggregators_and_refusals(tmp_path):
    csv = tmp_path / 'set.csv'
    csv.write_text('a,x1.jpg,1,t1\na,x2.jpg,1,t1\nb,y1.jpg,2,t2\n')
    dataset = read_csv(str(csv))
    embs = np.array([[3.0, 4.0], [6.0, 8.0], [0.0, 2.0]])
    merged, merged_embs = tracklets.aggregate(dataset, embs, 'column', 'normalized_mean')
    assert merged.pids.tolist() == ['a', 'b'] and merged.lines.tolist() == [1, 3]
    assert merged_embs == pytest.approx(np.array([[0.6, 0.8], [0, 1]]))
    csv.write_text('a,x1.jpg,1,t1\nb,x2.jpg,1,t1\n')
    with pytest.raises(InputError, match=r'set.csv:2: tracklet t1 has identity b here but a at '
                                         r'.*set.csv:1$'):
        tracklets.aggregate(read_csv(str(csv)), embs[:2], 'column')
    csv.write_text('a,x1.jpg,1\n')
    with pytest.raises(InputError, match='needs a fourth CSV column'):
        tracklets.aggregate(read_csv(str(csv)), embs[:1], 'column')
    with pytest.raises(InputError, match=r'set.csv:1: --tracklets .* finds no tracklet in '
                                         r'"x1.jpg"'):
        tracklets.aggregate(read_csv(str(csv)), embs[:1], r'(?P<tracklet>T\d+)')
    with pytest.raises(InputError, match='no named group'):
        tracklets.compile_spec(r'T\d+')


# VehicleID's protocol on four images: A at 0 and 3, B at 1 and 10. The mAP and top-1 of each
# possible gallery (the other two images are the queries), worked out by hand:
#   {a1, b1}: a2 (3) ranks b1 (2) before a1 (3): AP 1/2; b2 (10): b1 first: AP 1. mAP 3/4.
#   {a1, b2}: a2: a1 (3) before b2 (7): AP 1; b1 (1): a1 (1) before b2 (9): AP 1/2. mAP 3/4.
#   {a2, b1}: a1 (0): b1 (1) before a2 (3): AP 1/2; b2: a2 (7) before b1 (9): AP 1/2. mAP 1/2.
#   {a2, b2}: a1: a2 (3) before b2 (10): AP 1; b1: a2 (2) before b2 (9): AP 1/2. mAP 3/4.
DRAW_SET = [('A', 'a1.jpg', 0), ('A', 'a2.jpg', 3), ('B', 'b1.jpg', 1), ('B', 'b2.jpg', 10)]
BY_GALLERY = {('a1.jpg', 'b1.jpg'): (3 / 4, 1 / 2), ('a1.jpg', 'b2.jpg'): (3 / 4, 1 / 2),
              ('a2.jpg', 'b1.jpg'): (1 / 2, 0), ('a2.jpg', 'b2.jpg'): (3 / 4, 1 / 2)}


def draw_case(tmp_path):
    (tmp_path / 'set.csv').write_text(''.join(f'{p},{f}\n' for p, f, _ in DRAW_SET))
    write_h5(tmp_path / 'set.h5', [x for _, _, x in DRAW_SET])
    return ['--excluder', 'diagonal', '--metric', 'euclidean',
            '--query_dataset', 'set.csv', '--query_embeddings', 'set.h5',
            '--gallery_dataset', 'set.csv', '--gallery_embeddings', 'set.h5']


def test_gallery_draws_through_the_command_line(tmp_path):
    result = run_evaluate(draw_case(tmp_path) + ['--gallery_draws', 10, '--draw_seed', 7,
                                                 '--filename', 'out.json'], tmp_path)
    saved = json.loads((tmp_path / 'out.json').read_text())
    galleries = [tuple(draw['gallery']) for draw in saved['draws']]
    assert len(galleries) == 10 and set(galleries) <= set(BY_GALLERY)  # one image per vehicle
    assert len(set(galleries)) > 1
    expected = np.array([BY_GALLERY[gallery] for gallery in galleries])
    assert [draw['mAP'] for draw in saved['draws']] == pytest.approx(expected[:, 0].tolist())
    assert saved['mAP'] == pytest.approx(expected[:, 0].mean())
    assert saved['mAP_std'] == pytest.approx(expected[:, 0].std())
    assert saved['CMC'][0] == pytest.approx(expected[:, 1].mean())
    assert saved['CMC_std'][0] == pytest.approx(expected[:, 1].std())
    assert saved['CMC'][1] == 1 and saved['CMC_std'][1] == 0
    assert (saved['seed'], saved['gallery_draws']) == (7, 10)
    assert all(draw['num_queries'] == 2 for draw in saved['draws'])
    assert f'mAP: {expected[:, 0].mean():.2%} +- {expected[:, 0].std():.2%}' in result.stdout
    # The draws are those of the seed: the same function in-process gives the same galleries.
    dataset = read_csv(str(tmp_path / 'set.csv'))
    again = gallery_draws.evaluate_draws(np.zeros((4, 2)), dataset, 10, 7, lambda *args: {
        'mAP': 0, 'mINP': 0, 'CMC': [0, 0], 'num_queries': 2, 'num_evaluated_queries': 2})
    assert [tuple(draw['gallery']) for draw in again['draws']] == galleries


def test_draw_gallery_is_one_image_per_identity_and_a_function_of_the_seed():
    pids = np.array(['x', 'y', 'x', 'z', 'y', 'x'])
    draws = [gallery_draws.draw_gallery(pids, np.random.default_rng(seed)) for seed in range(20)]
    for rows in draws:
        assert sorted(pids[rows]) == ['x', 'y', 'z'] and list(rows) == sorted(rows)
    assert len({tuple(rows) for rows in draws}) > 1
    assert np.array_equal(gallery_draws.draw_gallery(pids, np.random.default_rng(3)), draws[3])


@pytest.mark.parametrize('extra,message', [
    (['--gallery_draws', '2', '--gallery_dataset', 'other.csv'],
     'give the same --query_dataset and --gallery_dataset'),
    (['--draw_seed', '1'], '--draw_seed applies with --gallery_draws only'),
    (['--tracklet_aggregator', 'mean'], '--tracklet_aggregator applies with --tracklets only'),
    (['--tracklets', '(x'], "--tracklets '(x': neither `column` nor a regular expression"),
])
def test_protocol_flag_refusals(tmp_path, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    args = draw_case(tmp_path)
    with pytest.raises(InputError, match=message.replace('(', r'\(')):
        evaluate.main(args + extra)


def test_single_image_identities_leave_no_query(tmp_path):
    (tmp_path / 'one.csv').write_text('A,a.jpg\nB,b.jpg\n')
    with pytest.raises(InputError, match='every identity has a single image'):
        gallery_draws.evaluate_draws(np.zeros((2, 2)), read_csv(str(tmp_path / 'one.csv')), 1,
                                     0, None)
