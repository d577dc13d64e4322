"""The paper's learning-rate schedule and the warm-up, by hand."""
import keras
import pytest

from schedules import LinearWarmUp, PaperDecay


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
