"""search.py and its machinery: exact search against brute-force numpy (ties in gallery order),
Faiss flat against exact, the verification ROC against scikit-learn's, embeddings files that
know their rows, and the commands end to end on the tiny trained experiment."""
import contextlib
import io
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
from sklearn.metrics import roc_curve

from conftest import ROOT

import embed
import evaluate
import search
from tripletreid import nearest, search_index, verification
from tripletreid.errors import InputError


def brute_force(gallery, queries, metric, k, query_groups=None, gallery_groups=None):
    difference = queries[:, None].astype(np.float64) - gallery[None].astype(np.float64)
    if metric == 'cityblock':
        distances = np.abs(difference).sum(-1)
    else:
        distances = (difference ** 2).sum(-1)
    if query_groups is not None:
        same = (query_groups[:, None] == gallery_groups) & (query_groups[:, None] >= 0)
        distances[same] = np.inf
    order = np.argsort(distances, axis=1, kind='stable')[:, :k]
    found = np.take_along_axis(distances, order, axis=1)
    if metric == 'euclidean':
        found = np.sqrt(found)
    return np.where(np.isfinite(found), order, -1), found


@pytest.mark.parametrize('metric', ['euclidean', 'sqeuclidean', 'cityblock'])
def test_exact_search_equals_brute_force_with_ties_in_gallery_order(metric):
    rng = np.random.default_rng(0)
    for _ in range(4):
        gallery = rng.integers(-2, 3, (300, 5)).astype(np.float32)  # many exact ties
        queries = rng.integers(-2, 3, (41, 5)).astype(np.float32)
        query_groups = rng.integers(-1, 3, len(queries))
        gallery_groups = rng.integers(0, 3, len(gallery))
        for groups in [(None, None), (query_groups, gallery_groups)]:
            found = nearest.ExactSearch(gallery, metric, batch_size=16, chunk=37).search(
                queries, 12, *groups)
            indices, distances = brute_force(gallery, queries, metric, 12, *groups)
            np.testing.assert_array_equal(found.indices, indices)
            np.testing.assert_array_equal(found.distances, distances)
    # Real-valued embeddings, and a gallery smaller than k.
    gallery = rng.normal(size=(7, 16)).astype(np.float32)
    queries = rng.normal(size=(5, 16)).astype(np.float32)
    found = nearest.ExactSearch(gallery, metric).search(queries, 10)
    indices, distances = brute_force(gallery, queries, metric, 10)
    np.testing.assert_array_equal(found.indices, np.pad(indices, ((0, 0), (0, 3)),
                                                        constant_values=-1))
    np.testing.assert_allclose(found.distances[:, :7], distances, rtol=1e-14)  # sum order


def test_faiss_flat_equals_exact_and_approximate_ones_find_most():
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(20, 16))
    gallery = (centers[rng.integers(0, 20, 4000)] + 0.3 * rng.normal(size=(4000, 16))).astype(
        np.float32)
    queries = (centers[rng.integers(0, 20, 60)] + 0.3 * rng.normal(size=(60, 16))).astype(
        np.float32)
    query_groups, gallery_groups = rng.integers(0, 3, 60), rng.integers(0, 3, 4000)
    exact = nearest.ExactSearch(gallery, 'euclidean')
    for groups in [(None, None), (query_groups, gallery_groups)]:
        reference = exact.search(queries, 10, *groups)
        for kind, least in [('flat', 1.0), ('ivf', 0.8), ('hnsw', 0.9)]:
            options = nearest.FaissOptions(kind, nlist=16, nprobe=4)
            structure = nearest.build_faiss(gallery, options)
            found = nearest.FaissSearch(gallery, 'euclidean', structure, options).search(
                queries, 10, *groups)
            if kind == 'flat':
                np.testing.assert_array_equal(found.indices, reference.indices)
                np.testing.assert_array_equal(found.distances, reference.distances)
            recall = np.mean([len(set(a) & set(b)) / 10
                              for a, b in zip(found.indices, reference.indices)])
            assert recall >= least, (kind, recall)
            if groups[0] is not None:
                hit = found.indices >= 0
                assert not (gallery_groups[found.indices] == groups[0][:, None])[hit].any()


def corners(thresholds, fps, tps):
    """The corners of the curve from the origin (threshold -inf) through the points."""
    return verification.drop_collinear(np.r_[-np.inf, thresholds], np.r_[0, fps],
                                       np.r_[0, tps])


def test_roc_equals_scikit_learn_on_random_cases_with_ties():
    rng = np.random.default_rng(2)
    for _ in range(40):
        shape = (int(rng.integers(2, 30)), int(rng.integers(2, 40)))
        distances = rng.integers(0, int(rng.integers(2, 30)), shape).astype(np.float64)
        same = rng.random(shape) < rng.uniform(0.05, 0.5)
        ignored = rng.random(shape) < 0.1
        positive, negative = same & ~ignored, ~same & ~ignored
        if not positive.any() or not negative.any():
            continue

        def batches(distances=distances, positive=positive, negative=negative):
            for start in range(0, len(distances), 4):
                rows = slice(start, start + 4)
                yield distances[rows], positive[rows], negative[rows]

        points = verification.roc_points(batches)
        labels = np.r_[np.ones(positive.sum()), np.zeros(negative.sum())]
        fpr, tpr, thresholds = roc_curve(labels, -np.r_[distances[positive],
                                                        distances[negative]],
                                         drop_intermediate=False)
        fps = np.rint(fpr * negative.sum()).astype(int)
        tps = np.rint(tpr * positive.sum()).astype(int)
        expected = corners(-thresholds[1:], fps[1:], tps[1:])
        got = corners(points['thresholds'], points['fps'], points['tps'])
        for a, b in zip(expected, got):
            np.testing.assert_array_equal(a, b)
        # Every point is one scikit-learn has (a reachable threshold), and TAR at FAR is the
        # best of scikit-learn's points.
        pairs = set(zip(fps.tolist(), tps.tolist()))
        assert set(zip(points['fps'].tolist(), points['tps'].tolist())) <= pairs
        result = verification.summary(points, target_far=0.1)
        allowed = fpr <= 0.1
        assert result['TAR_at_FAR']['0.1']['TAR'] == pytest.approx(tpr[allowed].max())
        f1 = 2 * tps / (2 * tps + fps + positive.sum() - tps)
        assert result['best_f1']['F1'] == pytest.approx(f1.max())
        assert 0 <= result['EER'] <= 1


def write_embeddings(path, emb, paths=None):
    with h5py.File(path, 'w') as f:
        f['emb'] = np.asarray(emb, np.float32)
        if paths is not None:
            f['paths'] = np.char.encode(np.asarray(paths), 'utf-8')


def labelled_case(folder, seed=0, n_query=32, n_gallery=32):
    """CSVs and embeddings files (with their paths) of queries and a gallery."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, count in (('query', n_query), ('gallery', n_gallery)):
        ids = rng.integers(0, 8, count)
        fids = [f'{name}/{i:03d}.jpg' for i in range(count)]
        csv_path = os.path.join(folder, f'{name}.csv')
        with open(csv_path, 'w') as f:
            f.writelines(f'{p},{fid},{i % 2}\n' for i, (p, fid) in enumerate(zip(ids, fids)))
        h5_path = os.path.join(folder, f'{name}.h5')
        write_embeddings(h5_path, rng.normal(size=(count, 4)) + ids[:, None], fids)
        out[name] = (csv_path, h5_path)
    return out


def evaluate_argv(case, extra=()):
    return ['--excluder', 'camera', '--metric', 'euclidean',
            '--query_dataset', case['query'][0], '--query_embeddings', case['query'][1],
            '--gallery_dataset', case['gallery'][0], '--gallery_embeddings',
            case['gallery'][1], *extra]


def test_evaluate_refuses_embeddings_of_another_csv_and_warns_on_old_files(tmp_path, capsys):
    case = labelled_case(str(tmp_path))
    swapped = {'query': (case['query'][0], case['gallery'][1]),
               'gallery': (case['gallery'][0], case['query'][1])}
    with pytest.raises(InputError, match=r'gallery.h5 belongs to another CSV than .*query.csv: '
                                         r'its row 0 is gallery/000.jpg'):
        evaluate.main(evaluate_argv(swapped))
    old = str(tmp_path / 'old.h5')
    with h5py.File(case['gallery'][1], 'r') as f:
        write_embeddings(old, f['emb'][()])
    capsys.readouterr()
    evaluate.main(evaluate_argv({**case, 'gallery': (case['gallery'][0], old)}))
    assert f'warning: {old} stores no image paths' in capsys.readouterr().err


def test_evaluate_verification_matches_scikit_learn(tmp_path):
    case = labelled_case(str(tmp_path), seed=3)
    out = tmp_path / 'result.json'
    pictures = tmp_path / 'pictures'
    evaluate.main(evaluate_argv(case, ['--verification', '--target_far', '0.05', '--filename',
                                       str(out), '--picture_dir', str(pictures)]))
    result = json.loads(out.read_text())['verification']
    assert sorted(os.listdir(pictures)) == ['cmc.png', 'distances.png', 'roc.png']
    # The pairs: all but the query identity's gallery images of the query camera.
    import excluders
    from tripletreid.csv_dataset import read_csv
    query, gallery = read_csv(case['query'][0]), read_csv(case['gallery'][0])
    with h5py.File(case['query'][1]) as f, h5py.File(case['gallery'][1]) as g:
        q, gl = f['emb'][()].astype(np.float64), g['emb'][()].astype(np.float64)
    distances = np.sqrt(((q[:, None] - gl[None]) ** 2).sum(-1))
    excluded = excluders.create('camera', gallery)(excluders.create('camera', gallery).keys(
        query))
    same = query.pids[:, None] == gallery.pids
    kept = ~excluded
    fpr, tpr, thresholds = roc_curve(same[kept], -distances[kept])
    got = np.c_[result['roc']['fpr'], result['roc']['tpr']]
    expected = np.c_[fpr, tpr]
    # Both are the corners of one curve: each of ours lies on scikit-learn's points.
    for point in got:
        assert np.isclose(expected, point, atol=1e-12).all(axis=1).any(), point
    assert result['num_positive_pairs'] == (same & kept).sum()
    entry = result['TAR_at_FAR']['0.05']
    assert entry['TAR'] == pytest.approx(tpr[fpr <= 0.05].max())


def run_search(argv):
    """search.main in-process; (exit code, stdout, stderr) as cli.run gives them."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            search.main(argv)
        except InputError as error:
            print(f'search.py: error: {error}', file=sys.stderr)
            code = 2
        except SystemExit as exit:
            code = exit.code
    return code, out.getvalue(), err.getvalue()


def test_commands_on_embeddings_and_bad_input(tmp_path, monkeypatch):
    case = labelled_case(str(tmp_path), seed=4, n_query=12, n_gallery=40)
    index = str(tmp_path / 'index.h5')
    code, _, err = run_search(['index', '--embeddings', case['gallery'][1], '--dataset',
                               case['gallery'][0], '--output', index])
    assert code == 0, err
    code, out, err = run_search(['query', '--index', index, '--embeddings', case['query'][1],
                                 '--dataset', case['query'][0], '--top_k', '5',
                                 '--exclude_same_camera', '--threshold', '1.5'])
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == 'query,query_identity,rank,gallery_path,identity,camera,distance,match'
    with h5py.File(case['query'][1]) as f, h5py.File(case['gallery'][1]) as g:
        q, gl = f['emb'][()], g['emb'][()]
    cams = np.arange(40) % 2
    indices, distances = brute_force(gl, q, 'euclidean', 5, np.arange(12) % 2, cams)
    rows = [line.split(',') for line in lines[1:]]
    assert len(rows) == 12 * 5
    for row, g, d in zip(rows, indices.ravel(), distances.ravel()):
        assert row[3] == os.path.join(str(tmp_path), f'gallery/{g:03d}.jpg')
        assert float(row[6]) == d and row[7] == ('match' if d <= 1.5 else 'no match')
    # Bad input: one line, exit 2, nothing written.
    truncated = tmp_path / 'truncated.h5'
    truncated.write_bytes(open(index, 'rb').read()[:2000])
    query = ['--embeddings', case['query'][1], '--dataset', case['query'][0]]
    before = sorted(os.listdir(tmp_path))
    monkeypatch.setitem(sys.modules, 'faiss', None)
    cases = [
        (['query', '--index', str(truncated), *query], 'not a readable index'),
        (['query', '--index', case['gallery'][1], *query], 'not a search index'),
        (['query', '--index', index, *query, '--top_k', '0'], "'0' is not a positive integer"),
        (['query', '--index', index, *query, '--threshold', 'near'], "'near' is not a number"),
        (['query', '--index', index, *query, '--backend', 'faiss'],
         r'pip install -e ".\[search\]"'),
        (['query', '--index', index, '--embeddings', case['gallery'][1], '--dataset',
          case['query'][0]], 'gallery.h5: 40 embeddings, but .*query.csv has 12 rows'),
    ]
    for argv, message in cases:
        code, _, err = run_search(argv)
        assert code == 2 and err.count('\n') == 1, (argv, err)
        assert __import__('re').search(message, err), (message, err)
    other = tmp_path / 'other.h5'
    write_embeddings(other, np.zeros((12, 6)), [f'query/{i:03d}.jpg' for i in range(12)])
    code, _, err = run_search(['add', '--index', index, '--embeddings', str(other),
                               '--dataset', case['query'][0]])
    assert code == 2 and 'holds 4-D embeddings, ' in err
    assert sorted(os.listdir(tmp_path)) == sorted(before + ['other.h5'])


def test_help_and_flag_errors_come_before_tensorflow():
    code = '''
import sys, runpy
sys.argv = ['search.py', 'query', '--index', 'x.h5', '--top_k', '0']
try:
    runpy.run_path('search.py', run_name='__main__')
except SystemExit as exit:
    print(exit.code, 'tensorflow' in sys.modules)
'''
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    assert result.stdout.split() == ['2', 'False'], result.stderr
    assert result.stderr.count('\n') == 1 and 'argument --top_k' in result.stderr


def test_commands_with_the_model(experiment, tmp_path):
    """index from images and from shards agree; query a folder and a file; add; another
    model's embeddings are refused; an unreadable query image is named; the picture."""
    root, csv_path, folder, _ = experiment
    shards = []
    for part in ('1/2', '2/2'):
        name = f'shard{part[0]}.h5'
        embed.main(['--experiment_root', root, '--dataset', csv_path, '--image_root', folder,
                    '--filename', name, '--quiet', '--shard', part, '--loading_threads', '2'])
        shards.append(os.path.join(root, name))
    from_shards, from_images = str(tmp_path / 'a.h5'), str(tmp_path / 'b.h5')
    run = [['index', '--embeddings', *shards[::-1], '--dataset', csv_path, '--image_root',
            folder, '--output', from_shards],
           ['index', '--experiment_root', root, '--images', csv_path, '--image_root', folder,
            '--output', from_images, '--quiet', '--loading_threads', '2']]
    for argv in run:
        code, _, err = run_search(argv)
        assert code == 0, err
    a, b = search_index.read(from_shards), search_index.read(from_images)
    np.testing.assert_allclose(a.emb, b.emb, rtol=1e-5, atol=1e-6)
    assert list(a.paths) == list(b.paths) and a.fingerprint == b.fingerprint
    assert a.fingerprint['checkpoint_step'] == 3 and a.fingerprint['input_size'] == [32, 16]
    # Query a folder (its images are the gallery's: each finds itself first, at distance 0).
    pictures = tmp_path / 'pictures'
    pictures.mkdir()
    out = tmp_path / 'results.json'
    code, _, err = run_search(['query', '--index', from_images, '--images', folder, '--top_k',
                               '3', '--output', str(out), '--picture_dir', str(pictures),
                               '--loading_threads', '2'])
    assert code == 0, err
    answers = json.loads(out.read_text())
    assert len(answers) == len(a)
    for answer in answers:
        assert answer['results'][0]['gallery_path'] == answer['query']
        assert answer['results'][0]['distance'] == pytest.approx(0, abs=1e-3)
    assert os.listdir(pictures) == ['ranked_list.png']
    # Add two images; the index grows, atomically rewritten.
    code, _, err = run_search(['add', '--index', from_images, '--images',
                               os.path.join(folder, 'id00_0.jpg'),
                               os.path.join(folder, 'id01_0.jpg'), '--loading_threads', '2'])
    assert code == 0, err
    assert len(search_index.read(from_images)) == len(a) + 2
    # Another model's embeddings (checkpoint-0) are refused.
    embed.main(['--experiment_root', root, '--dataset', csv_path, '--image_root', folder,
                '--filename', 'step0.h5', '--quiet', '--checkpoint', 'checkpoint-0'])
    code, _, err = run_search(['add', '--index', from_images, '--embeddings',
                               os.path.join(root, 'step0.h5'), '--dataset', csv_path])
    assert code == 2 and 'is the index of another model' in err and 'checkpoint_step 3' in err
    # An unreadable query image is named.
    broken = tmp_path / 'broken.jpg'
    broken.write_bytes(b'\xff\xd8\xff not really')
    code, _, err = run_search(['query', '--index', from_images, '--images', str(broken)])
    last = err.strip().splitlines()[-1]  # after the crop-views warning of inference
    assert code == 2 and last.startswith('search.py: error: ') and str(broken) in last
