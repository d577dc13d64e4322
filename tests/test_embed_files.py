"""embed_files.py: a plain list of image files in, embed.py's embeddings of them out (CSV or
HDF5), and one-line errors naming the list's line."""
import csv
import io
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import ROOT

import embed
import embed_files
from tripletreid.errors import InputError


def embed_py(experiment, filename, *flags):
    """embed.py's output for the experiment's training CSV: the reference."""
    root, csv_path, folder, _ = experiment
    embed.main(['--experiment_root', root, '--dataset', csv_path, '--image_root', folder,
                '--filename', filename, '--batch_size', '5', '--quiet', *flags])
    with h5py.File(os.path.join(root, filename), 'r') as f:
        return {key: f[key][()] for key in f}


def image_names(experiment):
    return [line.split(',')[1].strip() for line in open(experiment[1])]


def test_stdin_to_stdout_csv_matches_embed_py(experiment):
    """Relative paths from stdin, with blank lines; one `path,v1,...` line per image."""
    root, _, folder, _ = experiment
    names = image_names(experiment)
    shutil.copy(os.path.join(folder, names[0]), os.path.join(folder, 'with, comma.jpg'))
    listed = names + ['with, comma.jpg']
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'embed_files.py'), '-', '--experiment_root', root,
         '--batch_size', '5', '--quiet'],
        input='\n'.join(listed[:3]) + '\n\n' + '\n'.join(listed[3:]) + '\n', cwd=folder,
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert [row[0] for row in rows] == listed
    emb = np.array([[float(value) for value in row[1:]] for row in rows])
    reference = embed_py(experiment, 'files_plain.h5')['emb']
    np.testing.assert_allclose(emb, np.concatenate([reference, reference[:1]]), rtol=1e-5,
                               atol=1e-6)


def test_hdf5_with_test_time_augmentation(experiment, tmp_path):
    folder = experiment[2]
    paths = [os.path.join(folder, name) for name in image_names(experiment)]
    (tmp_path / 'list.txt').write_text('\n'.join(paths) + '\n')
    flags = ['--flip_augment', '--crop_augment', 'five', '--aggregator', 'normalized_mean']
    output = str(tmp_path / 'emb.h5')
    embed_files.main([str(tmp_path / 'list.txt'), '--experiment_root', experiment[0],
                      '--output', output, '--batch_size', '5', '--quiet', *flags])
    with h5py.File(output, 'r') as f:
        got = {key: f[key][()] for key in f}
    reference = embed_py(experiment, 'files_five.h5', *flags)
    assert set(got) == {'emb', 'emb_aug', 'augmentation_types', 'paths'}
    assert [p.decode() for p in got['paths']] == paths
    assert list(got['augmentation_types']) == list(reference['augmentation_types'])
    for key in ('emb', 'emb_aug'):
        np.testing.assert_allclose(got[key], reference[key], rtol=1e-5, atol=1e-6)


def test_csv_file_output_is_refused_when_present(experiment, tmp_path):
    folder = experiment[2]
    names = image_names(experiment)[:2]
    (tmp_path / 'list.txt').write_text('\n'.join(os.path.join(folder, n) for n in names))
    output = tmp_path / 'emb.csv'
    argv = [str(tmp_path / 'list.txt'), '--experiment_root', experiment[0], '--output',
            str(output), '--quiet']
    embed_files.main(argv)
    lines = output.read_text().splitlines()
    assert [line.split(',')[0] for line in lines] == [os.path.join(folder, n) for n in names]
    np.testing.assert_allclose(np.array([line.split(',')[1:] for line in lines], float),
                               embed_py(experiment, 'files_csv.h5')['emb'][:2], rtol=1e-5,
                               atol=1e-6)
    with pytest.raises(InputError, match='exists already; pass --overwrite'):
        embed_files.main(argv)
    assert sorted(os.listdir(tmp_path)) == ['emb.csv', 'list.txt']  # no temporary file left


@pytest.mark.parametrize('content, message', [
    (b'good.jpg\n\nmissing.jpg\n', r'list.txt:3: image missing.jpg is missing'),
    (b'good.jpg\nnot_image.jpg\n', r'list.txt:2: image not_image.jpg is not a JPEG'),
    (b'good.jpg\ngood.jpg\ncorrupt.jpg\n', r'list.txt:3: image corrupt.jpg cannot be decoded'),
    (b'\n  \n', r'list.txt: no image paths in the list'),
    (b'good.jpg\n\xff.jpg\n', r'list.txt:2: not valid UTF-8'),
])
def test_bad_list_lines(experiment, tmp_path, monkeypatch, content, message):
    shutil.copy(os.path.join(experiment[2], image_names(experiment)[0]), tmp_path / 'good.jpg')
    (tmp_path / 'not_image.jpg').write_text('hello')
    (tmp_path / 'corrupt.jpg').write_bytes(b'\xff\xd8\xff\xe0' + bytes(100))
    (tmp_path / 'list.txt').write_bytes(content)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=message):
        embed_files.main(['list.txt', '--experiment_root', experiment[0], '--quiet'])


def test_missing_list_and_views_without_aggregator(experiment, tmp_path):
    with pytest.raises(InputError, match='nowhere.txt: No such file'):
        embed_files.main([str(tmp_path / 'nowhere.txt'), '--experiment_root', experiment[0]])
    with pytest.raises(InputError, match='choose how to combine them with --aggregator'):
        embed_files.main([str(tmp_path / 'nowhere.txt'), '--experiment_root', experiment[0],
                          '--flip_augment'])
