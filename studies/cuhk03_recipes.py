#!/usr/bin/env python3
"""Train on the real CUHK03 crops of ../shared/data and evaluate cross-camera on their val split.

    python bench/bench_cuhk03.py --output /tmp/cuhk03 --train_iterations 2000 [--recipe strong]

Train: `train/` (743 identities). Evaluation: every `val/` image (100 other people) is a query
against all the others; the `camera` excluder ignores the query identity's images from the
query's own camera (slots 00-04 are camera 1, 05-09 camera 2), so only cross-camera matches
count. Prints JSON with the mAP and CMC of the untrained (step 0) and the trained network,
evaluated on the raw and on the unit-length embeddings.

`--recipe official` (the default) is the paper's: fc1024 head, 128-D, soft margin, constant
rate then exponential decay from 2/3 of the steps. `--recipe strong` adds the Bag-of-Tricks
options at their proportions of the schedule (`strong_baseline_train.sh`): `losses` (BNNeck on
lunet's 256-D feature, label-smoothed ID loss, center loss, 0.3 margin), `erasing` (random
erasing 0.5) and `schedule` (warm-up over the first 1/12 of the steps, x0.1 drops at 1/3 and
7/12, weight decay); `--recipe losses`, `erasing` or `schedule` adds one group alone.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import common  # noqa: E402

common.quiet_tensorflow()

import embed  # noqa: E402
import evaluate  # noqa: E402
import excluders  # noqa: E402
import metrics  # noqa: E402
import train  # noqa: E402
from data.csv_dataset import read_csv  # noqa: E402

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), '..',
                            'shared', 'data', 'cuhk03-detected')


def write_csv(folder, path, prefix=''):
    """`identity,file,camera` rows of the CUHK03 file names `PPPP_SS.jpg`."""
    names = sorted(n for n in os.listdir(folder) if n.endswith('.jpg'))
    with open(path, 'w') as f:
        for name in names:
            f.write(f'{prefix}{name[:4]},{name},{1 if int(name[5:7]) < 5 else 2}\n')
    return path


def option_flags(iterations):
    """train.py flags of the Bag-of-Tricks options, in three groups, at their proportions of
    the baseline's schedule (`strong_baseline_train.sh`)."""
    return {
        'losses': ['--head_name', 'bnneck', '--embedding_dim', '256', '--margin', '0.3',
                   '--id_loss_weight', '1', '--label_smoothing', '0.1',
                   '--center_loss_weight', '0.0005'],
        'erasing': ['--random_erasing_prob', '0.5'],
        'schedule': ['--warmup_iterations', str(iterations // 12), '--lr_schedule', 'step',
                     '--lr_decay_steps', str(iterations // 3), str(iterations * 7 // 12),
                     '--weight_decay', '0.0005'],
    }


RECIPES = {'official': [], 'strong': ['losses', 'erasing', 'schedule'], 'losses': ['losses'],
           'erasing': ['erasing'], 'schedule': ['schedule']}


def recipe_flags(recipe, iterations):
    """train.py flags of `recipe`: the paper's, then those of its option groups (a flag given
    twice takes its last value)."""
    groups = option_flags(iterations)
    return ['--head_name', 'fc1024', '--embedding_dim', '128',
            '--decay_start_iteration', str(iterations * 2 // 3),
            *(flag for group in RECIPES[recipe] for flag in groups[group])]


def train_lunet(data, output, iterations, size=(64, 32), batch_p=18, batch_k=4, seed=0,
                threads=2, recipe='official'):
    experiment = os.path.join(output, 'experiment')
    height, width = size
    train.main(['--experiment_root', experiment,
                '--train_set', write_csv(os.path.join(data, 'train'),
                                         os.path.join(output, 'train.csv')),
                '--image_root', os.path.join(data, 'train'), '--model_name', 'lunet',
                *recipe_flags(recipe, iterations),
                '--batch_p', str(batch_p), '--batch_k', str(batch_k),
                '--net_input_height', str(height), '--net_input_width', str(width),
                '--pre_crop_height', str(height * 9 // 8), '--pre_crop_width',
                str(width * 9 // 8), '--flip_augment', '--crop_augment',
                '--learning_rate', '1e-3', '--train_iterations', str(iterations),
                '--checkpoint_frequency', '0', '--loading_threads', str(threads),
                '--seed', str(seed)])
    return experiment


def evaluate_val(data, output, experiment, checkpoint, threads=2, normalize=False):
    """Cross-camera mAP / CMC on `val/` with one checkpoint (flip + centre crop views),
    of the unit-length embeddings with `normalize`."""
    csv_path = write_csv(os.path.join(data, 'val'), os.path.join(output, 'val.csv'), 'v')
    filename = f'val_{checkpoint}.h5'
    if not os.path.exists(os.path.join(experiment, filename)):
        embed.main(['--experiment_root', experiment, '--dataset', csv_path,
                    '--image_root', os.path.join(data, 'val'), '--checkpoint', checkpoint,
                    '--filename', filename, '--flip_augment', '--crop_augment', 'center',
                    '--aggregator', 'mean', '--loading_threads', str(threads), '--quiet'])
    dataset = read_csv(csv_path)
    embs = evaluate.load_embeddings(os.path.join(experiment, filename), dataset)
    if normalize:
        embs = metrics.unit_rows(embs)
    return evaluate.evaluate_embeddings(embs, embs, dataset, dataset,
                                        excluders.create('camera', dataset), 'euclidean')


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data', default=DEFAULT_DATA)
    parser.add_argument('--output', required=True, help='A new folder.')
    parser.add_argument('--train_iterations', type=int, default=2000)
    parser.add_argument('--height', type=int, default=64)
    parser.add_argument('--width', type=int, default=32)
    parser.add_argument('--recipe', default='official', choices=sorted(RECIPES))
    options = parser.parse_args()
    os.makedirs(options.output)
    experiment = train_lunet(options.data, options.output, options.train_iterations,
                             (options.height, options.width), recipe=options.recipe)
    report = {}
    for checkpoint in ('checkpoint-0', f'checkpoint-{options.train_iterations}'):
        for normalize in (False, True):
            result = evaluate_val(options.data, options.output, experiment, checkpoint,
                                  normalize=normalize)
            report[checkpoint + ('_normalized' if normalize else '')] = {
                'mAP': result['mAP'], 'rank-1': result['CMC'][0], 'rank-5': result['CMC'][4],
                'mINP': result['mINP'], 'evaluated_queries': result['num_evaluated_queries']}
    report['settings'] = vars(options)
    print(json.dumps(report, indent=2))


if __name__ == '__main__':
    main()
