"""The experiment: the one schema of train.py's flags, `args.json`, and its rules.

`TrainConfig` lists every flag of an experiment once (name, type, default, help); train.py's
parser is made from it, `args.json` stores it, and embed.py, export.py and import_official.py
read and check an experiment's args.json against it. Nothing here imports TensorFlow.
"""
import argparse
import dataclasses
import json
import math
import os
import random
import sys
import typing

from heads import HEADS
from nets import NETS, check_last_stride
from tripletreid import cli
from tripletreid.aggregators import AGGREGATORS
from tripletreid.curriculum import Curriculum
from tripletreid.errors import InputError
from tripletreid.files import write_json
from tripletreid.losses import ID_LOSSES, LOSSES, PAIR_FEATURES
from tripletreid.metrics import METRICS

STRATEGIES = ('none', 'mirrored', 'multi_worker')
MIXED_PRECISION = ('none', 'mixed_float16', 'mixed_bfloat16')
# Flags that describe this invocation rather than the experiment: never taken from args.json.
PER_RUN = ('experiment_root', 'resume', 'distribution', 'cpu_devices', 'show_batches',
           'show_batches_count', 'extend_to', 'log_every')


def flag(default=None, help=None, **argparse_options):
    """A field of `TrainConfig` and the options of its command-line flag."""
    return dataclasses.field(default=default, metadata=dict(argparse_options, help=help))


@dataclasses.dataclass
class TrainConfig:
    """Every flag of train.py, as args.json stores it."""
    experiment_root: str = flag(required=True,
                                help='Folder for checkpoints, logs and args.json.')
    train_set: str = flag(help='CSV of `identity,relative/path` rows.')
    image_root: str = flag(type=cli.readable_directory,
                           help='Folder the CSV paths are relative to.')
    resume: bool = flag(False, 'Continue from the newest checkpoint; the flags in args.json win.')
    model_name: str = flag('resnet_v1_50', choices=sorted(NETS))
    head_name: str = flag('fc1024', choices=sorted(HEADS))
    embedding_dim: int = flag(128, type=cli.positive_int)
    last_stride: int = flag(
        2, type=int, choices=[1, 2],
        help='1 removes the last downsampling of resnet_v1_* (output stride 16, as the '
             'Bag-of-Tricks baseline); 2, the default, is the official network.')
    initial_checkpoint: str = flag(
        help='Backbone weights to start from (a local file, never downloaded): a TF-slim '
             'ImageNet checkpoint (e.g. resnet_v1_50.ckpt) for the slim-layout backbones, a '
             'Keras `.weights.h5` file saved from the same backbone, or for `resnet50` Keras '
             'Applications\' ImageNet file.')
    batch_p: int = flag(32, 'Identities per batch (P).', type=cli.positive_int)
    batch_k: int = flag(4, 'Images per identity (K).', type=cli.positive_int)
    net_input_height: int = flag(256, type=cli.positive_int)
    net_input_width: int = flag(128, type=cli.positive_int)
    pre_crop_height: int = flag(288, type=cli.positive_int)
    pre_crop_width: int = flag(144, type=cli.positive_int)
    loading_threads: int = flag(8, type=cli.positive_int)
    margin: typing.Union[str, float] = flag(
        'soft', '`soft` (softplus), `none`, or a float margin for the hinge.',
        type=cli.margin_value)
    metric: str = flag('euclidean', choices=METRICS)
    loss: str = flag('batch_hard', choices=sorted(LOSSES))
    id_loss_weight: float = flag(
        0.0, 'Weight of an identity (softmax cross-entropy) loss added to the triplet loss, on '
             'a linear classifier over the embedding (after the BNNeck with --head_name '
             'bnneck); 0, the default, leaves it out as the official. 1 in the Bag-of-Tricks '
             'baseline.', type=cli.nonnegative_float)
    label_smoothing: float = flag(
        0.0, 'Label smoothing of the identity loss (0.1 in the Bag-of-Tricks baseline).',
        type=cli.probability)
    center_loss_weight: float = flag(
        0.0, 'Weight of the center loss on the triplet loss\'s feature; 0, the default, '
             'leaves it out. 0.0005 in the Bag-of-Tricks baseline.',
        type=cli.nonnegative_float)
    center_learning_rate: float = flag(
        0.5, 'SGD learning rate of the identity centers of the center loss.',
        type=cli.positive_float)
    id_loss: str = flag(
        'softmax', 'The identity loss of --id_loss_weight: `softmax` (the default), or a '
                   'margin-based softmax on L2-normalised embeddings and classifier weights, '
                   '`arcface` (Deng et al. 2019: logit s cos(theta + m) for the true identity; '
                   'cos(theta) - m sin(m) where theta + m would pass pi, as the reference '
                   'code) or `cosface` (Wang et al. 2018: s (cos(theta) - m)).',
        choices=sorted(ID_LOSSES))
    id_scale: float = flag(30.0, 'The scale s of --id_loss arcface and cosface.',
                           type=cli.positive_float)
    id_margin: float = flag(
        0.5, 'The margin m of --id_loss arcface (an angle, radians, below pi; 0.5 in the paper) '
             'and cosface (a cosine; 0.35 in the paper).', type=cli.nonnegative_float)
    verification_loss_weight: float = flag(
        0.0, 'Weight of the verification loss of the identification + verification network '
             '(DCE, Zheng et al. 2017): in every PK batch, each image is paired with one other '
             'image of its identity and one of another identity (drawn from --seed and the '
             'step), and a linear classifier with bias on each pair\'s --verification_pair '
             'feature of the embeddings (those the ID loss sees; 512-D in the paper: '
             '--embedding_dim) says same or different, trained with softmax cross-entropy. '
             'Needs K >= 2; DCE adds it to --id_loss_weight 1. 0, the default, leaves it out.',
        type=cli.nonnegative_float)
    verification_pair: str = flag(
        'product', 'What the verification classifier sees of a pair of embeddings x, y: '
                   '`product` (x * y, element-wise, the default) or `squared_difference` '
                   '((x - y)^2, the paper\'s square layer).', choices=sorted(PAIR_FEATURES))
    learning_rate: float = flag(3e-4, type=cli.positive_float)
    train_iterations: int = flag(25000, type=cli.positive_int)
    extend_to: int = flag(
        None, 'With --resume: train a run on to step N, above its --train_iterations, which '
              'args.json then records as N. The learning-rate schedule is that of an N-step '
              'run from the resume step on (a decay that had started is stretched to end at N, '
              'so the rate rises; a constant rate stays).', type=cli.positive_int, metavar='N')
    decay_start_iteration: int = flag(
        15000, 'Step at which the exponential decay to 0.001x starts; -1 disables it.', type=int)
    lr_schedule: str = flag(
        'paper', '`paper` (the default): constant, then the exponential decay above; `step`: '
                 'multiplied by --lr_decay_factor at each of --lr_decay_steps; `cosine`: '
                 'cosine decay to 0 at --train_iterations.', choices=['paper', 'step', 'cosine'])
    lr_decay_steps: list = flag(
        (), 'With --lr_schedule step: the rate drops after each of these numbers of steps.',
        type=cli.positive_int, nargs='+')
    lr_decay_factor: float = flag(0.1, 'With --lr_schedule step: the factor of each drop.',
                                  type=cli.positive_float)
    weight_decay: float = flag(
        0.0, 'Decoupled weight decay (AdamW) of the kernels; 0, the default, as the official.',
        type=cli.nonnegative_float)
    checkpoint_frequency: int = flag(
        1000, 'Save every this many steps; 0 saves only the first and final ones.',
        type=cli.nonnegative_int)
    keep_checkpoints: int = flag(
        0, 'Keep only the newest this many checkpoints; 0 keeps all (as the official).',
        type=cli.nonnegative_int)
    flip_augment: bool = flag(False)
    crop_augment: bool = flag(False)
    random_erasing_prob: float = flag(
        0.0, 'Random Erasing: the chance that a training image gets a rectangle of noise (0: '
             'off, as the official; 0.5 in the Bag-of-Tricks baseline).', type=cli.probability)
    random_erasing_area_min: float = flag(
        0.02, 'Smallest share of the image a Random Erasing rectangle covers.',
        type=cli.probability)
    random_erasing_area_max: float = flag(
        0.4, 'Largest share of the image a Random Erasing rectangle covers.',
        type=cli.probability)
    random_erasing_aspect_min: float = flag(
        0.3, 'Random Erasing aspect ratios lie in [this, 1/this], log-uniformly.',
        type=cli.probability)
    detailed_logs: bool = flag(
        False, 'Store each step\'s embeddings, losses and file names in memory-mapped arrays.')
    log_every: int = flag(
        1, 'Print the step line to the console every N steps (and the first and last); '
           'train.log and TensorBoard keep every step.', type=cli.positive_int, metavar='N')
    seed: int = flag(
        None, 'Seed of the weights and of every batch; drawn at random (and recorded) if '
              'absent.', type=cli.nonnegative_int)
    distribution: str = flag(
        'none', '`none`: one device; `mirrored`: every GPU of this host (its CPU split by '
                '--cpu_devices without GPUs); `multi_worker`: one process per host, the '
                'cluster given by the TF_CONFIG variable. The PK batch stays the global batch: '
                'each replica gets P/replicas whole identities, and the loss mines the whole '
                'batch.', choices=STRATEGIES)
    cpu_devices: int = flag(
        0, 'Split the CPU into this many logical devices (to try --distribution mirrored '
           'without GPUs).', type=cli.nonnegative_int)
    sync_batch_norm: bool = flag(
        False, 'Under --distribution, batch-norm statistics over the global batch (as on one '
               'device) instead of each replica\'s share (Keras\'s batch-norm code, which '
               'all-reduces the moments, instead of the fused kernel).')
    mixed_precision: str = flag(
        'none', 'Compute in 16-bit floats, keep the weights in 32-bit (Keras\'s mixed '
                'precision). mixed_float16 scales the loss dynamically against underflow; it is '
                'for GPUs (slower on CPUs). mixed_bfloat16 is the recommended setting on CPUs '
                'with AVX512_BF16: 1.8x the float32 step of resnet_v1_50, 1.76x that of lunet '
                'at 64x32, and as accurate (lunet on CUHK03, 3 seeds: mAP 15.85 against '
                '16.11; README).', choices=MIXED_PRECISION)
    deterministic: bool = flag(
        False, 'Make every op deterministic (tf.config.experimental.enable_op_determinism): '
               'with the same --seed, hardware and thread counts, a run gives bit-identical '
               'weights however often it is interrupted and resumed. Can be slower on GPUs.')
    warmup_iterations: int = flag(
        0, 'Raise the learning rate linearly from 1/N of its value to it over the first N '
           'steps; 0 (the default) starts at the full rate, as the official.',
        type=cli.nonnegative_int)
    curriculum_steps: int = flag(
        0, 'Grow P and K from --curriculum_start_p/k to --batch_p/k over the first N steps, in '
           f'{Curriculum.STAGES} stages; 0 (the default) uses them from the start.',
        type=cli.nonnegative_int)
    curriculum_start_p: int = flag(2, 'Identities per batch at the start of the curriculum.',
                                   type=cli.positive_int)
    curriculum_start_k: int = flag(2, 'Images per identity at the start of the curriculum.',
                                   type=cli.positive_int)
    show_batches: str = flag(
        None, 'Do not train: write a PNG grid of the first training batches to this file, as '
              'the pipeline makes them (P rows of K images, after resizing, flip, crop and '
              'random erasing, each row labelled with its identity), and exit. Nothing is '
              'written to the experiment root; with --resume, the flags are the '
              'experiment\'s.')
    show_batches_count: int = flag(2, 'How many of the first batches --show_batches draws.',
                                   type=cli.positive_int)

    @property
    def identity_losses(self):
        """Whether an identity loss (ID, center or verification) trains beside the triplet
        loss."""
        return bool(self.id_loss_weight or self.center_loss_weight
                    or self.verification_loss_weight)

    def curriculum(self):
        return Curriculum(self.batch_p, self.batch_k, self.curriculum_steps,
                          self.curriculum_start_p, self.curriculum_start_k)

    def to_json(self):
        """What args.json stores: every flag but the per-run ones."""
        return {key: value for key, value in dataclasses.asdict(self).items()
                if key not in PER_RUN}


def build_train_parser(description=None):
    """train.py's parser, one flag per field of `TrainConfig`."""
    parser = cli.ArgumentParser(description=description)
    for field in dataclasses.fields(TrainConfig):
        options = dict(field.metadata)
        if field.type is bool:
            options['action'] = 'store_true'
        else:
            options['default'] = (list(field.default) if isinstance(field.default, tuple)
                                  else field.default)
        parser.add_argument(f'--{field.name}', **options)
    return parser


def check_stored_args(stored, path):
    """Validate an `args.json` (possibly edited by hand) against train.py's flags."""
    actions = {a.dest: a for a in build_train_parser()._actions if a.option_strings}
    for key, value in stored.items():
        action = actions.get(key)
        if action is None:
            raise InputError(f'{path}: unknown key {key!r}')
        if value is None or action.type in cli.FILESYSTEM_TYPES:
            continue  # a moved experiment or dataset is not an invalid args.json
        try:
            if action.nargs == 0:
                if not isinstance(value, bool):
                    raise argparse.ArgumentTypeError('expected true or false')
            elif action.type is not None:
                for item in value if isinstance(value, list) else [value]:
                    action.type(str(item))
            if action.choices is not None and value not in action.choices:
                choices = ', '.join(map(str, action.choices))
                raise argparse.ArgumentTypeError(f'not one of {choices}')
        except (argparse.ArgumentTypeError, ValueError, TypeError) as error:
            raise InputError(f'{path}: invalid value {value!r} for {key!r}: {error}') from None


def load_args_json(path):
    """The flags of an args.json, as a dict (not yet checked: `check_stored_args`)."""
    try:
        with open(path) as f:
            stored = json.load(f)
    except FileNotFoundError:
        raise InputError(f'{path}: no such file (is this an experiment root?)') from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f'{path}: not valid JSON ({error})') from None
    if not isinstance(stored, dict):
        raise InputError(f'{path}: expected a JSON object of flags')
    return stored


def resolve(parser, argv=None, chief=True, replicas=1):
    """The flags of train.py's `parser` as a checked `TrainConfig`; on `--resume`, the
    experiment's flags from its args.json. `chief`: this process writes the files; `replicas`:
    the devices the batch is split among. Nothing is written: a new experiment's args.json
    comes once its training set has passed its checks (`write_args`)."""
    args = parser.parse_args(argv)
    args_file = os.path.join(args.experiment_root, 'args.json')
    if os.path.exists(args.experiment_root) and not os.path.isdir(args.experiment_root):
        raise InputError(f'--experiment_root {args.experiment_root}: is a file, not a folder')
    if args.resume:
        stored = load_args_json(args_file)
        check_stored_args(stored, args_file)
        given = cli.explicit_flags(parser, argv)
        for key, value in stored.items():
            if key in PER_RUN:
                continue
            if key in given and getattr(args, key) != value:
                longer = ' (to train longer, give --extend_to N)' * (key == 'train_iterations')
                print(f'Warning: for `--{key}` the value {value!r} from {args_file} is used, '
                      f'not the given {getattr(args, key)!r}{longer}.', file=sys.stderr)
            setattr(args, key, value)
        config = TrainConfig(**vars(args))
        if config.extend_to is not None:
            extend(config, args_file)
        check_divisible(config, replicas)
        return config
    if chief and os.path.isdir(args.experiment_root) and os.listdir(args.experiment_root):
        raise InputError(f'--experiment_root {args.experiment_root} is not empty; add --resume '
                         f'to continue that experiment, or choose a new folder')
    config = TrainConfig(**vars(args))
    check_flags(config, cli.explicit_flags(parser, argv))
    check_divisible(config, replicas)
    if config.seed is None:
        if config.distribution == 'multi_worker':
            raise InputError('--distribution multi_worker needs --seed: every worker must '
                             'draw the same batches')
        config.seed = random.randrange(2 ** 31)
    return config


def extend(config, args_file):
    """`--resume --extend_to N`: raise the run's train_iterations to N (training.run records
    it in args.json) and say on stderr how the learning rate goes on."""
    old, new = config.train_iterations, config.extend_to
    if new <= old:
        raise InputError(f'--extend_to {new} must be above the {old} steps that {args_file} '
                         f'records')
    print(f'Extending the run from {old} to {new} steps: {extended_schedule(config, new)}',
          file=sys.stderr)
    config.train_iterations = new


def extended_schedule(config, new):
    """How the learning-rate schedule of `config` (a run of config.train_iterations steps)
    goes on when the run is extended to `new` steps: it is recomputed for `new` steps."""
    old, start = config.train_iterations, config.decay_start_iteration
    if config.lr_schedule == 'paper' and not 0 <= start < new:
        return f'the learning rate stays constant at {config.learning_rate:g}.'
    if config.lr_schedule == 'paper' and start >= old:
        return (f'the learning rate, constant so far, decays from step {start} to 0.001x at '
                f'step {new}.')
    if config.lr_schedule == 'paper':
        return (f'the decay from step {start} is stretched to reach 0.001x at step {new} '
                f'instead of {old}, so from the resume step on the rate is that of a {new}-step '
                f'run: higher than where the {old}-step run had brought it.')
    if config.lr_schedule == 'cosine':
        return (f'the cosine decay is stretched to reach 0 at step {new} instead of {old}, so '
                f'the rate rises to that of a {new}-step run at the resume step.')
    return f'the {config.lr_schedule} schedule is that of a {new}-step run from the resume step on.'


def schedule_warning(config):
    """A warning for a paper schedule whose decay starts at or after the last step (the
    default 15000 of a short run): the rate then never decays. None otherwise."""
    start, total = config.decay_start_iteration, config.train_iterations
    if config.lr_schedule != 'paper' or start < total:
        return None
    return (f'--decay_start_iteration {start} is not below --train_iterations {total}: the '
            f'learning rate never decays. The official recipe decays from 3/5 of the run '
            f'(15000 of 25000): here --decay_start_iteration {total * 3 // 5}; -1 keeps the '
            f'rate constant without this warning.')


def check_divisible(config, replicas):
    """Each replica must get whole identities: every P (all curriculum stages) divides."""
    for _, p, _ in config.curriculum().stages:
        if p % replicas:
            raise InputError(f'P={p} identities per batch do not divide among {replicas} '
                             f'replicas; each replica needs whole identities, so choose '
                             f'--batch_p (and --curriculum_start_p) a multiple of {replicas}')


def check_flags(config, given):
    """Refuse flag combinations that cannot work, each with a one-line error; `given` are the
    flags given explicitly."""
    check_last_stride(config.model_name, config.last_stride)
    if (config.lr_schedule == 'step') != bool(config.lr_decay_steps):
        raise InputError('--lr_decay_steps goes with --lr_schedule step, and it needs them')
    if list(config.lr_decay_steps) != sorted(set(config.lr_decay_steps)):
        raise InputError('--lr_decay_steps must be increasing')
    if not config.train_set:
        raise InputError('--train_set is required (unless resuming)')
    if config.extend_to is not None:
        raise InputError('--extend_to trains an experiment longer: it goes with --resume '
                         '(a new run gives --train_iterations)')
    if config.crop_augment and (config.pre_crop_height < config.net_input_height
                                or config.pre_crop_width < config.net_input_width):
        raise InputError('--crop_augment needs --pre_crop_height/width at least '
                         '--net_input_height/width')
    for name in ('warmup_iterations', 'curriculum_steps'):
        if getattr(config, name) >= config.train_iterations:
            raise InputError(f'--{name} {getattr(config, name)} must be less than '
                             f'--train_iterations {config.train_iterations}')
    if not 0 < config.random_erasing_area_min <= config.random_erasing_area_max:
        raise InputError('--random_erasing_area_min must be above 0 and at most '
                         '--random_erasing_area_max')
    if not config.random_erasing_aspect_min:
        raise InputError('--random_erasing_aspect_min must be above 0')
    for name, needs in (('label_smoothing', 'id_loss_weight'), ('id_loss', 'id_loss_weight'),
                        ('center_learning_rate', 'center_loss_weight'),
                        ('verification_pair', 'verification_loss_weight')):
        if name in given and not getattr(config, needs):
            raise InputError(f'--{name} needs --{needs} above 0')
    check_identity_flags(config, given)
    for size in ('p', 'k'):
        start, final = getattr(config, f'curriculum_start_{size}'), getattr(config, f'batch_{size}')
        if not config.curriculum_steps and f'curriculum_start_{size}' in given:
            raise InputError(f'--curriculum_start_{size} needs --curriculum_steps')
        if start > final:
            raise InputError(f'--curriculum_start_{size} {start} is larger than '
                             f'--batch_{size} {final}')


def check_identity_flags(config, given):
    """The margin-based identity losses' and the verification loss's flags."""
    for name in ('id_scale', 'id_margin'):
        if name in given and config.id_loss == 'softmax':
            raise InputError(f'--{name} needs --id_loss arcface or cosface')
    if config.id_loss == 'arcface' and config.id_margin >= math.pi:
        raise InputError(f'--id_margin {config.id_margin} must be below pi for --id_loss '
                         f'arcface (an angle)')
    if config.verification_loss_weight:
        for name in ('batch_k', 'curriculum_start_k'):
            if getattr(config, name) < 2 and (name == 'batch_k' or config.curriculum_steps):
                raise InputError(f'--verification_loss_weight needs --{name} at least 2: every '
                                 f'image is paired with another of its identity')
    if 'show_batches_count' in given and not config.show_batches:
        raise InputError('--show_batches_count needs --show_batches')


def write_args(config):
    """Create the experiment root with its args.json (a new experiment's chief only)."""
    try:
        os.makedirs(config.experiment_root, exist_ok=True)
        write_json(os.path.join(config.experiment_root, 'args.json'), config.to_json())
    except OSError as error:
        raise InputError(f'--experiment_root {config.experiment_root}: cannot write '
                         f'({error.strerror})') from None


# What inference needs of a trained experiment.

@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The network of an experiment and its input sizes, as embed.py and export.py build it."""
    model_name: str
    head_name: str
    embedding_dim: int
    net_input_height: int
    net_input_width: int
    pre_crop_height: int
    pre_crop_width: int
    last_stride: int = 2  # absent from older experiments

    @property
    def net_size(self):
        return self.net_input_height, self.net_input_width

    @property
    def pre_crop_size(self):
        return self.pre_crop_height, self.pre_crop_width


def read_experiment(experiment_root):
    """(the `ModelSpec` of the experiment's args.json, all of args.json), checked against
    train.py's flags (it may be edited by hand)."""
    if not os.path.isdir(experiment_root):
        raise InputError(f'{experiment_root}: no such experiment directory')
    args_file = os.path.join(experiment_root, 'args.json')
    trained = load_args_json(args_file)
    check_stored_args(trained, args_file)
    names = [field.name for field in dataclasses.fields(ModelSpec)]
    for key in names[:-1]:
        if key not in trained:
            raise InputError(f'{args_file}: {key!r} is missing')
    return ModelSpec(**{key: trained[key] for key in names if key in trained}), trained


def add_experiment_flags(parser):
    """`--experiment_root` and `--checkpoint`, of every script that uses a trained model."""
    parser.add_argument('--experiment_root', required=True,
                        help='The trained experiment (with args.json).')
    parser.add_argument('--checkpoint', default=None,
                        help='Checkpoint name in the experiment root, e.g. checkpoint-25000 '
                             '(default: newest).')


def add_image_root_flag(parser):
    """`--image_root` of the scripts that read a CSV's images with a trained experiment."""
    parser.add_argument('--image_root', type=cli.readable_directory,
                        help='Folder the CSV paths are relative to (default: the one of '
                             'training).')


def add_view_flags(parser):
    """The test-time views and batching flags of the scripts that embed images."""
    add = parser.add_argument
    add('--loading_threads', default=8, type=cli.positive_int)
    add('--batch_size', default=256, type=cli.positive_int)
    add('--flip_augment', action='store_true', help='Also embed the mirrored image.')
    add('--crop_augment', choices=['center', 'avgpool', 'five'], default=None,
        help='`center`: the centre crop of the pre-crop-sized image; `five`: centre and four '
             'corner crops; `avgpool`: the whole pre-crop-sized image (the network pools). '
             'Without it the image is resized to the network input size.')
    add('--aggregator', choices=sorted(AGGREGATORS), default=None,
        help='How to combine the views; required exactly when there is more than one.')
    add('--quiet', action='store_true', help='Print less.')
