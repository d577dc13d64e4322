"""Pictures of a model and of its training: activation maps (activation_maps.py), the files of
TensorBoard's Embedding Projector (embed.py --projector) and the training curves (curves.py;
tests/test_quickstart.py sees train.py draw them when the demo's training stops). Values are
checked by hand, files with TensorBoard's own reader."""
import json
import os

import cv2
import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

import activation_maps as activation_maps_script
import curves as curves_script
import embed
from conftest import write_colour_dataset
from tripletreid import activation_maps, projector, training_curves
from tripletreid.errors import InputError

# A 2x1 image: the top pixel (R, G, B) = (1, 2, 7), the bottom one (3, 0, 5).
PIXELS = np.array([[[1, 2, 7]], [[3, 0, 5]]], np.uint8)


def hand_made(layout):
    """An embedding network whose last feature map is (R, G) at each pixel: a fixed 1x1
    convolution, then global pooling, then a Dense head. The backbone's `layout`: `plain`;
    `dense`, a Dense layer after the pooling and a channel gate's pooling (keepdims) before it,
    as nets/osnet.py; `nested`, the convolution and pooling in a model inside the backbone after
    a x2 rescaling, as nets/keras_resnet50.py nests Keras' ResNet50."""
    def conv_pool(name, dense=False):
        images = keras.Input((None, None, 3))
        features = keras.layers.Conv2D(2, 1, use_bias=False, kernel_initializer=keras.initializers
                                       .Constant(np.eye(3, 2).reshape(1, 1, 3, 2)))(images)
        if dense:  # a gate of ones: the features pass unchanged
            gate = keras.layers.GlobalAveragePooling2D(keepdims=True)(features)
            features = keras.layers.Multiply()([features, keras.ops.ones_like(gate)])
        pooled = keras.layers.GlobalAveragePooling2D()(features)
        return keras.Model(images, keras.layers.Dense(4)(pooled) if dense else pooled, name=name)

    images = keras.Input((None, None, 3))
    if layout == 'nested':
        backbone = keras.Model(images, conv_pool('inner')(keras.layers.Rescaling(2.0)(images)),
                               name='outer')
    else:
        backbone = conv_pool('backbone', dense=layout == 'dense')
    inputs = keras.Input((None, None, 3))
    return keras.Model(inputs, keras.layers.Dense(3)(backbone(inputs)))


@pytest.mark.parametrize('layout, scale', [('plain', 1), ('dense', 1), ('nested', 4)])
def test_energy_of_a_hand_made_network(tmp_path, layout, scale):
    # Energy R^2 + G^2: top 1 + 4 = 5, bottom 9 + 0 = 9 (x4 after the x2 rescaling).
    path = str(tmp_path / 'two_pixels.png')
    cv2.imwrite(path, PIXELS[..., ::-1])  # PNG: lossless, stored as BGR
    maps = activation_maps.compute(hand_made(layout), [path], (2, 1))
    np.testing.assert_allclose(maps, scale * np.array([[[5.0], [9.0]]]))


def test_normalised_map_by_hand():
    # Bilinear with half-pixel centres from 2 rows to 4: rows sample source rows -0.25 (clamped
    # to 0), 0.25, 0.75 and 1.25 (clamped to 1): 5, 6, 8, 9; from min 5 to max 9: 0 .25 .75 1.
    unit = activation_maps.normalised_map(np.array([[5.0], [9.0]]), (4, 2))
    np.testing.assert_allclose(unit, [[0, 0], [0.25, 0.25], [0.75, 0.75], [1, 1]], atol=1e-6)
    assert not activation_maps.normalised_map(np.ones((2, 1)), (4, 2)).any()  # flat map


def test_overlay_is_blue_where_low_and_red_where_high():
    grey = np.full((2, 1, 3), 128, np.uint8)
    blue, green, red = activation_maps.overlay(grey, np.array([[0.0], [1.0]])).transpose(2, 0, 1)
    assert blue[0, 0] > red[0, 0] and red[1, 0] > blue[1, 0]


def test_choose_spreads_rows_over_the_csv():
    from tripletreid.csv_dataset import Dataset
    dataset = Dataset('x.csv', np.arange(10).astype(str), np.arange(10).astype(str))
    assert list(activation_maps.choose(dataset, 4).fids) == ['0', '2', '5', '7']
    assert len(activation_maps.choose(dataset, 40)) == 10


@pytest.fixture(scope='module')
def experiment(tmp_path_factory):
    """An experiment of an untrained lunet, args.json and checkpoint-0 (the pictures need no
    training, which would cost more than all these tests), with a CSV of 12 images of 4
    identities, 32x16: (experiment root, CSV, image folder)."""
    from tripletreid.model import build_model
    folder = str(tmp_path_factory.mktemp('images'))
    csv_path = write_colour_dataset(folder, num_ids=4, per_id=3)
    root = str(tmp_path_factory.mktemp('experiment'))
    with open(os.path.join(root, 'args.json'), 'w') as f:
        json.dump({'model_name': 'lunet', 'head_name': 'fc1024', 'embedding_dim': 8,
                   'net_input_height': 32, 'net_input_width': 16, 'pre_crop_height': 40,
                   'pre_crop_width': 20, 'image_root': folder}, f)
    tf.train.Checkpoint(model=build_model('lunet', 'fc1024', 8)).write(
        os.path.join(root, 'checkpoint-0'))
    return root, csv_path, folder


def test_activation_maps_command(experiment, tmp_path):
    root, csv_path, folder = experiment
    output = str(tmp_path / 'maps.png')
    argv = ['--experiment_root', root, '--dataset', csv_path, '--output', output,
            '--count', '3', '--columns', '2']
    activation_maps_script.main(argv)
    picture = cv2.imread(output)
    # Network input 32x16: tiles 128x64; a pair is 64 + 4 + 64 wide, two pairs a row with 12
    # pixels around each; a header of 22, then two rows of caption 16 + tile 128 + gap 4.
    assert picture.shape == (22 + 2 * (16 + 128 + 4), 2 * (132 + 12) + 12, 3)
    with pytest.raises(InputError, match='exists already'):
        activation_maps_script.main(argv)


@pytest.fixture(scope='module')
def projected(experiment, tmp_path_factory):
    """embed.py with --projector on the experiment's CSV: (folder, h5 file)."""
    root, csv_path, folder = experiment
    directory = str(tmp_path_factory.mktemp('projector') / 'projector')
    embed.main(['--experiment_root', root, '--dataset', csv_path, '--image_root', folder,
                '--filename', 'projected.h5', '--projector', directory, '--quiet',
                '--loading_threads', '2'])
    return directory, os.path.join(root, 'projected.h5')


def test_projector_files_load_with_tensorboards_reader(projected, experiment):
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.projector.projector_plugin import ProjectorPlugin
    from werkzeug.test import Client
    from werkzeug.wrappers import Response
    directory, h5_path = projected
    plugin = ProjectorPlugin(base_plugin.TBContext(logdir=directory, data_provider=None))
    routes = plugin.get_plugin_apps()

    def get(route, **params):
        client = Client(routes[route], Response)
        answer = client.get(route, query_string={'run': '.', 'name': 'embeddings', **params})
        assert answer.status_code == 200, answer.get_data(as_text=True)
        return answer

    assert json.loads(get('/runs').get_data(as_text=True)) == ['.']  # the logdir itself
    config = json.loads(get('/info').get_data(as_text=True))
    embedding, = config['embeddings']
    with h5py.File(h5_path, 'r') as f:
        emb = f['emb'][()]
    # 12 images of 4 identities; 4 thumbnails a row, 64 high, 32 wide (the net's 32x16).
    assert embedding['tensorShape'] == [12, emb.shape[1]]
    assert embedding['sprite']['singleImageDim'] == [32, 64]
    tensor = np.frombuffer(get('/tensor').get_data(), np.float32).reshape(emb.shape)
    np.testing.assert_array_equal(tensor, emb)  # float32 through the TSV exactly
    lines = get('/metadata').get_data(as_text=True).splitlines()
    _, csv_path, folder = experiment
    with open(csv_path) as f:
        rows = [line.strip().split(',') for line in f]
    assert lines == ['identity\tcamera\tpath'] + [f'{pid}\t\t{path}' for pid, path in rows]
    sprite = cv2.imdecode(np.frombuffer(get('/sprite_image').get_data(), np.uint8),
                          cv2.IMREAD_COLOR)
    assert sprite.shape == (4 * 64, 4 * 32, 3)
    # The 6th image (row 1, column 1 of the grid) is its thumbnail; the 13th to 16th are blank.
    image = cv2.imread(os.path.join(folder, rows[5][1]))
    thumbnail = cv2.resize(image, (32, 64), interpolation=cv2.INTER_LINEAR)
    assert np.abs(sprite[64:128, 32:64].astype(int) - thumbnail).mean() < 3
    assert (sprite[3 * 64:] == 255).all()


def test_projector_refuses_a_used_folder_before_any_work(experiment, projected, tmp_path):
    root, csv_path, folder = experiment
    with pytest.raises(InputError, match='is not empty'):
        embed.main(['--experiment_root', root, '--dataset', csv_path, '--image_root', folder,
                    '--filename', 'again.h5', '--projector', projected[0], '--quiet'])
    assert not os.path.exists(os.path.join(root, 'again.h5'))


def test_thumbnails_shrink_to_fit_the_largest_sprite():
    assert projector.thumbnail_size(12, (256, 128)) == (64, 32)
    # 20,000 images: 142 a row; 8192 // 142 = 57 pixels high, 28 wide.
    assert projector.thumbnail_size(20000, (256, 128)) == (57, 28)


def write_events(root, steps, args):
    """A hand-made experiment: args.json and TensorBoard scalars {tag: [values]} at `steps`."""
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, 'args.json'), 'w') as f:
        json.dump(args, f)
    return write_scalars(root, steps, {})


def write_scalars(root, steps, values):
    writer = tf.summary.create_file_writer(root)
    with writer.as_default():
        for i, step in enumerate(steps):
            for tag, series in values.items():
                tf.summary.scalar(tag, series[i], step=step)
    writer.close()


CURVES = {'loss': [0.9, 0.7, 0.6, 0.3], 'batch_top1': [0.25, 0.5, 0.5, 0.75],
          'batch_prec_at_1': [0.1, 0.2, 0.3, 0.4], 'active_count': [2, 4, 3, 8],
          'learning_rate': [1e-3, 1e-3, 5e-4, 1e-4]}


def test_training_curves_from_a_hand_made_run(tmp_path):
    root = str(tmp_path / 'run')
    # A curriculum from P=2, K=2 to P=4 over 4 steps: batches of 4, 4, 6 and (step 5) 8.
    write_events(root, [], {'batch_p': 4, 'batch_k': 2, 'curriculum_steps': 4,
                            'curriculum_start_p': 2, 'curriculum_start_k': 2})
    write_scalars(root, [1, 2, 3, 5], CURVES)
    # A resumed run logs step 5 again: its last value counts.
    write_scalars(root, [5], {'loss': [0.2], 'batch_top1': [0.75], 'batch_prec_at_1': [0.4],
                              'active_count': [8], 'learning_rate': [1e-4]})
    curves = training_curves.read_curves(root)
    expected = {'loss': [0.9, 0.7, 0.6, 0.2], 'top1': [0.25, 0.5, 0.5, 0.75],
                'prec_at_k': [0.1, 0.2, 0.3, 0.4], 'active': [0.5, 1.0, 0.5, 1.0],
                'learning_rate': [1e-3, 1e-3, 5e-4, 1e-4]}
    assert sorted(curves) == sorted(expected)
    for name, values in expected.items():
        assert list(curves[name][0]) == [1, 2, 3, 5]
        np.testing.assert_allclose(curves[name][1], values, rtol=1e-6)
    figure = training_curves.draw(curves, 'run')
    titles = [axes.get_title() for axes in figure.axes]
    assert titles == ['loss', 'batch precision (%)', 'active triplets (% of anchors)',
                      'learning rate']
    plotted = {title: [line.get_ydata().tolist() for line in axes.get_lines()]
               for title, axes in zip(titles, figure.axes)}
    np.testing.assert_allclose(plotted['active triplets (% of anchors)'], [[50, 100, 50, 100]])
    np.testing.assert_allclose(plotted['batch precision (%)'],
                               [[25, 50, 50, 75], [10, 20, 30, 40]], rtol=1e-6)
    output = str(tmp_path / 'curves.png')
    curves_script.main(['--experiment_root', root, '--output', output])
    assert cv2.imread(output).shape == (600, 900, 3)
    with pytest.raises(InputError, match='exists already'):
        curves_script.main(['--experiment_root', root, '--output', output])


def test_identity_losses_join_the_loss_panel(tmp_path):
    root = str(tmp_path / 'run')
    write_events(root, [], {'batch_p': 2, 'batch_k': 2, 'id_loss_weight': 1.0,
                            'center_loss_weight': 0.0})
    write_scalars(root, [1, 2], {**{tag: values[:2] for tag, values in CURVES.items()},
                                 'id_loss': [4.5, 4.25]})
    curves = training_curves.read_curves(root)
    assert 'center_loss' not in curves
    np.testing.assert_allclose(curves['id_loss'][1], [4.5, 4.25])
    loss_panel = training_curves.draw(curves, 'run').axes[0]
    np.testing.assert_allclose([line.get_ydata() for line in loss_panel.get_lines()],
                               [[0.9, 0.7], [4.5, 4.25]], rtol=1e-6)


def test_training_curves_before_the_first_step(tmp_path):
    root = str(tmp_path / 'run')
    write_events(root, [], {'batch_p': 2, 'batch_k': 2})
    with pytest.raises(InputError, match='no training step logged yet'):
        training_curves.read_curves(root)
