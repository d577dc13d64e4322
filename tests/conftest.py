"""Shared fixtures: tiny image datasets made on the fly, and the real crops when present."""
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

CUHK03 = os.path.join(ROOT, '..', 'shared', 'data', 'cuhk03-detected')


def write_colour_dataset(folder, num_ids=8, per_id=4, size=(32, 16), seed=0):
    """Identities are noisy images of one colour each: learnable in a few steps.

    Returns the CSV path; image paths in it are relative to `folder`.
    """
    import cv2
    rng = np.random.default_rng(seed)
    rows = []
    for pid in range(num_ids):
        colour = rng.integers(0, 256, 3)
        for j in range(per_id):
            image = np.clip(colour + rng.normal(0, 40, size + (3,)), 0, 255).astype(np.uint8)
            name = f'id{pid:02d}_{j}.jpg'
            cv2.imwrite(os.path.join(folder, name), image)
            rows.append(f'person {pid},{name}\n')
    csv_path = os.path.join(folder, 'train.csv')
    with open(csv_path, 'w') as f:
        f.writelines(rows)
    return csv_path


@pytest.fixture
def colour_dataset(tmp_path):
    folder = tmp_path / 'images'
    folder.mkdir()
    return write_colour_dataset(str(folder)), str(folder)


def cuhk03_csv(tmp_path, split='train', max_ids=None):
    """A CSV of the shared CUHK03 crops (`identity,path,camera`), or skip without them."""
    folder = os.path.join(CUHK03, split)
    if not os.path.isdir(folder):
        pytest.skip('../shared/data/cuhk03-detected is not here')
    names = sorted(n for n in os.listdir(folder) if n.endswith('.jpg'))
    if max_ids is not None:
        names = [n for n in names if int(n[:4]) < max_ids]
    csv_path = os.path.join(str(tmp_path), f'cuhk03_{split}.csv')
    with open(csv_path, 'w') as f:
        for name in names:
            f.write(f'{name[:4]},{name},{1 if int(name[5:7]) < 5 else 2}\n')
    return csv_path, folder


@pytest.fixture(scope='module')
def experiment(tmp_path_factory):
    """A lunet experiment trained for 3 steps with crop augmentation (40x20 -> 32x16).

    Returns (experiment root, training CSV, image folder, the model restored from its newest
    checkpoint). Module-scoped: the tests of a module may add files to the experiment root.
    """
    import train
    from tripletreid.checkpoints import latest_checkpoint, restore_model
    from tripletreid.model import build_model
    folder = tmp_path_factory.mktemp('images')
    csv_path = write_colour_dataset(str(folder), num_ids=4, per_id=3)
    root = str(tmp_path_factory.mktemp('exp') / 'exp')
    train.main(['--experiment_root', root, '--train_set', csv_path, '--image_root', str(folder),
                '--model_name', 'lunet', '--head_name', 'fc1024', '--embedding_dim', '8',
                '--batch_p', '2', '--batch_k', '2', '--net_input_height', '32',
                '--net_input_width', '16', '--pre_crop_height', '40', '--pre_crop_width', '20',
                '--crop_augment', '--flip_augment', '--train_iterations', '3',
                '--loading_threads', '2', '--seed', '3'])
    model = build_model('lunet', 'fc1024', 8)
    restore_model(model, latest_checkpoint(root))
    return root, csv_path, str(folder), model
