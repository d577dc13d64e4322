"""The real CUHK03 crops of ../shared/data for the studies and tests: CSVs of their file names,
a backbone (lunet unless told) trained from scratch on `train/` with the official recipe or the
Bag-of-Tricks options, and its cross-camera evaluation on `val/`."""
import argparse
import os

import excluders
from tripletreid import evaluation, inference, metrics, training
from tripletreid.csv_dataset import read_csv

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
    the baseline's schedule (`strong_baseline_train.sh`), and of the identity losses of the
    neighbouring projects, each with its paper's settings (issue 21): the plain softmax ID
    loss, DCE (softmax ID + verification loss), ArcFace and CosFace; and the batch-all triplet
    loss, which starts OSNet from scratch where the batch-hard one collapses (issue 19)."""
    return {
        'batch_all': ['--loss', 'batch_all'],
        'softmax': ['--id_loss_weight', '1'],
        'dce': ['--id_loss_weight', '1', '--verification_loss_weight', '1'],
        'arcface': ['--id_loss_weight', '1', '--id_loss', 'arcface', '--id_scale', '30',
                    '--id_margin', '0.5'],
        'cosface': ['--id_loss_weight', '1', '--id_loss', 'cosface', '--id_scale', '30',
                    '--id_margin', '0.35'],
        'losses': ['--head_name', 'bnneck', '--embedding_dim', '256', '--margin', '0.3',
                   '--id_loss_weight', '1', '--label_smoothing', '0.1',
                   '--center_loss_weight', '0.0005'],
        'erasing': ['--random_erasing_prob', '0.5'],
        'schedule': ['--warmup_iterations', str(iterations // 12), '--lr_schedule', 'step',
                     '--lr_decay_steps', str(iterations // 3), str(iterations * 7 // 12),
                     '--weight_decay', '0.0005'],
    }


RECIPES = {'official': [], 'strong': ['losses', 'erasing', 'schedule'], 'losses': ['losses'],
           'erasing': ['erasing'], 'schedule': ['schedule'], 'softmax': ['softmax'],
           'dce': ['dce'], 'arcface': ['arcface'], 'cosface': ['cosface'],
           'batch_all': ['batch_all']}


def recipe_flags(recipe, iterations):
    """train.py flags of `recipe`: the paper's, then those of its option groups (a flag given
    twice takes its last value)."""
    groups = option_flags(iterations)
    return ['--head_name', 'fc1024', '--embedding_dim', '128',
            '--decay_start_iteration', str(iterations * 2 // 3),
            *(flag for group in RECIPES[recipe] for flag in groups[group])]


def train_net(data, output, iterations, size=(64, 32), batch_p=18, batch_k=4, seed=0,
              threads=2, recipe='official', extra_flags=(), model_name='lunet'):
    """Train `model_name` (from scratch) on `train/` into `output`/experiment with `recipe`
    and any `extra_flags` of train.py (given last, so they win), e.g. `--mixed_precision
    mixed_bfloat16`."""
    experiment = os.path.join(output, 'experiment')
    height, width = size
    training.run_flags(['--experiment_root', experiment,
              '--train_set', write_csv(os.path.join(data, 'train'),
                                       os.path.join(output, 'train.csv')),
              '--image_root', os.path.join(data, 'train'), '--model_name', model_name,
              *recipe_flags(recipe, iterations),
              '--batch_p', str(batch_p), '--batch_k', str(batch_k),
              '--net_input_height', str(height), '--net_input_width', str(width),
              '--pre_crop_height', str(height * 9 // 8), '--pre_crop_width',
              str(width * 9 // 8), '--flip_augment', '--crop_augment',
              '--learning_rate', '1e-3', '--train_iterations', str(iterations),
              '--checkpoint_frequency', '0', '--loading_threads', str(threads),
              '--seed', str(seed), *extra_flags])
    return experiment


def embed_views(experiment, dataset, image_root, checkpoint, threads=2):
    """float64 embeddings of a CSV `Dataset`: the mean of the flip and centre-crop views."""
    emb_aug = inference.embed_dataset(experiment, dataset, image_root,
                                      inference.Views(flip=True, crop='center'), checkpoint,
                                      loading_threads=threads)
    return inference.aggregate(emb_aug, 'mean').astype('float64')


def evaluate_val(data, output, experiment, checkpoint, threads=2, normalize=False):
    """Cross-camera mAP / CMC on `val/` with one checkpoint (flip + centre crop views),
    of the unit-length embeddings with `normalize`."""
    csv_path = write_csv(os.path.join(data, 'val'), os.path.join(output, 'val.csv'), 'v')
    dataset = read_csv(csv_path)
    embs = embed_views(experiment, dataset, os.path.join(data, 'val'), checkpoint, threads)
    if normalize:
        embs = metrics.unit_rows(embs)
    return evaluation.evaluate_embeddings(embs, embs, dataset, dataset,
                                          excluders.create('camera', dataset), 'euclidean')


def study_parser(description):
    """The command line every CUHK03 study starts from: --data (the crops) and --work and
    --output (where the experiments and the JSON files go)."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data', default=DEFAULT_DATA)
    parser.add_argument('--work', required=True, help='Where the experiments go.')
    parser.add_argument('--output', required=True, help='Where the JSON files go.')
    return parser
