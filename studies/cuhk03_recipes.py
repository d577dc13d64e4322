#!/usr/bin/env python3
"""Train on the real CUHK03 crops of ../shared/data and evaluate cross-camera on their val split.

    python studies/cuhk03_recipes.py --output /tmp/cuhk03 --train_iterations 2000 [--recipe strong]

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
`--recipe softmax`, `dce`, `arcface` or `cosface` adds one identity loss to the official recipe:
the plain softmax ID loss, DCE's ID + verification losses, ArcFace (s 30, m 0.5) or CosFace
(s 30, m 0.35), each of weight 1.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from studies.cuhk03 import DEFAULT_DATA, RECIPES, evaluate_val, train_net


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
    experiment = train_net(options.data, options.output, options.train_iterations,
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
