"""export.py --format tflite / onnx: the exports check themselves against embed.py, load in a
clean interpreter with their runtime alone (examples/run_exported.py), embed image files as
embed.py does and search search.py's index by brute force; refusals leave nothing behind."""
import csv
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import ROOT

import embed
import export
from tripletreid import search_index
from tripletreid.errors import InputError

pytest.importorskip('ai_edge_litert')
pytest.importorskip('onnxruntime')
pytest.importorskip('tf2onnx')

SIZES = [(32, 16), (50, 23), (17, 9), (120, 70)]  # network input 32x16, and others


def write_pngs(folder, seed=5):
    import cv2
    rng = np.random.default_rng(seed)
    os.makedirs(folder)
    rows = []
    for i, size in enumerate(SIZES):
        cv2.imwrite(os.path.join(folder, f'q{i}.png'),
                    rng.integers(0, 256, size + (3,), dtype=np.uint8))
        rows.append(f'person,q{i}.png\n')
    csv_path = folder + '.csv'
    with open(csv_path, 'w') as f:
        f.writelines(rows)
    return csv_path


def reference(root, csv_path, image_root, name):
    embed.main(['--experiment_root', root, '--dataset', csv_path, '--image_root', image_root,
                '--filename', name, '--batch_size', '8', '--quiet'])
    with h5py.File(os.path.join(root, name), 'r') as f:
        return f['emb'][()]


@pytest.fixture(scope='module')
def exported(experiment, tmp_path_factory):
    """A float32 tflite and an onnx export (checked on PNG files), an int8 tflite export
    (calibrated, checked and scored on the training images, solid colours, far from the
    synthetic default images), an index of
    the training images and embed.py's embeddings of the PNGs."""
    root, train_csv, train_folder, _ = experiment
    folder = str(tmp_path_factory.mktemp('runtimes'))
    queries = os.path.join(folder, 'queries')
    queries_csv = write_pngs(queries)
    paths = {}
    for name, flags in [('model.tflite', []), ('model.onnx', []),
                        ('int8.tflite', ['--quantize', 'int8', '--representative', train_csv,
                                         '--image_root', train_folder, '--verify_query',
                                         train_csv, '--verify_gallery', train_csv,
                                         '--verify_excluder', 'diagonal',
                                         '--verify_images', train_csv])]:
        paths[name] = os.path.join(folder, name)
        if '--image_root' not in flags:
            flags += ['--verify_images', queries_csv, '--image_root', queries]
        export.main(['--experiment_root', root, '--output', paths[name], *flags])
    gallery = reference(root, train_csv, train_folder, 'runtimes_gallery.h5')
    with open(train_csv) as f:
        rows = list(csv.reader(f))
    index_path = os.path.join(folder, 'gallery.h5')
    search_index.write(index_path, search_index.Index(
        gallery, np.array([os.path.join(train_folder, r[1]) for r in rows]),
        np.array([r[0] for r in rows]), np.array([''] * len(rows)), 'euclidean', False, None))
    return {'folder': folder, 'paths': paths, 'queries': queries, 'index': index_path,
            'reference': reference(root, queries_csv, queries, 'runtimes_queries.h5'),
            'gallery': gallery, 'gallery_paths': [os.path.join(train_folder, r[1])
                                                  for r in rows]}


def run_example(model_path, exported, name):
    """examples/run_exported.py under `python -I` from a temporary folder: nothing of this
    project can be imported."""
    env = {key: value for key, value in os.environ.items() if not key.startswith('PYTHON')}
    folder = exported['folder']
    script = os.path.join(folder, 'run_exported.py')
    with open(os.path.join(ROOT, 'examples', 'run_exported.py')) as source, \
            open(script, 'w') as copy:
        copy.write(source.read())
    answers, emb = os.path.join(folder, name + '.csv'), os.path.join(folder, name + '.npy')
    result = subprocess.run(
        [sys.executable, '-I', script, model_path, exported['queries'], '--index',
         exported['index'], '--top_k', '3', '--output', answers, '--embeddings', emb],
        cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with open(answers) as f:
        return list(csv.DictReader(f)), np.load(emb)


@pytest.mark.parametrize('name', ['model.tflite', 'model.onnx'])
def test_example_embeds_as_embed_py_and_searches_the_index(exported, name):
    answers, emb = run_example(exported['paths'][name], exported, name)
    reference = exported['reference']
    assert emb.shape == reference.shape == (len(SIZES), 8)
    np.testing.assert_allclose(emb, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())
    # Brute force in float64 on embed.py's embeddings, independently of the example.
    distances = np.linalg.norm(reference[:, None].astype(np.float64)
                               - exported['gallery'][None], axis=-1)
    assert len(answers) == 3 * len(SIZES)
    for q in range(len(SIZES)):
        expected = np.argsort(distances[q], kind='stable')[:3]
        got = [row for row in answers if row['query'] == f'q{q}.png']
        assert [row['gallery_path'] for row in got] == [exported['gallery_paths'][i]
                                                        for i in expected]
        np.testing.assert_allclose([float(row['distance']) for row in got],
                                   distances[q, expected], rtol=1e-4)


def test_int8_export_runs_and_stays_near(exported):
    answers, emb = run_example(exported['paths']['int8.tflite'], exported, 'int8')
    reference = exported['reference']
    difference = np.linalg.norm(emb - reference, axis=1) / np.linalg.norm(reference, axis=1)
    assert difference.max() < 0.5 and len(answers) == 3 * len(SIZES)
    assert os.path.getsize(exported['paths']['int8.tflite']) < \
        0.5 * os.path.getsize(exported['paths']['model.tflite'])


def test_checks_print_difference_and_retrieval(experiment, tmp_path, capsys, monkeypatch):
    """A quantised export beyond its stated tolerance is kept, with a warning."""
    from tripletreid import export_checks
    monkeypatch.setitem(export_checks.TOLERANCES, 'float16', 1e-9)
    export.main(['--experiment_root', experiment[0], '--output', str(tmp_path / 'm.tflite'),
                 '--quantize', 'float16', '--verify_query', experiment[1], '--verify_gallery',
                 experiment[1], '--verify_excluder', 'diagonal', '--image_root',
                 experiment[2]])
    lines = capsys.readouterr().err.splitlines()
    assert any(line.startswith('Verified the tflite export (float16) on 8 synthetic images: '
                               'largest relative difference from embed.py ')
               and line.endswith('(tolerance for float16: 1e-09)') for line in lines), lines
    assert '  Warning: beyond the tolerance for float16; compare the mAP with --verify_query ' \
        'and --verify_gallery before using it' in lines
    assert any(line.startswith('  mAP ') and '(original ' in line for line in lines), lines
    assert os.listdir(tmp_path) == ['m.tflite']


def test_refused_export_leaves_nothing(experiment, tmp_path):
    with pytest.raises(InputError, match=r'differs from embed.py by up to .* above the '
                                         r'tolerance of 1e-12 for float32: refused'):
        export.main(['--experiment_root', experiment[0], '--output',
                     str(tmp_path / 'm.onnx'), '--max_difference', '1e-12'])
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('format_, modules, package', [
    ('tflite', ['ai_edge_litert', 'ai_edge_litert.interpreter'], 'ai-edge-litert'),
    ('onnx', ['onnxruntime'], 'onnxruntime'),
    ('onnx', ['tf2onnx'], 'tf2onnx')])
def test_missing_runtime_is_one_line_naming_the_extra(experiment, tmp_path, monkeypatch,
                                                       format_, modules, package):
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    message = f'--format {format_} needs {package}: pip install -e ".[export]"'
    with pytest.raises(InputError, match=message.replace('[', r'\[').replace('.', r'\.')):
        export.main(['--experiment_root', experiment[0], '--output',
                     str(tmp_path / f'm.{format_}')])
    assert os.listdir(tmp_path) == []


def test_bad_quantisation_flags(experiment, tmp_path):
    root, train_csv, _, _ = experiment
    out = str(tmp_path / 'm')
    cases = [
        (['--output', out + '.onnx', '--quantize', 'float16'],
         '--quantize float16 applies to --format tflite only'),
        (['--output', out, '--quantize', 'dynamic_int8'], 'applies to --format tflite only'),
        (['--output', out + '.tflite', '--quantize', 'int8'], 'int8 needs --representative'),
        (['--output', out + '.tflite', '--representative', train_csv],
         '--representative needs --quantize int8'),
        (['--output', out + '.tflite', '--format', 'onnx'], 'an ONNX file must end in .onnx'),
        (['--output', out + '.tflite', '--verify_query', train_csv],
         '--verify_query and --verify_gallery go together'),
    ]
    for flags, message in cases:
        with pytest.raises(InputError, match=message):
            export.main(['--experiment_root', root, *flags])
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'export.py'),
                             '--experiment_root', root, '--output', out + '.tflite',
                             '--quantize', 'int8'], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert 'tensorflow' not in result.stderr.lower()
    assert os.listdir(tmp_path) == []
