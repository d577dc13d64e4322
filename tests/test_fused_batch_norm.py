"""The fused batch norm against Keras' own layer and the textbook formula, and `fuse`."""
import numpy as np
import pytest

import keras
import tensorflow as tf
from tripletreid.checkpoints import restore_model
from tripletreid.model import build_model
from nets import NETS
from tripletreid.fused_batch_norm import FusedBatchNormalization, fuse

CONFIGS = [dict(momentum=0.997, epsilon=1e-5),  # slim's default decay
           dict(momentum=0.9, epsilon=1e-3, center=False),
           dict(momentum=0.99, epsilon=1e-3, scale=False)]


def batch(shape=(6, 5, 3, 4), seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(2.0, 3.0, shape) * rng.uniform(0.1, 5, shape[-1])).astype(np.float32)


def pair(config, rank=4, seed=1):
    """A Keras batch norm and a fused one for 4-channel input of `rank` dimensions, with the
    same (random, non-trivial) weights."""
    keras_bn = keras.layers.BatchNormalization(**config)
    fused = FusedBatchNormalization(**config)
    for layer in (keras_bn, fused):
        layer.build((None,) * (rank - 1) + (4,))
    rng = np.random.default_rng(seed)
    weights = [rng.uniform(0.5, 2, w.shape).astype(np.float32) for w in keras_bn.weights]
    keras_bn.set_weights(weights)
    fused.set_weights(weights)
    return keras_bn, fused


def train_call(layer, x, upstream):
    """Training-mode output, the gradients of sum(output * upstream) with respect to the
    input and the trainable weights, and the moving statistics after the call."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        objective = tf.reduce_sum(y * upstream)
    grads = tape.gradient(objective, [x] + layer.trainable_weights)
    return ([y.numpy()] + [g.numpy() for g in grads]
            + [layer.moving_mean.numpy(), layer.moving_variance.numpy()])


@pytest.mark.parametrize('config', CONFIGS)
@pytest.mark.parametrize('shape', [(6, 5, 3, 4), (6, 4)], ids=['4-D', '2-D'])
def test_training_step_equals_keras_batch_norm(config, shape):
    """Output, gradients and moving mean as Keras' layer computes them; the moving variance
    averages the unbiased batch variance (TF1's and the official code's convention), n/(n-1)
    times the biased one Keras averages, for n values per channel."""
    x, upstream = batch(shape), batch(shape, seed=5)
    keras_bn, fused = pair(config, len(shape))
    initial_variance = keras_bn.moving_variance.numpy()
    expected, got = train_call(keras_bn, x, upstream), train_call(fused, x, upstream)
    n, m = x.size // shape[-1], config['momentum']
    expected[-1] = m * initial_variance + (expected[-1] - m * initial_variance) * n / (n - 1)
    assert len(expected) == len(got)
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=2e-5, atol=2e-5 * np.abs(e).max())


def test_training_output_and_moving_statistics_by_hand():
    x = batch()
    config = CONFIGS[0]
    _, fused = pair(config)
    gamma, beta, mean0, var0 = (w.numpy() for w in fused.weights)
    y = fused(x, training=True).numpy()
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))  # biased: normalization's
    np.testing.assert_allclose(y, gamma * (x - mean) / np.sqrt(var + 1e-5) + beta,
                               rtol=1e-5, atol=1e-5)
    m = config['momentum']
    unbiased = x.var(axis=(0, 1, 2), ddof=1)  # the moving average's, as TF1 and slim's
    np.testing.assert_allclose(fused.moving_mean.numpy(), m * mean0 + (1 - m) * mean, rtol=1e-6)
    np.testing.assert_allclose(fused.moving_variance.numpy(), m * var0 + (1 - m) * unbiased,
                               rtol=1e-6)


def test_one_value_per_channel_has_variance_zero():
    _, fused = pair(dict(momentum=0.5))
    initial = fused.moving_variance.numpy()
    fused(batch((1, 1, 1, 4)), training=True)
    np.testing.assert_allclose(fused.moving_variance.numpy(), 0.5 * initial)


@pytest.mark.parametrize('config', CONFIGS)
@pytest.mark.parametrize('frozen', [False, True])
def test_inference_by_hand(config, frozen):
    """Inference, and a frozen layer in training (which Keras normalizes as in inference):
    the moving statistics, left as they are."""
    x = batch()
    _, fused = pair(config)
    fused.trainable = not frozen
    before = [w.numpy() for w in fused.weights]
    weights = dict(zip([w.name for w in fused.weights], before))
    y = fused(x, training=frozen).numpy()
    expected = ((x - weights['moving_mean']) / np.sqrt(weights['moving_variance']
                                                       + config['epsilon'])
                * weights.get('gamma', 1) + weights.get('beta', 0))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    for was, now in zip(before, fused.weights):
        np.testing.assert_array_equal(now, was)


def test_synchronized_is_keras_own_exactly():
    x = batch((6, 5, 3, 4))
    keras_bn, fused = pair(CONFIGS[0], x.ndim)
    keras_bn.synchronized = fused.synchronized = True
    np.testing.assert_array_equal(fused(x, training=True), keras_bn(x, training=True))
    np.testing.assert_array_equal(fused.moving_mean, keras_bn.moving_mean)
    np.testing.assert_array_equal(fused.moving_variance, keras_bn.moving_variance)


def op_types(function, *args):
    return {op.type for op in function.get_concrete_function(*args).graph.get_operations()}


def test_training_and_inference_run_fused_kernels():
    _, fused = pair(CONFIGS[0])
    x = tf.constant(batch())

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fused(x, training=True)
        return tape.gradient(y, x)

    types = op_types(step, x)
    assert {'FusedBatchNormV3', 'FusedBatchNormGradV3'} <= types
    assert 'Mean' not in types and 'SquaredDifference' not in types
    types = op_types(tf.function(lambda x: fused(x, training=False)), x)
    assert 'FusedBatchNormV3' in types and 'Rsqrt' not in types


@pytest.mark.parametrize('policy', ['mixed_bfloat16', 'mixed_float16'])
def test_mixed_precision(policy):
    x = batch()
    keras_bn, fused = (cls(**CONFIGS[0], dtype=policy) for cls in
                       (keras.layers.BatchNormalization, FusedBatchNormalization))
    half = tf.constant(x, keras_bn.compute_dtype)
    expected, got = keras_bn(half, training=True), fused(half, training=True)
    assert got.dtype == expected.dtype == keras_bn.compute_dtype
    assert fused.moving_mean.dtype == 'float32'
    np.testing.assert_allclose(tf.cast(got, tf.float32), tf.cast(expected, tf.float32),
                               atol=0.05)  # bf16 has an 8-bit mantissa
    np.testing.assert_allclose(fused.moving_mean, keras_bn.moving_mean, rtol=1e-2)


def batch_norms(model):
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization)]


def test_fuse_replaces_every_batch_norm_and_shares_the_rest():
    model = build_model('lunet', 'fc1024', 8)
    fused = fuse(model)
    norms = batch_norms(fused)
    assert len(norms) == len(batch_norms(model)) == 17  # 16 in lunet, 1 in the head
    assert all(type(layer) is FusedBatchNormalization for layer in norms)
    assert [w.path for w in fused.weights] == [w.path for w in model.weights]
    shared = {id(w) for w in model.weights} & {id(w) for w in fused.weights}
    assert len(shared) == len(model.weights) - 4 * len(norms)  # all but the batch norms'
    x = batch((3, 32, 16, 3)) * 30
    assert_same_function(fused, model, x)


def assert_same_function(a, b, x):
    """Equal embeddings to float32 rounding, in inference and in training: relative to the
    embeddings' scale (a random deep network's reach 1e7, where an entry near 0 carries the
    rounding of the large ones)."""
    for training in (False, True):
        expected = b(x, training=training).numpy()
        np.testing.assert_allclose(a(x, training=training), expected, rtol=1e-4,
                                   atol=1e-5 * max(1.0, np.abs(expected).max()))


def assert_same_weights(a, b):
    assert [w.path for w in a.weights] == [w.path for w in b.weights]
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(wa, wb)


def test_checkpoints_restore_either_way(tmp_path):
    x = batch((3, 32, 16, 3)) * 30
    fused = fuse(build_model('lunet', 'fc1024', 8))
    fused(x, training=True)  # move the moving statistics off their start
    path = tf.train.Checkpoint(model=fused).write(str(tmp_path / 'fused'))
    plain = build_model('lunet', 'fc1024', 8)
    restore_model(plain, path)
    assert_same_weights(plain, fused)
    # ...and a checkpoint of Keras' layers (all checkpoints before fusing) into a fused model
    plain(x, training=True)
    path = tf.train.Checkpoint(model=plain).write(str(tmp_path / 'plain'))
    fused_again = fuse(build_model('lunet', 'fc1024', 8))
    restore_model(fused_again, path)
    assert_same_weights(fused_again, plain)


def test_a_fused_model_saves_and_loads(tmp_path):
    fused = fuse(build_model('lunet', 'direct', 8))
    fused.save(tmp_path / 'fused.keras')
    loaded = keras.models.load_model(tmp_path / 'fused.keras')
    assert all(type(layer) is FusedBatchNormalization for layer in batch_norms(loaded))
    x = batch((2, 32, 16, 3)) * 30
    np.testing.assert_array_equal(loaded(x), fused(x))


# OSNet's four widths are one code path; test_nets.py checks its fused model, cheaply.
@pytest.mark.parametrize('model_name', sorted(n for n in NETS if not n.startswith('osnet')))
def test_fuse_fits_every_backbone(model_name):
    model = build_model(model_name, 'bnneck', 16)
    fused = fuse(model)
    norms = batch_norms(fused)
    assert norms and all(type(layer) is FusedBatchNormalization for layer in norms)
    assert len(norms) == len(batch_norms(model))
    assert fused.get_layer('bnneck').input.shape == model.get_layer('bnneck').input.shape
    x = batch((2, 64, 32, 3)) * 30
    # Random deep networks reach 1e7 here, and a hundred layers of float32 rounding in another
    # order: 1e-4 of the largest entry, the project's measure for whole embeddings.
    expected = model(x).numpy()
    np.testing.assert_allclose(fused(x), expected, rtol=1e-4,
                               atol=1e-4 * max(1.0, np.abs(expected).max()))
