"""train.py, embed.py and evaluate.py chained through the command line on a tiny experiment."""
import json
import os
import subprocess
import sys

import h5py
import numpy as np

from conftest import ROOT


def run(script, *flags):
    result = subprocess.run([sys.executable, os.path.join(ROOT, script), *flags],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_train_embed_evaluate(tmp_path):
    from data.demo_set import make_demo_dataset
    data = str(tmp_path / 'market')
    make_demo_dataset(data, num_train_ids=8, num_test_ids=6, images_per_camera=1,
                      num_cameras=3, height=64, width=32, num_distractors=3, num_junk=2)
    exp = str(tmp_path / 'exp')
    run('train.py', '--experiment_root', exp, '--train_set', f'{data}/market1501_train.csv',
        '--image_root', data, '--model_name', 'lunet', '--embedding_dim', '16',
        '--batch_p', '4', '--batch_k', '2', '--net_input_height', '32',
        '--net_input_width', '16', '--pre_crop_height', '36', '--pre_crop_width', '18',
        '--crop_augment', '--train_iterations', '4', '--loading_threads', '2')
    for split in ('query', 'test'):
        run('embed.py', '--experiment_root', exp, '--dataset', f'{data}/market1501_{split}.csv',
            '--flip_augment', '--crop_augment', 'five', '--aggregator', 'mean',
            '--loading_threads', '2')
        with h5py.File(f'{exp}/market1501_{split}_embeddings.h5', 'r') as f:
            rows = sum(1 for _ in open(f'{data}/market1501_{split}.csv'))
            assert f['emb'].shape == (rows, 16) and f['emb_aug'].shape == (10, rows, 16)
    out = run('evaluate.py', '--excluder', 'market1501', '--metric', 'euclidean',
              '--query_dataset', f'{data}/market1501_query.csv',
              '--query_embeddings', f'{exp}/market1501_query_embeddings.h5',
              '--gallery_dataset', f'{data}/market1501_test.csv',
              '--gallery_embeddings', f'{exp}/market1501_test_embeddings.h5',
              '--filename', f'{exp}/result.json', '--picture_dir', f'{exp}/pictures',
              '--image_root', data)
    assert 'mAP' in out.stdout and 'top-1' in out.stdout
    result = json.load(open(f'{exp}/result.json'))
    assert 0 < result['mAP'] <= 1 and len(result['aps']) == result['num_evaluated_queries']
    cmc = np.array(result['CMC'])
    assert np.all(np.diff(cmc) >= 0) and cmc[-1] == 1.0
    assert sorted(os.listdir(f'{exp}/pictures')) == ['cmc.png', 'ranked_list.png']
