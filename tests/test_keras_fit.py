"""The Keras pieces around the losses: PK batches from a tf.data.Dataset, the retrieval
callback (its figures are evaluate.py's), and examples/keras_fit.py (its loss is train.py's)."""
import importlib.util
import json
import os

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

import evaluate
from tripletreid.errors import InputError
from tripletreid.keras_callbacks import RetrievalEvaluation
from tripletreid.keras_losses import BatchHardTripletLoss
from tripletreid.pk_batches import pk_batches
from tripletreid.training import make_train_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Identities 5, 9, 2, 40, 7 with 3, 6, 1, 8, 4 images; element i is i * 1000 + its label.
PK_LABELS = np.repeat([5, 9, 2, 40, 7], [3, 6, 1, 8, 4])
PK_DATASET = tf.data.Dataset.from_tensor_slices(
    (np.arange(len(PK_LABELS)) * 1000 + PK_LABELS, PK_LABELS))


def first_batches(seed, count=10, p=2, k=4):
    return list(pk_batches(PK_DATASET, p, k, seed).take(count).as_numpy_iterator())


@pytest.fixture(scope='module')
def seed_one_batches():
    return first_batches(seed=1)


def test_pk_batches_hold_p_identities_of_k_images(seed_one_batches):
    batches = seed_one_batches
    for elements, labels in batches:
        assert len(labels) == 8 and len(set(labels)) == 2  # P = 2
        assert all(np.sum(labels == label) == 4 for label in set(labels))  # K = 4
        assert np.all(elements % 1000 == labels)  # every element is one of its identity's
        for label in set(labels):
            chosen = elements[labels == label]
            if np.sum(PK_LABELS == label) >= 4:  # enough images: none twice
                assert len(set(chosen)) == 4
    # Five identities, P = 2: two batches an epoch, each identity at most once in it.
    for epoch in range(5):
        labels = np.concatenate([batches[2 * epoch][1], batches[2 * epoch + 1][1]])
        assert len(set(labels)) == 4


def test_pk_batches_follow_the_seed(seed_one_batches):
    def flat(batches):
        return np.concatenate([elements for elements, _ in batches])
    assert np.array_equal(flat(seed_one_batches), flat(first_batches(seed=1)))
    assert not np.array_equal(flat(seed_one_batches), flat(first_batches(seed=2)))


def test_pk_batches_need_p_identities():
    with pytest.raises(InputError, match='batch_p'):
        pk_batches(PK_DATASET, 6, 2, seed=0)


def write_split(tmp_path, name, embeddings, labels, cameras=None):
    """The CSV and HDF5 file evaluate.py reads for one side of the split."""
    csv_path, h5_path = tmp_path / f'{name}.csv', tmp_path / f'{name}.h5'
    columns = [labels, [f'{name}/{i}.jpg' for i in range(len(labels))]]
    columns += [] if cameras is None else [cameras]
    csv_path.write_text(''.join(','.join(map(str, row)) + '\n' for row in zip(*columns)))
    with h5py.File(h5_path, 'w') as f:
        f['emb'] = embeddings
    return str(csv_path), str(h5_path)


def evaluate_py(tmp_path, excluder, query, gallery):
    """evaluate.py's mAP and CMC for the (csv, h5) paths of query and gallery."""
    output = str(tmp_path / 'result.json')
    evaluate.main(['--excluder', excluder, '--metric', 'euclidean', '--filename', output,
                   '--query_dataset', query[0], '--query_embeddings', query[1],
                   '--gallery_dataset', gallery[0], '--gallery_embeddings', gallery[1]])
    with open(output) as f:
        result = json.load(f)
    return result['mAP'], result['CMC']


@pytest.fixture(scope='module')
def problem():
    """A small fit problem: six identities, eight noisy points each around a centre in 6-D;
    the model maps them to 3-D. Query and gallery come from the same distribution."""
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(6, 6))

    def draw(n):
        labels = rng.integers(0, 6, n)
        points = centres[labels] + 0.8 * rng.normal(size=(n, 6))
        return points.astype(np.float32), labels, rng.integers(0, 3, n)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    return model, draw(48), draw(30), draw(40)


def test_callback_matches_evaluate_py_across_cameras(problem, tmp_path):
    model, (x, labels, _), query, gallery = problem
    model.compile(keras.optimizers.Adam(0.05), loss=BatchHardTripletLoss())
    callback = RetrievalEvaluation(query, gallery, every=2, log_dir=str(tmp_path / 'logs'),
                                   ranks=(1, 5))
    history = model.fit(x, labels, batch_size=48, epochs=4, callbacks=[callback], verbose=0,
                        shuffle=False).history
    assert len(history['loss']) == 4 and len(history['retrieval_mAP']) == 2  # epochs 2 and 4
    # After fit: the figures of the trained model, against evaluate.py on its embeddings.
    sides = [write_split(tmp_path, name, model.predict(side[0], verbose=0), *side[1:])
             for name, side in (('query', query), ('gallery', gallery))]
    mean_ap, cmc = evaluate_py(tmp_path, 'camera', *sides)
    assert 0.2 < mean_ap < 1  # neither trivial nor perfect: a real comparison
    assert history['retrieval_mAP'][-1] == pytest.approx(mean_ap, abs=1e-12)
    assert history['retrieval_top5'][-1] == pytest.approx(cmc[4], abs=1e-12)
    events = {}
    for path in (tmp_path / 'logs').iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                events[value.tag, event.step] = float(tf.make_ndarray(value.tensor))
    assert sorted(events) == [(name, step) for name in ('retrieval_mAP', 'retrieval_top1',
                                                        'retrieval_top5') for step in (1, 3)]
    assert events['retrieval_mAP', 3] == pytest.approx(mean_ap, rel=1e-6)  # float32 summary


def test_callback_matches_evaluate_py_within_one_set(problem, tmp_path):
    model, _, query, _ = problem
    callback = RetrievalEvaluation(query[:2])  # no gallery: each query among the others
    result = callback.evaluate(model)
    side = write_split(tmp_path, 'all', model.predict(query[0], verbose=0), query[1])
    mean_ap, cmc = evaluate_py(tmp_path, 'diagonal', side, side)
    assert result['mAP'] == pytest.approx(mean_ap, abs=1e-12)
    np.testing.assert_allclose(result['CMC'], cmc, atol=1e-12)


@pytest.fixture(scope='module')
def example():
    """examples/keras_fit.py as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        'keras_fit_example', os.path.join(ROOT, 'examples', 'keras_fit.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_loss_is_train_py_loss(example):
    args = example.build_parser().parse_args([])
    (x_train, y_train), _ = example.load_split(args.seed)
    x, labels = next(example.training_batches(x_train, y_train, args).as_numpy_iterator())
    model = example.compiled_model(args)
    keras_loss = model.evaluate(x, labels, batch_size=len(labels), verbose=0)
    # train.py's step on the same model and batch (its losses are those before the update).
    step = make_train_step(model, keras.optimizers.SGD(0.0), args.loss, args.margin,
                           args.metric, args.seed)
    train_loss = float(np.mean(step(x, labels, np.arange(len(labels)))['losses']))
    assert keras_loss == pytest.approx(train_loss, abs=1e-6)


def test_example_runs(example, capsys, tmp_path):
    results = example.main(['--epochs', '2', '--steps_per_epoch', '2',
                            '--log_dir', str(tmp_path / 'logs')])
    printed = capsys.readouterr().out
    assert 'untrained: mAP' in printed and 'trained: mAP' in printed
    assert len(results['history']['retrieval_mAP']) == 2
    assert results['trained']['mAP'] == pytest.approx(results['history']['retrieval_mAP'][-1])
    assert sorted(os.listdir(tmp_path / 'logs'))[-1] == 'train'  # Keras' TensorBoard too
