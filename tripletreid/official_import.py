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
ADAM_SLOTS = ('Adam', 'Adam_1')  # TF1's names of Adam's first and second moments


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
    settings.update({key: value for key, value in dataclasses.asdict(experiment.TrainConfig(
        experiment_root=experiment_root)).items() if key in experiment.PER_RUN})
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


def adam_slots(optimizer, named):
    """[(our Adam moment, its name in TF1)] of each trainable variable of `named`: TF1's
    AdamOptimizer keeps m and v as `<variable>/Adam` and `<variable>/Adam_1`."""
    pairs = []
    for variable, name in named:
        if variable.trainable:
            index = optimizer._get_variable_index(variable)
            pairs += [(optimizer._momentums[index], f'{name}/{ADAM_SLOTS[0]}'),
                      (optimizer._velocities[index], f'{name}/{ADAM_SLOTS[1]}')]
    return pairs


def has_adam_slots(checkpoint):
    names = slim_checkpoint.variable_shapes(checkpoint)
    return any(name.endswith('/' + ADAM_SLOTS[0]) for name in names)


def import_checkpoint(checkpoint, config, step, notes):
    """Build the network of `config`, load the official `checkpoint` into it, with Adam's
    moments and step counter when it has them, and write the new experiment at `step`.

    Keras' Adam derives its bias corrections (TF1's `beta1_power`, `beta2_power`, which are
    beta^(step+1) after `step` steps) and the learning-rate schedule from its step counter, so
    setting the counter to the step resumes where the official training stopped. Without
    Adam's moments a resumed run would restart them from zero under a decayed rate: the
    experiment is marked so that `train.py --resume` refuses it.
    """
    name, head, dim = config.model_name, config.head_name, config.embedding_dim
    model = build_model(name, head, dim)
    optimizer = optimizer_of(config)
    optimizer.build(model.trainable_variables)
    context = f'--checkpoint {checkpoint} does not fit {name} + {head} ({dim}-D)'
    named = model_variables(model, context)
    resumable = has_adam_slots(checkpoint)
    if resumable:
        named += adam_slots(optimizer, named)
        optimizer.iterations.assign(step)
    slim_checkpoint.load_variables(checkpoint, named, context)
    os.makedirs(config.experiment_root, exist_ok=True)
    checkpoints = TrainingCheckpoints(config.experiment_root, model, optimizer)
    checkpoints.save(step)
    experiment.write_args(config)
    if not resumable:
        reason = (f'imported from {checkpoint}, which holds no Adam moments: embed.py and '
                  f'export.py use it, train.py --resume cannot continue it')
        checkpoints.forbid_resume(reason)
        notes.append(f'{checkpoint} holds no Adam moments ({ADAM_SLOTS[0]}, '
                     f'{ADAM_SLOTS[1]}): the experiment embeds and exports, but cannot be '
                     f'resumed.')
