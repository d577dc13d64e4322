#!/usr/bin/env python3
"""The whole workflow in a few minutes on a CPU, on a synthetic Market-1501-like dataset.

Makes the dataset (data/demo.py), trains `lunet` with the batch-hard triplet loss, embeds query
and gallery with flip augmentation (and the centre crop), evaluates with the `market1501`
excluder, and prints mAP and CMC of the trained network beside those of the untrained one
(checkpoint 0). Leaves the experiment, embeddings, results (JSON) and pictures (cmc.png,
ranked_list.png, activation_maps.png of the trained network on query images, and the training
curves experiment/training_curves.png) in --output.
"""
import os
import sys

import excluders
from data.demo_set import make_demo_dataset
from tripletreid import cli, csv_dataset, evaluation, experiment, files
from tripletreid.errors import InputError

STAGES = {'untrained': 'checkpoint-0', 'trained': None}  # None: the newest checkpoint


def build_parser():
    parser = cli.ArgumentParser(description=__doc__)
    add = parser.add_argument
    add('--output', default='demo_output', help='Folder for everything (must be new or empty).')
    add('--train_ids', default=100, type=cli.positive_int, help='Identities to train on.')
    add('--test_ids', default=50, type=cli.positive_int, help='Identities to test on.')
    add('--train_iterations', default=600, type=cli.positive_int)
    add('--batch_p', default=16, type=cli.positive_int)
    add('--batch_k', default=4, type=cli.positive_int)
    add('--seed', default=0, type=cli.nonnegative_int)
    add('--loading_threads', default=2, type=cli.positive_int)
    return parser


def train_network(args, dataset_root, experiment_root):
    from tripletreid import training
    decay = max(args.train_iterations * 2 // 3, 1)
    training.run_flags([
        '--experiment_root', experiment_root,
        '--train_set', os.path.join(dataset_root, 'market1501_train.csv'),
        '--image_root', dataset_root, '--model_name', 'lunet', '--head_name', 'fc1024',
        '--embedding_dim', '128', '--batch_p', str(args.batch_p),
        '--batch_k', str(args.batch_k), '--net_input_height', '64',
        '--net_input_width', '32', '--pre_crop_height', '72', '--pre_crop_width', '36',
        '--flip_augment', '--crop_augment', '--learning_rate', '1e-3',
        '--train_iterations', str(args.train_iterations),
        '--decay_start_iteration', str(decay), '--checkpoint_frequency', '0',
        '--loading_threads', str(args.loading_threads), '--seed', str(args.seed)])


def embed_and_evaluate(args, dataset_root, experiment_root, stage, checkpoint):
    """Embed query and gallery with one checkpoint; return the evaluation result."""
    from tripletreid import inference, pipeline
    spec, _ = experiment.read_experiment(experiment_root)
    model, _ = inference.load_model(experiment_root, spec, checkpoint)
    views = inference.Views(flip=True, crop='center')
    sets = {}
    for split in ('query', 'test'):
        dataset = csv_dataset.read_csv(os.path.join(dataset_root, f'market1501_{split}.csv'))
        emb_aug = inference.embed(model, pipeline.image_paths(dataset.fids, dataset_root), spec,
                                  views, loading_threads=args.loading_threads, quiet=True)
        embeddings = inference.aggregate(emb_aug, 'mean')
        inference.write_embeddings(os.path.join(experiment_root, f'{split}_{stage}_embeddings.h5'),
                                   emb_aug, views.names(), 'mean')
        sets[split] = (dataset, embeddings.astype('float64'))
    (query, query_embs), (gallery, gallery_embs) = sets['query'], sets['test']
    excluder = excluders.create('market1501', gallery)
    result = evaluation.evaluate_embeddings(query_embs, gallery_embs, query, gallery, excluder,
                                            'euclidean')
    files.write_json(os.path.join(args.output, f'evaluation_{stage}.json'), result)
    return result, (query_embs, gallery_embs, query, gallery, excluder)


def draw(args, dataset_root, results, trained_inputs):
    from tripletreid import pictures
    pictures.save_cmc_curve({f'{stage}: mAP {100 * r["mAP"]:.1f}%': r['CMC']
                             for stage, r in results.items()},
                            os.path.join(args.output, 'cmc.png'), title='CMC, demo test set')
    query_embs, gallery_embs, query, gallery, excluder = trained_inputs
    rows = list(range(0, len(query), max(1, len(query) // 10))[:10])
    ranked, is_match, distances = evaluation.ranked_lists(
        query_embs, gallery_embs, query, gallery, excluder, 'euclidean', rows)
    queries, gallery_images = (
        pictures.Images([os.path.join(dataset_root, fid) for fid in dataset.fids],
                        dataset.pids, excluder.cameras(dataset))
        for dataset in (csv_dataset.subset(query, rows), gallery))
    pictures.save_ranked_lists(queries, gallery_images, ranked, is_match, distances,
                               os.path.join(args.output, 'ranked_list.png'))


def draw_activation_maps(args, dataset_root, experiment_root):
    """Where the trained network looks: activation maps of 12 query images."""
    from tripletreid import activation_maps, inference
    spec, _ = experiment.read_experiment(experiment_root)
    model, _ = inference.load_model(experiment_root, spec)
    query = csv_dataset.read_csv(os.path.join(dataset_root, 'market1501_query.csv'))
    activation_maps.draw_dataset(model, spec.net_size, activation_maps.choose(query, 12),
                                 dataset_root, os.path.join(args.output, 'activation_maps.png'),
                                 columns=6)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if os.path.isdir(args.output) and os.listdir(args.output):
        raise InputError(f'--output {args.output} is not empty; remove it or choose another')
    dataset_root = os.path.join(args.output, 'dataset')
    experiment_root = os.path.join(args.output, 'experiment')
    print(f'1/3 Making the demo dataset in {dataset_root}', file=sys.stderr)
    make_demo_dataset(dataset_root, num_train_ids=args.train_ids, num_test_ids=args.test_ids,
                      seed=args.seed)
    cli.quiet_tensorflow()
    print(f'2/3 Training lunet for {args.train_iterations} steps in {experiment_root}',
          file=sys.stderr)
    train_network(args, dataset_root, experiment_root)
    print('3/3 Embedding (centre crop and its mirror) and evaluating', file=sys.stderr)
    results, inputs = {}, None
    for stage, checkpoint in STAGES.items():
        results[stage], inputs = embed_and_evaluate(args, dataset_root, experiment_root, stage,
                                                    checkpoint)
    draw(args, dataset_root, results, inputs)
    draw_activation_maps(args, dataset_root, experiment_root)
    print()
    for stage, result in results.items():
        print(f'{stage:>9}: {evaluation.summary(result)}')
    print(f'\nResults, embeddings and pictures (cmc.png, ranked_list.png, activation_maps.png, '
          f'experiment/training_curves.png) are in {args.output}')


if __name__ == '__main__':
    cli.run(main)
