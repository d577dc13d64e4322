"""The paper's learning-rate schedule and the warm-up, by hand."""
import keras
import pytest

from tripletreid.schedules import LinearWarmUp, PaperDecay


@pytest.mark.parametrize('step, expected', [
    (0, 3e-4), (14999, 3e-4), (15000, 3e-4),
    (20000, 3e-4 * 0.001 ** 0.5),  # half-way through the decay: 9.4868e-6
    (25000, 3e-7),                 # 0.001 of the initial rate at the last step
])
def test_paper_decay(step, expected):
    assert float(PaperDecay(3e-4, 15000, 25000)(step)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize('start', [-1, 25000, 30000])
def test_no_decay(start):
    assert float(PaperDecay(3e-4, start, 25000)(24000)) == pytest.approx(3e-4)


@pytest.mark.parametrize('step, expected', [
    (0, 1e-4), (4, 5e-4), (9, 1e-3), (10, 1e-3), (500, 1e-3),  # (t + 1) / 10 of 1e-3, then all
])
def test_linear_warm_up(step, expected):
    schedule = LinearWarmUp(PaperDecay(1e-3, -1, 1000), 10)
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-5)


def test_warm_up_composes_with_the_decay_and_serialises():
    schedule = LinearWarmUp(PaperDecay(3e-4, 15000, 25000), 1000)
    assert float(schedule(499)) == pytest.approx(1.5e-4, rel=1e-5)
    assert float(schedule(20000)) == pytest.approx(3e-4 * 0.001 ** 0.5, rel=1e-5)
    again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert isinstance(again, LinearWarmUp) and isinstance(again.schedule, PaperDecay)
    assert again.get_config() == schedule.get_config()


def schedule_values(kind, steps, **options):
    from tripletreid.schedules import make_schedule
    schedule = make_schedule(learning_rate=1, train_iterations=100, decay_start_iteration=15000,
                             kind=kind, **options)
    return [float(schedule(t)) for t in steps]


def test_step_schedule_by_hand():
    # Optimizer step t is training step t + 1: "after 40 steps" means from t = 40 on.
    values = schedule_values('step', [0, 39, 40, 69, 70, 99], decay_steps=[40, 70],
                             decay_factor=0.1)
    assert values == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_cosine_schedule_by_hand():
    # 0.5 * (1 + cos(pi * t / 100)): 1 at 0, 0.5 at 50, (1 + cos(pi/4)) / 2 at 25, 0 at 100.
    values = schedule_values('cosine', [0, 25, 50, 100])
    assert values == pytest.approx([1, (1 + 2 ** -0.5) / 2, 0.5, 0], abs=1e-6)


def test_decoupled_weight_decay_spares_batch_norm():
    import keras
    import numpy as np
    from tripletreid.schedules import make_optimizer, make_schedule
    optimizer = make_optimizer(make_schedule(0.1, 25000, decay_start_iteration=-1),
                               weight_decay=0.5)
    kernel = keras.Variable(np.full(3, 2.0, np.float32), name='kernel')
    gamma = keras.Variable(np.full(3, 2.0, np.float32), name='gamma')
    optimizer.apply_gradients([(np.zeros(3, np.float32), kernel),
                               (np.zeros(3, np.float32), gamma)])
    # With zero gradients Adam moves nothing; the decay takes lr * wd * value = 0.1 from 2.
    np.testing.assert_allclose(kernel.numpy(), 1.9, rtol=1e-6)
    np.testing.assert_allclose(gamma.numpy(), 2.0)
