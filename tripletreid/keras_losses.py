"""train.py's triplet losses as `keras.losses.Loss` classes, for `model.compile(loss=...)`.

For those who trained embeddings with tensorflow-addons' `TripletSemiHardLoss` and
`TripletHardLoss`, which do not import on TensorFlow >= 2.16. `y_true` holds the integer
identity of each row of the batch, `y_pred` its embedding; each class computes the distances
with `tripletreid.losses.triplet.cdist` and applies the `LOSSES` function train.py trains with,
so a batch's loss is train.py's: the mean of the per-anchor values (Keras' default reduction).
Keras gives `y_true` to a loss in float32, where integers are exact below 2**24, so identities
must be below 16,777,216.

A batch needs several images of each identity (a PK batch: `tripletreid.pk_batches`), or most
anchors have no positive. All but `batch_sample` run on any Keras backend; `batch_sample`
draws with TensorFlow's stateless sampler, as train.py does, so it needs the TensorFlow one.
"""
import numbers

import keras
from keras import ops

from tripletreid.losses import LOSSES
from tripletreid.losses.triplet import cdist
from tripletreid.metrics import METRICS

_PACKAGE = 'tripletreid'


def _checked_margin(margin):
    """`soft`, `none` or a non-negative float, as train.py's `--margin`; ValueError otherwise."""
    if margin in ('soft', 'none'):
        return margin
    if isinstance(margin, numbers.Real) and not isinstance(margin, bool) and margin >= 0:
        return float(margin)
    raise ValueError(f"margin must be 'soft', 'none' or a non-negative number, not {margin!r}")


@keras.saving.register_keras_serializable(_PACKAGE)
class TripletLoss(keras.losses.Loss):
    """The loss train.py's `--loss` names (`batch_hard`, `batch_all`, `batch_all_nonzero`,
    `batch_sample`, `batch_semi_hard`), with its `--margin` (`soft`, `none` or a float) and
    `--metric` (`euclidean`, `sqeuclidean`, `cityblock`).

    `seed` (`batch_sample` only) seeds the draws; each call draws anew. The named subclasses
    below fix `loss` and carry the usual defaults.
    """

    _config_keys = ('loss', 'margin', 'metric', 'seed')

    def __init__(self, loss='batch_hard', margin='soft', metric='euclidean', seed=None,
                 **kwargs):
        if loss not in LOSSES:
            raise ValueError(f'unknown loss {loss!r}; choose from {", ".join(LOSSES)}')
        if metric not in METRICS:
            raise ValueError(f'unknown metric {metric!r}; choose from {", ".join(METRICS)}')
        samples = loss == 'batch_sample'
        if seed is not None and not samples:
            raise ValueError(f'seed applies to batch_sample only, not to {loss}')
        if samples and keras.backend.backend() != 'tensorflow':
            raise ValueError('batch_sample draws with TensorFlow\'s stateless sampler: it needs '
                             f'KERAS_BACKEND=tensorflow, not {keras.backend.backend()}')
        super().__init__(**{'name': f'{loss}_triplet_loss', **kwargs})
        self.loss, self.margin, self.metric, self.seed = loss, _checked_margin(margin), metric, seed
        self._seeds = keras.random.SeedGenerator(seed) if samples else None

    def call(self, y_true, y_pred):
        """One value per anchor, the per-anchor values of train.py's loss."""
        seed = None if self._seeds is None else self._seeds.next()
        return LOSSES[self.loss](cdist(y_pred, y_pred, self.metric), ops.reshape(y_true, (-1,)),
                                 self.margin, seed)

    def get_config(self):
        return {**super().get_config(), **{key: getattr(self, key) for key in self._config_keys}}


@keras.saving.register_keras_serializable(_PACKAGE)
class BatchHardTripletLoss(TripletLoss):
    """Each anchor's hardest positive and hardest negative (Hermans et al. 2017); the paper's
    soft margin by default. tensorflow-addons' `TripletHardLoss()` is
    `BatchHardTripletLoss(margin=1.0, metric='sqeuclidean')` (its `L_2` is squared), and its
    `soft=True` is `margin='soft'`."""

    _config_keys = ('margin', 'metric')

    def __init__(self, margin='soft', metric='euclidean', **kwargs):
        super().__init__('batch_hard', margin, metric, **kwargs)


@keras.saving.register_keras_serializable(_PACKAGE)
class BatchAllTripletLoss(TripletLoss):
    """Every valid triplet of the batch; `nonzero=True` averages over the triplets with a
    non-zero loss only (the `batch_all_nonzero` of train.py)."""

    _config_keys = ('margin', 'metric', 'nonzero')

    def __init__(self, margin='soft', metric='euclidean', nonzero=False, **kwargs):
        super().__init__('batch_all_nonzero' if nonzero else 'batch_all', margin, metric,
                         **kwargs)
        self.nonzero = nonzero


@keras.saving.register_keras_serializable(_PACKAGE)
class BatchSampleTripletLoss(TripletLoss):
    """One triplet per anchor, its positive drawn with probability proportional to
    exp(distance) and its negative to exp(-distance); TensorFlow backend only."""

    _config_keys = ('margin', 'metric', 'seed')

    def __init__(self, margin='soft', metric='euclidean', seed=None, **kwargs):
        super().__init__('batch_sample', margin, metric, seed, **kwargs)


@keras.saving.register_keras_serializable(_PACKAGE)
class SemiHardTripletLoss(TripletLoss):
    """tensorflow-addons' `TripletSemiHardLoss`: every positive pair with the closest negative
    farther than the positive, or the farthest negative if none is. The defaults are TFA's
    (margin 1.0, its `L_2`, which is the squared distance); its `distance_metric='L_1'` is,
    despite the name, `metric='euclidean'`."""

    _config_keys = ('margin', 'metric')

    def __init__(self, margin=1.0, metric='sqeuclidean', **kwargs):
        super().__init__('batch_semi_hard', margin, metric, **kwargs)
