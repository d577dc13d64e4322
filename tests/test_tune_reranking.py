"""The validation holdout of data/build_csv.py, the re-ranking grid search of
tune_reranking.py (against a dense re-ranking and scikit-learn's AP, per grid point) and
evaluate.py --rerank_params."""
import itertools
import json
import sys

import cv2
import h5py
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

import evaluate
import tune_reranking
from data import build_csv
from tests.test_reranking import dense_reference
from tripletreid import cli
from tripletreid.csv_dataset import read_csv

# lambda > 0: the original distance breaks the ties of equal Jaccard distances, which the
# dense and the sparse computation may order differently by a rounding
GRID = {'k1': [2, 4, 7], 'k2': [1, 2, 3], 'lambda_value': [0.1, 0.3, 0.6, 1.0]}
FLAGS = ['--rerank_k1', '2', '4', '7', '--rerank_k2', '3', '1', '2',  # sorted by the command
         '--rerank_lambda', '0.1', '0.3', '0.6', '1']


def run_main(main, argv, monkeypatch, capsys):
    """`main` through cli.run as the script runs it: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, 'argv', ['script.py', *argv])
    capsys.readouterr()  # only this run's output
    code = 0
    try:
        cli.run(main)
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope='module')
def case(tmp_path_factory):
    """Seven identities, two cameras with a camera shift, three images per camera; the first
    image of each identity and camera is a query, the others gallery. Returns the folder,
    the flags of the four inputs and the embeddings."""
    folder = tmp_path_factory.mktemp('tune')
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((7, 6))
    shift = rng.standard_normal((2, 6))
    parts = {'query': ([], []), 'gallery': ([], [])}
    for pid, camera, image in np.ndindex(7, 2, 3):
        rows, embs = parts['query' if image == 0 else 'gallery']
        rows.append(f'{pid},p{pid}_c{camera}_{image}.jpg,{camera}\n')
        embs.append(centres[pid] + 0.8 * shift[camera] + 0.7 * rng.standard_normal(6))
    flags = []
    for role, (rows, embs) in parts.items():
        (folder / f'{role}.csv').write_text(''.join(rows))
        with h5py.File(folder / f'{role}.h5', 'w') as f:  # paths stored, as embed.py does
            f['emb'] = np.asarray(embs)
            f['paths'] = [row.split(',')[1].encode() for row in rows]
        flags += [f'--{role}_dataset', str(folder / f'{role}.csv'),
                  f'--{role}_embeddings', str(folder / f'{role}.h5')]
    return folder, flags, {role: np.asarray(embs) for role, (_, embs) in parts.items()}


def brute_force_table(case):
    """mAP of every grid point: the dense re-ranking of test_reranking, AP by scikit-learn over
    the gallery entries not from the query's identity and camera."""
    _, _, embs = case
    query_ids, gallery_ids = np.repeat(np.arange(7), 2), np.repeat(np.arange(7), 4)
    query_cams, gallery_cams = np.tile([0, 1], 7), np.tile([0, 0, 1, 1], 7)
    table = np.empty([len(values) for values in GRID.values()])
    for (i, k1), (j, k2), (k, weight) in itertools.product(
            *(enumerate(values) for values in GRID.values())):
        distances = dense_reference(embs['query'], embs['gallery'], k1, k2, weight)
        aps = []
        for q, row in enumerate(distances):
            kept = (gallery_ids != query_ids[q]) | (gallery_cams != query_cams[q])
            aps.append(average_precision_score(gallery_ids[kept] == query_ids[q], -row[kept]))
        table[i, j, k] = np.mean(aps)
    return table


@pytest.fixture(scope='module')
def tuned(case, tmp_path_factory):
    """The command's JSON on the case, and its output folder."""
    folder, flags, _ = case
    output = tmp_path_factory.mktemp('tuned')
    tune_reranking.main([*flags, '--excluder', 'camera', '--metric', 'euclidean', *FLAGS,
                         '--filename', str(output / 'tuned.json'),
                         '--picture', str(output / 'tuned.png'), '--quiet'])
    return json.loads((output / 'tuned.json').read_text()), output


def test_search_finds_the_brute_force_best(case, tuned):
    expected = brute_force_table(case)
    result, _ = tuned
    assert result['grid'] == GRID
    np.testing.assert_allclose(result['mAP_table'], expected, atol=1e-9)
    best = np.unravel_index(np.argmax(expected), expected.shape)
    assert np.sum(expected >= expected.max() - 1e-9) == 1  # the case has one best point
    assert best != (0, 0, 0) and best[2] != 3  # not the first point, and re-ranking helps
    assert result['chosen'] == {name: values[index]
                                for (name, values), index in zip(GRID.items(), best)}
    assert result['mAP'] == pytest.approx(expected.max(), abs=1e-9)
    assert result['mAP_without_rerank'] == pytest.approx(expected[0, 0, 3], abs=1e-9)
    assert result['metric'] == 'euclidean' and result['normalized'] is False


def test_the_heat_map_is_written(tuned):
    image = cv2.imread(str(tuned[1] / 'tuned.png'))
    assert image is not None and image.shape[0] > 200 and image.shape[1] > 600
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 20  # coloured cells, not a blank


def test_evaluate_with_the_json_equals_the_explicit_flags(case, tuned, tmp_path, monkeypatch,
                                                          capsys):
    folder, flags, _ = case
    result, output = tuned
    chosen = result['chosen']
    common = [*flags, '--excluder', 'camera', '--metric', 'euclidean', '--rerank']
    evaluate.main([*common, '--rerank_params', str(output / 'tuned.json'),
                   '--filename', str(tmp_path / 'json.json')])
    evaluate.main([*common, '--rerank_k1', str(chosen['k1']), '--rerank_k2', str(chosen['k2']),
                   '--rerank_lambda', str(chosen['lambda_value']),
                   '--filename', str(tmp_path / 'flags.json')])
    by_json = json.loads((tmp_path / 'json.json').read_text())
    assert by_json == json.loads((tmp_path / 'flags.json').read_text())
    assert by_json['mAP'] == pytest.approx(result['mAP'], abs=1e-12)  # ranks as evaluate.py
    for extra, message in [
            (['--rerank_k2', '3'], '--rerank_params and --rerank_k2 conflict'),
            (['--normalize'], 'searched with normalized False, but this evaluation has '
                              'normalized True')]:
        code, _, err = run_main(evaluate.main, [*common, *extra, '--rerank_params',
                                                str(output / 'tuned.json')], monkeypatch, capsys)
        assert code == 2 and message in err and err.count('\n') == 1, err
    code, _, err = run_main(evaluate.main, [*flags, '--excluder', 'camera', '--metric',
                                            'euclidean', '--rerank_params', 'x.json'],
                            monkeypatch, capsys)
    assert code == 2 and '--rerank_params applies with --rerank only' in err


@pytest.mark.parametrize('change, message', [
    (['--rerank_k1', '0', '5'], '--rerank_k1 0: must be at least 1'),
    (['--rerank_k2', '2', '2'], '--rerank_k2: 2 is given twice'),
    (['--rerank_lambda', '0.5', '1.5'], "argument --rerank_lambda: '1.5' is not between 0 "
                                        'and 1'),
    (['--query_embeddings', 'missing.h5'], 'missing.h5: no such file')])
def test_bad_input_is_one_line(case, tmp_path, monkeypatch, capsys, change, message):
    _, flags, _ = case
    code, _, err = run_main(tune_reranking.main, [
        *flags, '--excluder', 'camera', '--metric', 'euclidean', *change,
        '--filename', str(tmp_path / 'tuned.json')], monkeypatch, capsys)
    assert code == 2 and message in err and err.count('\n') == 1, err
    assert not (tmp_path / 'tuned.json').exists()


def test_a_bad_params_file_is_one_line(case, tmp_path, monkeypatch, capsys):
    _, flags, _ = case
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps({'chosen': {'k1': 0, 'k2': 6, 'lambda_value': 0.3},
                               'metric': 'euclidean', 'normalized': False}))
    for path, message in [(bad, f'--rerank_params {bad}: --rerank_k1 0: must be at least 1'),
                          (tmp_path / 'none.json', 'none.json: no such file')]:
        code, _, err = run_main(evaluate.main, [
            *flags, '--excluder', 'camera', '--metric', 'euclidean', '--rerank',
            '--rerank_params', str(path)], monkeypatch, capsys)
        assert code == 2 and message in err and err.count('\n') == 1, err


HOLDOUT_ROWS = (  # identity: {camera: images}
    ('a', {'1': 3, '2': 2}), ('b', {'1': 2, '2': 1}), ('c', {'1': 4}),
    ('d', {'1': 1, '2': 1, '3': 2}), ('e', {'2': 1}), ('f', {'2': 3, '3': 3}))


def holdout_csv(folder, with_camera=True):
    lines = [f'{pid},{pid}/{camera}_{n}.jpg' + (f',{camera}' if with_camera else '') + '\n'
             for pid, cameras in HOLDOUT_ROWS for camera, count in cameras.items()
             for n in range(count)]
    (folder / 'train.csv').write_text(''.join(lines))
    return str(folder / 'train.csv'), lines


def read_lines(folder, split):
    return (folder / f'holdout_{split}.csv').read_text().splitlines(keepends=True)


@pytest.mark.parametrize('with_camera', [True, False])
def test_holdout_splits_matchable_identities(tmp_path, with_camera):
    train_csv, lines = holdout_csv(tmp_path, with_camera)
    matchable = {'a', 'b', 'd', 'f'} if with_camera else {'a', 'b', 'c', 'd', 'f'}
    held_sets = set()
    for seed in range(6):
        out = tmp_path / str(seed)
        build_csv.main(['holdout', train_csv, str(out), '--identities', '3', '--seed', str(seed)])
        parts = {split: read_lines(out, split) for split in ('train', 'query', 'gallery')}
        held = {line.split(',')[0] for line in parts['query']}
        assert len(held) == 3 and held <= matchable
        assert {line.split(',')[0] for line in parts['gallery']} == held
        assert not held & {line.split(',')[0] for line in parts['train']}
        assert sorted(sum(parts.values(), [])) == sorted(lines)  # nothing lost or doubled
        for part in parts.values():  # each keeps the CSV order
            assert part == [line for line in lines if line in part]
        query = read_csv(str(out / 'holdout_query.csv'))
        groups = list(zip(query.pids, query.cams if with_camera else [None] * len(query)))
        assert len(set(groups)) == len(groups)  # one query per identity (and camera)
        expected = sum(len(cameras) if with_camera else 1
                       for pid, cameras in HOLDOUT_ROWS if pid in held)
        assert len(groups) == expected
        held_sets.add(frozenset(held))
        build_csv.main(['holdout', train_csv, str(out / 'again'), '--identities', '3',
                        '--seed', str(seed)])
        assert all(read_lines(out / 'again', split) == part for split, part in parts.items())
    assert len(held_sets) > 1  # the seed draws


@pytest.mark.parametrize('flags, message', [
    (['--identities', '5'], 'train.csv: --identities 5, but only 4 identities have images from '
                            'two cameras'),
    (['--identities', '6'], 'train.csv: --identities 6 would leave no identity to train on (6 '
                            'in all)'),
    (['--identities', '2', '--seed', '-1'], "argument --seed: '-1' is not a non-negative")])
def test_holdout_refuses_bad_input(tmp_path, monkeypatch, capsys, flags, message):
    train_csv, _ = holdout_csv(tmp_path)
    code, _, err = run_main(build_csv.main, ['holdout', train_csv, str(tmp_path / 'out'),
                                             *flags], monkeypatch, capsys)
    assert code == 2 and message in err and err.count('\n') == 1, err
    assert not (tmp_path / 'out' / 'holdout_train.csv').exists()
