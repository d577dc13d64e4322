"""embed.py: every test-time augmentation mode, the HDF5 layout, and its refusals."""
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import ROOT

import embed
import train
from tripletreid.checkpoints import latest_checkpoint, restore_model
from tripletreid.errors import InputError
from tripletreid import pipeline
from tripletreid.model import build_model

CROPS = ['center', 'top_left', 'top_right', 'bottom_left', 'bottom_right']


def run_embed(experiment, filename, *flags):
    root, csv_path, _, _ = experiment
    embed.main(['--experiment_root', root, '--dataset', csv_path, '--filename', filename,
                '--loading_threads', '2', '--batch_size', '7', '--quiet', *flags])
    with h5py.File(os.path.join(root, filename), 'r') as f:
        return {key: f[key][()] for key in f}


def reference_views(experiment, size, transform):
    """The model applied to images cropped / mirrored here by plain numpy slicing."""
    _, _, folder, model = experiment
    names = [line.split(',')[1].strip() for line in open(experiment[1])]
    images = np.stack([pipeline.load_image(os.path.join(folder, n), size).numpy()
                       for n in names])
    return model(np.stack([transform(image) for image in images]), training=False).numpy()


def test_plain_resize(experiment):
    out = run_embed(experiment, 'plain.h5')
    assert set(out) == {'emb', 'augmentation_types', 'paths'}
    assert list(out['augmentation_types']) == [b'original_resize']
    np.testing.assert_allclose(out['emb'], reference_views(experiment, (32, 16), lambda x: x),
                               rtol=1e-4, atol=1e-5)


def test_flip_and_five_crops_are_true_mirrors_and_crops(experiment):
    out = run_embed(experiment, 'five.h5', '--flip_augment', '--crop_augment', 'five',
                    '--aggregator', 'mean')
    names = [n.decode() for n in out['augmentation_types']]
    assert names == [f'original_{c}' for c in CROPS] + [f'original_flip_{c}' for c in CROPS]
    assert out['emb_aug'].shape == (10, 12, 8) and out['emb'].shape == (12, 8)
    # Crop offsets in a 40x20 image for 32x16: margins 8 and 4; the centre starts at (4, 2).
    offsets = {'center': (4, 2), 'top_left': (0, 0), 'top_right': (0, 4),
               'bottom_left': (8, 0), 'bottom_right': (8, 4)}
    for v, name in enumerate(names):
        y, x = offsets[name.split('_', 2)[-1] if 'flip' in name else name.split('_', 1)[1]]
        flip = 'flip' in name
        expected = reference_views(
            experiment, (40, 20),
            lambda im, flip=flip, y=y, x=x: (im[:, ::-1] if flip else im)[y:y + 32, x:x + 16])
        np.testing.assert_allclose(out['emb_aug'][v], expected, rtol=1e-4, atol=1e-5,
                                   err_msg=name)
    np.testing.assert_allclose(out['emb'], out['emb_aug'].mean(axis=0), rtol=1e-6)


def test_center_and_avgpool(experiment):
    center = run_embed(experiment, 'center.h5', '--crop_augment', 'center')
    assert list(center['augmentation_types']) == [b'original_center']
    np.testing.assert_allclose(
        center['emb'], reference_views(experiment, (40, 20), lambda im: im[4:36, 2:18]),
        rtol=1e-4, atol=1e-5)
    pooled = run_embed(experiment, 'avgpool.h5', '--crop_augment', 'avgpool', '--flip_augment',
                       '--aggregator', 'normalized_mean')
    assert [n.decode() for n in pooled['augmentation_types']] == ['original_avgpool',
                                                                  'original_flip_avgpool']
    np.testing.assert_allclose(pooled['emb_aug'][1],
                               reference_views(experiment, (40, 20), lambda im: im[:, ::-1]),
                               rtol=1e-4, atol=1e-5)
    mean = pooled['emb_aug'].mean(axis=0)
    np.testing.assert_allclose(pooled['emb'], mean / np.linalg.norm(mean, axis=1, keepdims=True),
                               rtol=1e-5)


def test_embedding_counts_images_not_views(experiment, capsys):
    from tripletreid import experiment as experiments, inference
    root, csv_path, folder, model = experiment
    spec, _ = experiments.read_experiment(root)
    names = [line.split(',')[1].strip() for line in open(csv_path)]
    paths = [os.path.join(folder, name) for name in names]
    emb = inference.embed(model, paths, spec, inference.Views(flip=True, crop='five'),
                          batch_size=7)
    assert emb.shape[:2] == (10, len(paths))
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith(f'Embedding (10 views each): {len(paths)}/{len(paths)} images')


def test_crop_warning_names_the_flag_that_fixes_it(capsys):
    from tripletreid import inference
    inference.check_views(inference.Views(flip=True), 'mean', trained_crop=True)
    warning = capsys.readouterr().err
    assert 'add --crop_augment five' in warning and '+14 mAP' in warning
    inference.check_views(inference.Views(crop='center'), None, trained_crop=False)
    assert 'leave out --crop_augment' in capsys.readouterr().err
    inference.check_views(inference.Views(flip=True, crop='five'), 'mean', trained_crop=True)
    inference.check_views(inference.Views(), None, trained_crop=False)
    assert capsys.readouterr().err == ''


@pytest.mark.parametrize('flags, message', [
    (['--flip_augment'], 'choose how to combine them with --aggregator'),
    (['--aggregator', 'mean'], '--aggregator needs several views'),
    (['--crop_augment', 'five'], '5 views per image'),
])
def test_aggregator_required_exactly_with_several_views(experiment, flags, message):
    root, csv_path, _, _ = experiment
    with pytest.raises(InputError, match=message):
        embed.main(['--experiment_root', root, '--dataset', csv_path, '--filename', 'x.h5',
                    '--quiet', *flags])


def test_existing_file_is_kept_and_cli_errors_are_one_line(experiment):
    root, csv_path, _, _ = experiment
    target = os.path.join(root, 'kept.h5')
    with open(target, 'w') as f:
        f.write('precious')
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'embed.py'), '--experiment_root',
                             root, '--dataset', csv_path, '--filename', 'kept.h5'],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f'embed.py: error: {target} exists already; pass --overwrite to replace it')
    assert open(target).read() == 'precious'


def test_checkpoint_of_another_architecture_is_refused(experiment, tmp_path):
    import json
    import shutil
    root = str(tmp_path / 'other')
    shutil.copytree(experiment[0], root)
    args_file = os.path.join(root, 'args.json')
    stored = json.load(open(args_file))
    stored['head_name'] = 'direct'
    json.dump(stored, open(args_file, 'w'))
    with pytest.raises(InputError, match='does not fit the model of args.json'):
        embed.main(['--experiment_root', root, '--dataset', experiment[1], '--quiet'])


def test_embedding_uses_the_last_stride_of_training(tmp_path, colour_dataset):
    csv_path, folder = colour_dataset
    root = str(tmp_path / 'exp')
    train.main(['--experiment_root', root, '--train_set', csv_path, '--image_root', folder,
                '--model_name', 'resnet_v1_50', '--last_stride', '1', '--embedding_dim', '8',
                '--batch_p', '2', '--batch_k', '2', '--net_input_height', '64',
                '--net_input_width', '32', '--train_iterations', '1', '--loading_threads', '2',
                '--seed', '0'])
    embed.main(['--experiment_root', root, '--dataset', csv_path, '--quiet'])
    with h5py.File(os.path.join(root, 'train_embeddings.h5'), 'r') as f:
        emb = f['emb'][:3]
    names = [line.split(',')[1].strip() for line in open(csv_path)][:3]
    images = np.stack([pipeline.load_image(os.path.join(folder, n), (64, 32)).numpy()
                       for n in names])
    model = build_model('resnet_v1_50', 'fc1024', 8, last_stride=1)
    restore_model(model, latest_checkpoint(root))
    expected = model(images, training=False).numpy()  # entries up to 700: rounding scales
    np.testing.assert_allclose(emb, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    # The network with the official stride is another graph: its checkpoint does not fit.
    with pytest.raises(InputError, match='does not fit'):
        restore_model(build_model('resnet_v1_50', 'fc1024', 8), latest_checkpoint(root))
