"""import_official.py: official TF1 training checkpoints become experiments embed.py uses.

The references are TF-slim graphs built as the official train.py builds them (backbone, head
under `tf.name_scope('head')`, Adam, global_step), with random weights and statistics, saved as
`checkpoint-<step>`; the embeddings of the imported experiment must match theirs.
"""
import json
import os
import shutil
import subprocess
import sys

import cv2
import h5py
import numpy as np
import pytest
import tensorflow as tf

import embed
import import_official
from helpers import slim_reference as ref
from tripletreid.checkpoints import (TrainingCheckpoints, complete_checkpoints,
                                     latest_checkpoint, restore_model)
from tripletreid.errors import InputError
from conftest import ROOT
from tripletreid import experiment, official_import, training
from tripletreid.model import build_model
from tripletreid.schedules import optimizer_of

TOLERANCE = 1e-4  # relative: max |ours - official| / max |official|
# args.json of the released Market-1501 run as its authors gave it (issue 36), at a small size.
OFFICIAL_ARGS = {
    'batch_k': 4, 'batch_p': 18, 'checkpoint_frequency': 1000, 'crop_augment': True,
    'decay_start_iteration': 15000, 'detailed_logs': False, 'embedding_dim': 128,
    'experiment_root': '/their/experiment', 'flip_augment': True, 'head_name': 'fc1024',
    'image_root': '/their/market1501', 'initial_checkpoint': '/their/resnet_v1_50.ckpt',
    'learning_rate': 0.0003, 'loading_threads': 8, 'loss': 'batch_hard', 'margin': 'soft',
    'metric': 'euclidean', 'model_name': 'resnet_v1_50', 'net_input_height': 64,
    'net_input_width': 32, 'pre_crop_height': 72, 'pre_crop_width': 36, 'resume': False,
    'train_iterations': 25000, 'train_set': 'data/market1501_train.csv',
}


def our_defaults():
    """train.py's defaults as args.json holds them (without the per-invocation flags)."""
    defaults = vars(experiment.build_train_parser().parse_args(['--experiment_root', 'x']))
    return {k: v for k, v in defaults.items() if k not in experiment.PER_RUN}


@pytest.fixture
def small_resnets(monkeypatch):
    ref.use_small_resnets(monkeypatch)


@pytest.fixture(scope='module')
def official(tmp_path_factory):
    """A small official resnet_v1_50 + fc1024 run: `checkpoint-25000`, args.json, images."""
    folder = tmp_path_factory.mktemp('official')
    images = ref.random_images(3, 64, 32, ref.RGB_MEAN, 8)
    checkpoint = str(folder / 'checkpoint-25000')
    expected = ref.save_reference(
        checkpoint, lambda x: ref.official_head(ref.resnet(x, units=ref.SMALL_UNITS), 'fc1024',
                                                128), images, optimizer=True)
    (folder / 'args.json').write_text(json.dumps(OFFICIAL_ARGS))
    with open(folder / 'query.csv', 'w') as f:
        for i, image in enumerate(images):  # PNG at the input size: exactly these pixels
            cv2.imwrite(str(folder / f'{i}.png'), image[..., ::-1].astype(np.uint8))
            f.write(f'{i},{i}.png\n')
    return checkpoint, str(folder), expected


def test_embed_reproduces_the_official_embeddings(official, small_resnets, tmp_path):
    checkpoint, folder, expected = official
    root = str(tmp_path / 'imported')
    import_official.main(['--checkpoint', checkpoint, '--experiment_root', root])
    embed.main(['--experiment_root', root, '--dataset', os.path.join(folder, 'query.csv'),
                '--image_root', folder, '--loading_threads', '2', '--quiet'])
    with h5py.File(os.path.join(root, 'query_embeddings.h5'), 'r') as f:
        assert ref.relative_difference(f['emb'][()], expected) < TOLERANCE


def test_the_experiment_has_the_official_flags_and_step(official, small_resnets, tmp_path):
    checkpoint, _, _ = official
    root = str(tmp_path / 'imported')
    import_official.main(['--checkpoint', checkpoint, '--experiment_root', root])
    with open(os.path.join(root, 'args.json')) as f:
        stored = json.load(f)
    # image_root names a folder of the machine it was trained on: not kept unless it exists.
    official = {k: v for k, v in OFFICIAL_ARGS.items() if k not in experiment.PER_RUN}
    assert stored == {**our_defaults(), **official, 'image_root': None, 'seed': stored['seed']}
    assert isinstance(stored['seed'], int)
    assert list(complete_checkpoints(root)) == [25000]
    # It restores as train.py's own checkpoints do, optimizer included (for --resume).
    args = experiment.resolve(experiment.build_train_parser(),
                              ['--experiment_root', root, '--resume'])
    model = build_model(args.model_name, args.head_name, args.embedding_dim)
    optimizer = optimizer_of(args)
    optimizer.build(model.trainable_variables)
    assert TrainingCheckpoints(root, model, optimizer).restore_latest() == 25000


def test_resume_continues_the_official_adam_state(official, small_resnets, tmp_path):
    """Adam's moments are the official `<variable>/Adam` and `/Adam_1`, and the step counter
    is the official step: the learning rate is the decayed one, 0.001 x 3e-4 at the last step
    of the paper's schedule (a fresh counter would train at 3e-4)."""
    checkpoint, _, _ = official
    root = str(tmp_path / 'imported')
    import_official.main(['--checkpoint', checkpoint, '--experiment_root', root])
    config = experiment.resolve(experiment.build_train_parser(),
                                ['--experiment_root', root, '--resume'])
    model = build_model(config.model_name, config.head_name, config.embedding_dim)
    optimizer = optimizer_of(config)
    optimizer.build(model.trainable_variables)
    TrainingCheckpoints(root, model, optimizer).restore_latest()
    assert int(optimizer.iterations) == 25000
    assert float(optimizer.learning_rate) == pytest.approx(3e-4 * 0.001, rel=1e-5)
    reader = tf.train.load_checkpoint(checkpoint)
    named = official_import.model_variables(model, 'test')
    trainable = [(v, name) for v, name in named if v.trainable]
    assert len(trainable) == len(model.trainable_variables)
    for variable, name in trainable:
        index = optimizer._get_variable_index(variable)
        np.testing.assert_array_equal(optimizer._momentums[index].numpy(),
                                      reader.get_tensor(name + '/Adam'), err_msg=name)
        np.testing.assert_array_equal(optimizer._velocities[index].numpy(),
                                      reader.get_tensor(name + '/Adam_1'), err_msg=name)


def test_without_adam_slots_resume_is_refused(small_resnets, tmp_path, capsys):
    checkpoint = str(tmp_path / 'run' / 'checkpoint-300')
    os.makedirs(os.path.dirname(checkpoint))
    images = ref.random_images(2, 64, 32, ref.RGB_MEAN, 8)
    ref.save_reference(checkpoint, lambda x: ref.official_head(
        ref.resnet(x, units=ref.SMALL_UNITS), 'direct', 16), images)
    root = str(tmp_path / 'imported')
    import_official.main(['--checkpoint', checkpoint, '--experiment_root', root,
                          '--head_name', 'direct', '--embedding_dim', '16'])
    assert 'holds no Adam moments' in capsys.readouterr().err
    with pytest.raises(InputError, match='holds no Adam moments: embed.py and export.py use '
                                         'it, train.py --resume cannot continue it'):
        training.train(experiment.resolve(experiment.build_train_parser(),
                                          ['--experiment_root', root, '--resume']),
                       None, np.zeros(2, int))


def test_without_args_json_the_official_defaults_and_the_flags_apply(small_resnets, tmp_path):
    """resnet_v1_101 with the `direct` head, as for a checkpoint that comes without args.json."""
    checkpoint = str(tmp_path / 'run' / 'checkpoint-300')
    os.makedirs(os.path.dirname(checkpoint))
    images = ref.random_images(2, 64, 32, ref.RGB_MEAN, 8)
    expected = ref.save_reference(checkpoint, lambda x: ref.official_head(
        ref.resnet(x, 'resnet_v1_101', ref.SMALL_UNITS), 'direct', 16), images)
    root = str(tmp_path / 'imported')
    import_official.main(['--checkpoint', checkpoint, '--experiment_root', root,
                          '--model_name', 'resnet_v1_101', '--head_name', 'direct',
                          '--embedding_dim', '16'])
    with open(os.path.join(root, 'args.json')) as f:
        stored = json.load(f)
    assert stored == {**our_defaults(), 'model_name': 'resnet_v1_101', 'head_name': 'direct',
                      'embedding_dim': 16, 'seed': stored['seed']}
    model = build_model('resnet_v1_101', 'direct', 16)
    restore_model(model, latest_checkpoint(root))
    assert ref.relative_difference(model(images), expected) < TOLERANCE


def write_args(folder, **changes):
    path = os.path.join(folder, 'changed_args.json')
    with open(path, 'w') as f:
        json.dump(dict(OFFICIAL_ARGS, **changes), f)
    return path


@pytest.mark.parametrize('flags, message', [
    (['--checkpoint', 'CKPT0'], r'--checkpoint .*checkpoint-0: no such checkpoint'),
    (['--model_name', 'resnet_v1_101'],
     r'does not fit resnet_v1_101 \+ fc1024 \(128-D\): no variable resnet_v1_101/conv1/weights'),
    (['--head_name', 'direct'],
     r'variable emb/weights has shape \(1024, 128\) in the checkpoint, \(2048, 128\) in the'),
    (['--embedding_dim', '64'], r'variable emb/weights has shape \(1024, 128\)'),
    (['--model_name', 'lunet'], 'backbone lunet has no TF-slim counterpart'),
    (['--args_json', 'ARGS'], r"changed_args.json: invalid value 'inception_v3' for 'model_name'"),
], ids=['no checkpoint', 'missing variable', 'other head', 'other dimension', 'no slim layout',
        'unknown model'])
def test_refusals_leave_no_experiment(official, small_resnets, tmp_path, flags, message):
    checkpoint, folder, _ = official
    replace = {'CKPT0': checkpoint[:-len('25000')] + '0',
               'ARGS': write_args(str(tmp_path), model_name='inception_v3')}
    root = str(tmp_path / 'imported')
    with pytest.raises(InputError, match=message) as error:
        import_official.main(['--checkpoint', checkpoint, '--experiment_root', root]
                             + [replace.get(flag, flag) for flag in flags])
    assert '\n' not in str(error.value) and not os.path.exists(root)


def test_an_experiment_root_in_use_is_refused(official, tmp_path):
    (tmp_path / 'train.log').write_text('')
    with pytest.raises(InputError, match='exists and is not an empty folder'):
        import_official.main(['--checkpoint', official[0], '--experiment_root', str(tmp_path)])


def test_a_checkpoint_name_without_step_is_refused(official, tmp_path):
    for ending in ('.index', '.data-00000-of-00001'):
        shutil.copy(official[0] + ending, str(tmp_path / 'model.ckpt') + ending)
    with pytest.raises(InputError, match=r'model.ckpt: no step in the name'):
        import_official.main(['--checkpoint', str(tmp_path / 'model.ckpt'),
                              '--experiment_root', str(tmp_path / 'imported')])


def test_the_command_line_reports_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'import_official.py'), '--checkpoint',
         str(tmp_path / 'checkpoint-25000'), '--experiment_root', str(tmp_path / 'new')],
        capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f'import_official.py: error: --checkpoint {tmp_path}/checkpoint-25000: no such '
        f'checkpoint (give its prefix, e.g. checkpoint-25000, without .index or .data-*)']
