"""examples/digits.py: the batch-hard loss learns a 2-D embedding of real handwritten digits."""
import importlib.util
import os

import pytest

from tripletreid.errors import InputError

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      'examples', 'digits.py')
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
CHANCE = 0.1  # ten balanced classes


@pytest.fixture(scope='module')
def digits():
    """The example as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location('digits_example', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_training_separates_the_test_digits(digits, tmp_path):
    output = str(tmp_path / 'digits.png')
    results = digits.main(['--output', output, '--steps', '1000'])
    before, after = results['untrained'], results['trained']
    # Leave-one-out 1-NN accuracy on the test split is top-1 of the CMC. Chance is 10%; 1-NN
    # on the raw 64 pixels reaches about 98%, so a working 2-D embedding lands far above chance
    # and far above the untrained network.
    assert after['CMC'][0] > 8 * CHANCE and after['mAP'] > 7 * CHANCE
    assert after['CMC'][0] - before['CMC'][0] > 0.4 and after['mAP'] - before['mAP'] > 0.4
    with open(output, 'rb') as f:
        assert f.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE
    with pytest.raises(InputError, match='--overwrite'):
        digits.main(['--output', output, '--steps', '1'])
