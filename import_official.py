#!/usr/bin/env python3
"""Import a checkpoint of the official TF1 code into a new experiment root.

E.g. the released Market-1501 TriNet (`checkpoint-25000`: resnet_v1_50, fc1024, 128-D). The
new root holds our checkpoint at the official step and an args.json, so `embed.py` uses it as
it is. The network comes from the official run's args.json; without one (the release has
none), from the official defaults and the flags here.
"""
import argparse
import os
import random
import re
import sys

import common

common.quiet_tensorflow()

import keras  # noqa: E402

import train  # noqa: E402  (its parser gives args.json's flags and defaults)
from checkpoints import TrainingCheckpoints  # noqa: E402
from common import InputError  # noqa: E402
from embedding_model import build_model  # noqa: E402
from heads import HEADS  # noqa: E402
from nets import NETS, slim_checkpoint  # noqa: E402

# Our head layers' first name part -> the official head's variable scope. The official train.py
# builds the head inside `tf.name_scope('head')`, which names ops but not variables: slim's
# variables are `fully_connected/...` and `emb/...`, without `head/`.
HEAD_SCOPES = {'fc1024': 'fully_connected'}
OVERRIDES = ('model_name', 'head_name', 'embedding_dim')
STEP = re.compile(r'-(\d+)$')


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__)
    add = parser.add_argument
    add('--checkpoint', required=True,
        help='The official checkpoint by its prefix, e.g. market1501/checkpoint-25000 '
             '(without .index or .data-*).')
    add('--experiment_root', required=True,
        help='The experiment root to create; an existing one must be empty.')
    add('--args_json', default=None,
        help='The official run\'s args.json (default: the one beside the checkpoint, if any).')
    add('--model_name', choices=sorted(NETS), help='Overrides args.json.')
    add('--head_name', choices=sorted(HEADS), help='Overrides args.json.')
    add('--embedding_dim', type=common.positive_int, help='Overrides args.json.')
    return parser


def official_step(path):
    """The training step, from the name the official code gives: `checkpoint-<step>`."""
    if not slim_checkpoint.is_tf_checkpoint(path):
        raise InputError(f'--checkpoint {path}: no such checkpoint (give its prefix, e.g. '
                         f'checkpoint-25000, without .index or .data-*)')
    match = STEP.search(os.path.basename(path))
    if not match:
        raise InputError(f'--checkpoint {path}: no step in the name (expected <name>-<step>, '
                         f'as checkpoint-25000)')
    return int(match.group(1))


def refuse_existing(root):
    """As train.py: an experiment is never mixed into the files of another."""
    if os.path.exists(root) and not (os.path.isdir(root) and not os.listdir(root)):
        raise InputError(f'--experiment_root {root} exists and is not an empty folder; '
                         f'choose a new one')


def official_args(parser, path, notes):
    """The official run's args.json, checked; its `image_root` is dropped if not a folder here,
    as it names a folder of the machine it was trained on (embed.py then needs --image_root).
    """
    official = common.load_args_json(path)
    image_root = official.get('image_root')
    if image_root and not os.path.isdir(image_root):
        notes.append(f'image_root {image_root} of {path} is not a folder here: left out '
                     f'(give embed.py --image_root).')
        official['image_root'] = None
    common.check_stored_args(parser, official, path)
    return official


def experiment_args(args, notes):
    """The new args.json: our defaults, then the official run's flags, then the flags here.

    What the user should know goes to `notes`, shown once the import has succeeded (so that an
    error stays one line).
    """
    parser = train.build_parser()
    settings = vars(parser.parse_args(['--experiment_root', args.experiment_root]))
    path = args.args_json or os.path.join(os.path.dirname(args.checkpoint), 'args.json')
    if args.args_json or os.path.isfile(path):
        settings.update(official_args(parser, path, notes))
    else:
        notes.append(f'No args.json beside {args.checkpoint}: the official defaults are used.')
    settings.update({key: getattr(args, key) for key in OVERRIDES
                     if getattr(args, key) is not None})
    if settings['seed'] is None:  # as train.py: recorded, so that a resumed run has one
        settings['seed'] = random.randrange(2 ** 31)
    return {key: value for key, value in settings.items() if key not in train.PER_RUN}


def model_variables(model, context):
    """[(variable, official checkpoint name)]: the backbone (the nested model) under its slim
    scope, the head under the official head's names."""
    backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    head = [layer for layer in model.layers if layer is not backbone]
    return (slim_checkpoint.backbone_variables(backbone, context)
            + slim_checkpoint.named_variables(head, renames=HEAD_SCOPES))


def write_experiment(root, model, settings, step):
    """Our checkpoint at `step`, with a fresh optimizer so that it restores as train.py's do."""
    optimizer = train.make_optimizer(argparse.Namespace(**settings))
    optimizer.build(model.trainable_variables)
    os.makedirs(root, exist_ok=True)
    TrainingCheckpoints(root, model, optimizer).save(step)
    common.write_json(os.path.join(root, 'args.json'), settings)


def main(argv=None):
    args = build_parser().parse_args(argv)
    step = official_step(args.checkpoint)
    refuse_existing(args.experiment_root)
    notes = []
    settings = experiment_args(args, notes)
    name, head, dim = (settings[key] for key in OVERRIDES)
    model = build_model(name, head, dim)
    context = f'--checkpoint {args.checkpoint} does not fit {name} + {head} ({dim}-D)'
    slim_checkpoint.load_variables(args.checkpoint, model_variables(model, context),
                                   context)
    write_experiment(args.experiment_root, model, settings, step)
    for line in notes + [f'Imported {args.checkpoint} ({name} + {head}, {dim}-D, step {step}) '
                         f'into {args.experiment_root}']:
        print(line, file=sys.stderr)


if __name__ == '__main__':
    common.run_cli(main)
