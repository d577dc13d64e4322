"""The README's main job (demo.py) end to end through the command line, at a reduced size."""
import json
import os
import subprocess
import sys

from conftest import ROOT


def test_demo_learns_and_leaves_its_pictures(tmp_path):
    output = str(tmp_path / 'demo')
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'demo.py'), '--output', output, '--train_ids', '40',
         '--test_ids', '20', '--train_iterations', '300', '--batch_p', '8'],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'untrained: mAP' in result.stdout and 'trained: mAP' in result.stdout
    scores = {stage: json.load(open(os.path.join(output, f'evaluation_{stage}.json')))
              for stage in ('untrained', 'trained')}
    # Chance level here is a few percent; training must lift mAP far above it.
    assert scores['untrained']['mAP'] < 0.25
    assert scores['trained']['mAP'] > scores['untrained']['mAP'] + 0.3
    for picture in ('cmc.png', 'ranked_list.png', 'activation_maps.png',
                    'experiment/training_curves.png'):
        with open(os.path.join(output, picture), 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_demo_refuses_a_used_output_folder(tmp_path):
    (tmp_path / 'keep.txt').write_text('mine')
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'demo.py'), '--output',
                             str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and 'is not empty' in result.stderr
    assert (tmp_path / 'keep.txt').read_text() == 'mine'
