"""export.py: both formats load in a clean interpreter without this project and embed raw
uint8 images of any size exactly as embed.py embeds the same image files."""
import json
import os
import subprocess
import sys
import zipfile

import cv2
import h5py
import numpy as np
import pytest

from conftest import ROOT

import embed
import export
from tripletreid import exporting
from tripletreid.errors import InputError

# Images of several sizes (smaller and larger than the 32x16 input); the first two, of the
# same size, are one batch, to show a batch dimension works.
SIZES = [(50, 23), (50, 23), (32, 16), (17, 9), (120, 70)]

# Run with `python -I` (no PYTHONPATH, no user site, neither the script's folder nor the cwd on
# sys.path) from a temporary folder: nothing of this project can be imported.
LOADER = r'''
import json, sys
import numpy as np
form, model_path, batches_path, out_path, project = sys.argv[1:]
batches = np.load(batches_path)
info = {}
if form == 'savedmodel':
    import tensorflow as tf
    serve = tf.saved_model.load(model_path).signatures['serving_default']
    info['inputs'] = {name: [spec.dtype.name, spec.shape.as_list()]
                      for name, spec in serve.structured_input_signature[1].items()}
    info['outputs'] = sorted(serve.structured_outputs)
    run = lambda batch: serve(images=tf.constant(batch))['embeddings'].numpy()
else:
    import keras
    model = keras.models.load_model(model_path)
    run = lambda batch: np.asarray(model(batch))  # a plain call: no `training` given
emb = np.concatenate([run(batches[key]) for key in sorted(batches.files)])
info['project_modules'] = sorted(name for name, module in sys.modules.items()
                                 if (getattr(module, '__file__', None) or '').startswith(project))
info['project_on_path'] = [entry for entry in sys.path if entry.startswith(project)]
np.save(out_path, emb)
with open(out_path + '.json', 'w') as f:
    json.dump(info, f)
'''


def write_images(folder):
    """PNG files (lossless, so decoding gives these exact pixels) and a CSV for embed.py."""
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, size + (3,), dtype=np.uint8) for size in SIZES]
    csv_path = os.path.join(folder, 'images.csv')
    with open(csv_path, 'w') as f:
        for i, image in enumerate(images):
            cv2.imwrite(os.path.join(folder, f'{i}.png'), image[..., ::-1])  # OpenCV is BGR
            f.write(f'person,{i}.png\n')
    return images, csv_path


def start_loader(form, model_path, batches_path, folder):
    env = {key: value for key, value in os.environ.items() if not key.startswith('PYTHON')}
    env['TF_CPP_MIN_LOG_LEVEL'] = '2'
    out_path = os.path.join(folder, f'{form}_emb.npy')
    process = subprocess.Popen(
        [sys.executable, '-I', '-c', LOADER, form, model_path, batches_path, out_path, ROOT],
        cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, out_path


@pytest.fixture(scope='module')
def exported(experiment, tmp_path_factory):
    """Both exports of the experiment, their embeddings of the images in a clean interpreter
    (the two run side by side), and embed.py's embeddings of the same files."""
    root = experiment[0]
    folder = str(tmp_path_factory.mktemp('export'))
    model_path = os.path.join(folder, 'model')
    export.main(['--experiment_root', root, '--output', model_path, '--format', 'both'])
    images, csv_path = write_images(folder)
    batches_path = os.path.join(folder, 'batches.npz')
    np.savez(batches_path, b0=np.stack(images[:2]), **{f'b{i}': image[None] for i, image in
                                                       enumerate(images[2:], start=1)})
    loaders = {'savedmodel': start_loader('savedmodel', model_path, batches_path, folder),
               'keras': start_loader('keras', model_path + '.keras', batches_path, folder)}
    embed.main(['--experiment_root', root, '--dataset', csv_path, '--image_root', folder,
                '--filename', 'export_reference.h5', '--batch_size', '8', '--quiet'])
    with h5py.File(os.path.join(root, 'export_reference.h5'), 'r') as f:
        reference = f['emb'][()]
    results = {}
    for form, (process, out_path) in loaders.items():
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
        with open(out_path + '.json') as f:
            results[form] = np.load(out_path), json.load(f)
    return {'folder': folder, 'model': model_path, 'reference': reference, **results}


@pytest.mark.parametrize('form', ['savedmodel', 'keras'])
def test_embeddings_match_embed_py(exported, form):
    emb, _ = exported[form]
    reference = exported['reference']
    assert emb.shape == reference.shape == (len(SIZES), 8)
    np.testing.assert_allclose(emb, reference, rtol=1e-5, atol=1e-5 * np.abs(reference).max())


@pytest.mark.parametrize('form', ['savedmodel', 'keras'])
def test_loaded_without_the_project(exported, form):
    _, info = exported[form]
    assert info['project_modules'] == [] and info['project_on_path'] == []


def test_savedmodel_signature_takes_uint8_of_any_size(exported):
    _, info = exported['savedmodel']
    assert info['inputs'] == {'images': ['uint8', [None, None, None, 3]]}
    assert info['outputs'] == ['embeddings']


def test_keras_file_holds_core_keras_objects_only(exported):
    with zipfile.ZipFile(exported['model'] + '.keras') as archive:
        config = json.loads(archive.read('config.json'))
    found = set()

    def walk(node):
        if isinstance(node, dict):
            if 'class_name' in node and node.get('module'):
                found.add((node['module'], node['class_name'], node.get('registered_name')))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    assert ('keras.layers', 'Resizing', None) in found
    for module, class_name, registered in found:
        assert module.split('.')[0] == 'keras', (module, class_name)
        assert registered in (None, class_name) and class_name != 'Lambda', class_name


def test_writes_leave_no_temporary_files(exported, experiment, tmp_path, monkeypatch):
    assert not [name for name in os.listdir(exported['folder']) if name.startswith('.')]

    def fail(model, path):
        open(path, 'w').close()
        raise KeyboardInterrupt

    monkeypatch.setitem(exporting.WRITERS, 'keras', fail)
    target = str(tmp_path / 'broken.keras')
    with pytest.raises(KeyboardInterrupt):
        export.main(['--experiment_root', experiment[0], '--output', target])
    assert os.listdir(tmp_path) == []


def test_refuses_to_overwrite_unless_asked(experiment, tmp_path):
    target = tmp_path / 'model'
    target.mkdir()
    (target / 'precious').write_text('kept')
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'export.py'),
                             '--experiment_root', experiment[0], '--output', str(target)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f'export.py: error: {target} exists already; pass --overwrite to replace it')
    assert (target / 'precious').read_text() == 'kept'
    export.main(['--experiment_root', experiment[0], '--output', str(target), '--overwrite',
                 '--checkpoint', 'checkpoint-0'])
    assert 'saved_model.pb' in os.listdir(target) and 'precious' not in os.listdir(target)
    assert os.listdir(tmp_path) == ['model']


def test_input_errors(experiment, tmp_path):
    root = experiment[0]
    empty = tmp_path / 'empty'
    empty.mkdir()
    untrained = tmp_path / 'untrained'
    untrained.mkdir()
    (untrained / 'args.json').write_text(open(os.path.join(root, 'args.json')).read())
    out = str(tmp_path / 'out')
    cases = [
        (['--experiment_root', str(tmp_path / 'nothing')], 'no such experiment directory'),
        (['--experiment_root', str(empty)], r'args.json: no such file'),
        (['--experiment_root', str(untrained)], 'no checkpoint found'),
        (['--experiment_root', root, '--checkpoint', 'checkpoint-9'],
         r'checkpoint-9: no such checkpoint \(found: checkpoint-0, checkpoint-3\)'),
        (['--experiment_root', root, '--format', 'keras'], 'a Keras file must end in .keras'),
        (['--experiment_root', root, '--output', out + '.keras', '--format', 'both'],
         'names the SavedModel directory, without .keras'),
        (['--experiment_root', root, '--output', str(tmp_path / 'no' / 'model')],
         'no such directory'),
    ]
    for flags, message in cases:
        argv = flags if '--output' in flags else flags + ['--output', out]
        with pytest.raises(InputError, match=message):
            export.main(argv)
    assert sorted(os.listdir(tmp_path)) == ['empty', 'untrained']
