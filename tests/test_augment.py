"""Random Erasing: only one rectangle changes, of the area and aspect asked for."""
import numpy as np
import pytest
import tensorflow as tf

from tripletreid.augment import random_erasing

IMAGE = tf.fill([64, 32, 3], 100.0)  # a flat image: every erased pixel shows


def erased_box(seed, **kwargs):
    out = random_erasing(IMAGE, tf.constant([seed, 7], tf.int64), **kwargs).numpy()
    changed = np.any(out != 100.0, axis=2)
    if not changed.any():
        return out, None
    rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
    box = changed[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return out, (box, len(rows), len(cols))


def test_only_a_rectangle_changes_within_the_area_bounds():
    for seed in range(40):
        out, found = erased_box(seed, probability=1.0)
        box, height, width = found
        assert box.all(), 'the changed pixels do not form a full rectangle'
        share = height * width / (64 * 32)
        # 0.02..0.4 of the image, up to rounding and clipping to the image edges
        assert 0.015 <= share <= 0.45
        assert 0.0 <= out.min() and out.max() <= 255.0


def test_aspect_ratio_range_is_respected():
    ratios = []
    for seed in range(60):
        _, (box, height, width) = erased_box(seed, probability=1.0, area=(0.1, 0.1),
                                             min_aspect=0.5)
        if height < 64 and width < 32:  # clipped boxes say nothing about the drawn ratio
            ratios.append(height / width)
    assert min(ratios) >= 0.5 * 0.8 and max(ratios) <= 2.0 * 1.25  # rounding to pixels
    assert min(ratios) < 0.8 and max(ratios) > 1.25  # both orientations occur


def test_probability_and_determinism():
    erased = sum(erased_box(seed, probability=0.5)[1] is not None for seed in range(400))
    assert erased == pytest.approx(200, abs=40)
    assert erased_box(3, probability=0.0)[1] is None
    first, _ = erased_box(5, probability=1.0)
    again, _ = erased_box(5, probability=1.0)
    np.testing.assert_array_equal(first, again)
