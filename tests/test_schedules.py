"""The paper's learning-rate schedule, by hand."""
import pytest

from schedules import PaperDecay


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
