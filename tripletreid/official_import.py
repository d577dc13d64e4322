"""Importing a checkpoint of the official TF1 code into a new experiment root."""
import dataclasses
import os
import random
import re

import keras

from tripletreid import experiment, slim_checkpoint
from tripletreid.checkpoints import TrainingCheckpoints
from tripletreid.errors import InputError
from tripletreid.model import build_model
from tripletreid.schedules import optimizer_of

# Our head layers' first name part -> the official head's variable scope. The official train.py
# builds the head inside `tf.name_scope('head')`, which names ops but not variables: slim's
# variables are `fully_connected/...` and `emb/...`, without `head/`.
HEAD_SCOPES = {'fc1024': 'fully_connected'}
STEP = re.compile(r'-(\d+)$')


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


def official_args(path, notes):
    """The official run's args.json, checked; its `image_root` is dropped if not a folder here,
    as it names a folder of the machine it was trained on (embed.py then needs --image_root).
    """
    official = experiment.load_args_json(path)
    image_root = official.get('image_root')
    if image_root and not os.path.isdir(image_root):
        notes.append(f'image_root {image_root} of {path} is not a folder here: left out '
                     f'(give embed.py --image_root).')
        official['image_root'] = None
    experiment.check_stored_args(official, path)
    return official


def experiment_config(experiment_root, checkpoint, args_json, overrides, notes):
    """The new experiment's `TrainConfig`: our defaults, then the official run's flags (from
    `args_json`, default: the args.json beside `checkpoint`, if any), then `overrides`
    ({flag: value}).

    What the user should know goes to `notes`, shown once the import has succeeded (so that an
    error stays one line).
    """
    settings = dataclasses.asdict(experiment.TrainConfig(experiment_root=experiment_root))
    path = args_json or os.path.join(os.path.dirname(checkpoint), 'args.json')
    if args_json or os.path.isfile(path):
        settings.update(official_args(path, notes))
    else:
        notes.append(f'No args.json beside {checkpoint}: the official defaults are used.')
    settings.update(overrides)
    if settings['seed'] is None:  # as train.py: recorded, so that a resumed run has one
        settings['seed'] = random.randrange(2 ** 31)
    settings['lr_decay_steps'] = list(settings['lr_decay_steps'])
    return experiment.TrainConfig(**settings)


def model_variables(model, context):
    """[(variable, official checkpoint name)]: the backbone (the nested model) under its slim
    scope, the head under the official head's names."""
    backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    head = [layer for layer in model.layers if layer is not backbone]
    return (slim_checkpoint.backbone_variables(backbone, context)
            + slim_checkpoint.named_variables(head, renames=HEAD_SCOPES))


def write_experiment(config, model, step):
    """Our checkpoint at `step`, with a fresh optimizer so that it restores as train.py's do."""
    optimizer = optimizer_of(config)
    optimizer.build(model.trainable_variables)
    os.makedirs(config.experiment_root, exist_ok=True)
    TrainingCheckpoints(config.experiment_root, model, optimizer).save(step)
    experiment.write_args(config)


def import_checkpoint(checkpoint, config, step):
    """Build the network of `config`, load the official `checkpoint` into it and write the new
    experiment at `step`."""
    name, head, dim = config.model_name, config.head_name, config.embedding_dim
    model = build_model(name, head, dim)
    context = f'--checkpoint {checkpoint} does not fit {name} + {head} ({dim}-D)'
    slim_checkpoint.load_variables(checkpoint, model_variables(model, context), context)
    write_experiment(config, model, step)
