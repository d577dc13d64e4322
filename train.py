#!/usr/bin/env python3
"""Train an embedding network with the batch-hard triplet loss (official flags and defaults)."""
import argparse
import logging
import os
import random
import sys
import time

import common

common.quiet_tensorflow()

import distribution  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from checkpoints import TrainingCheckpoints  # noqa: E402
from common import InputError  # noqa: E402
from data import csv_dataset, pipeline  # noqa: E402
from embedding_model import build_model, training_model  # noqa: E402
from heads import HEADS  # noqa: E402
from identity_losses import IdentityLosses  # noqa: E402
from loss import LOSSES, METRICS, cdist, monitoring  # noqa: E402
from nets import NETS, check_last_stride  # noqa: E402
from nets.fused_batch_norm import fuse  # noqa: E402
from schedules import LinearWarmUp, PaperDecay  # noqa: E402
from train_logs import TrainingLogs  # noqa: E402

LOG = logging.getLogger('train')
# Flags that describe this invocation rather than the experiment: never taken from args.json.
PER_RUN = ('experiment_root', 'resume', 'distribution', 'cpu_devices')


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__)
    add = parser.add_argument
    add('--experiment_root', required=True,
        help='Folder for checkpoints, logs and args.json.')
    add('--train_set', help='CSV of `identity,relative/path` rows.')
    add('--image_root', type=common.readable_directory,
        help='Folder the CSV paths are relative to.')
    add('--resume', action='store_true',
        help='Continue from the newest checkpoint; the flags in args.json win.')
    add('--model_name', default='resnet_v1_50', choices=sorted(NETS))
    add('--head_name', default='fc1024', choices=sorted(HEADS))
    add('--embedding_dim', default=128, type=common.positive_int)
    add('--last_stride', default=2, type=int, choices=[1, 2],
        help='1 removes the last downsampling of resnet_v1_* (output stride 16, as the '
             'Bag-of-Tricks baseline); 2, the default, is the official network.')
    add('--initial_checkpoint', default=None,
        help='Backbone weights to start from (a local file, never downloaded): a TF-slim '
             'ImageNet checkpoint (e.g. resnet_v1_50.ckpt) for the slim-layout backbones, a '
             'Keras `.weights.h5` file saved from the same backbone, or for `resnet50` Keras '
             'Applications\' ImageNet file.')
    add('--batch_p', default=32, type=common.positive_int, help='Identities per batch (P).')
    add('--batch_k', default=4, type=common.positive_int, help='Images per identity (K).')
    add('--net_input_height', default=256, type=common.positive_int)
    add('--net_input_width', default=128, type=common.positive_int)
    add('--pre_crop_height', default=288, type=common.positive_int)
    add('--pre_crop_width', default=144, type=common.positive_int)
    add('--loading_threads', default=8, type=common.positive_int)
    add('--margin', default='soft', type=common.margin_value,
        help='`soft` (softplus), `none`, or a float margin for the hinge.')
    add('--metric', default='euclidean', choices=METRICS)
    add('--loss', default='batch_hard', choices=sorted(LOSSES))
    add('--id_loss_weight', default=0.0, type=common.nonnegative_float,
        help='Weight of an identity (softmax cross-entropy) loss added to the triplet loss, '
             'on a linear classifier over the embedding (after the BNNeck with --head_name '
             'bnneck); 0, the default, leaves it out as the official. 1 in the Bag-of-Tricks '
             'baseline.')
    add('--label_smoothing', default=0.0, type=common.probability,
        help='Label smoothing of the identity loss (0.1 in the Bag-of-Tricks baseline).')
    add('--center_loss_weight', default=0.0, type=common.nonnegative_float,
        help='Weight of the center loss on the triplet loss\'s feature; 0, the default, leaves '
             'it out. 0.0005 in the Bag-of-Tricks baseline.')
    add('--center_learning_rate', default=0.5, type=common.positive_float,
        help='SGD learning rate of the identity centers of the center loss.')
    add('--learning_rate', default=3e-4, type=common.positive_float)
    add('--train_iterations', default=25000, type=common.positive_int)
    add('--decay_start_iteration', default=15000, type=int,
        help='Step at which the exponential decay to 0.001x starts; -1 disables it.')
    add('--lr_schedule', default='paper', choices=['paper', 'step', 'cosine'],
        help='`paper` (the default): constant, then the exponential decay above; `step`: '
             'multiplied by --lr_decay_factor at each of --lr_decay_steps; `cosine`: '
             'cosine decay to 0 at --train_iterations.')
    add('--lr_decay_steps', default=[], type=common.positive_int, nargs='+',
        help='With --lr_schedule step: the rate drops after each of these numbers of steps.')
    add('--lr_decay_factor', default=0.1, type=common.positive_float,
        help='With --lr_schedule step: the factor of each drop.')
    add('--weight_decay', default=0.0, type=common.nonnegative_float,
        help='Decoupled weight decay (AdamW) of the kernels; 0, the default, as the official.')
    add('--checkpoint_frequency', default=1000, type=common.nonnegative_int,
        help='Save every this many steps; 0 saves only the first and final ones.')
    add('--keep_checkpoints', default=0, type=common.nonnegative_int,
        help='Keep only the newest this many checkpoints; 0 keeps all (as the official).')
    add('--flip_augment', action='store_true')
    add('--crop_augment', action='store_true')
    add('--random_erasing_prob', default=0.0, type=common.probability,
        help='Random Erasing: the chance that a training image gets a rectangle of noise '
             '(0: off, as the official; 0.5 in the Bag-of-Tricks baseline).')
    add('--random_erasing_area_min', default=0.02, type=common.probability,
        help='Smallest share of the image a Random Erasing rectangle covers.')
    add('--random_erasing_area_max', default=0.4, type=common.probability,
        help='Largest share of the image a Random Erasing rectangle covers.')
    add('--random_erasing_aspect_min', default=0.3, type=common.probability,
        help='Random Erasing aspect ratios lie in [this, 1/this], log-uniformly.')
    add('--detailed_logs', action='store_true',
        help='Store each step\'s embeddings, losses and file names in memory-mapped arrays.')
    add('--seed', default=None, type=common.nonnegative_int,
        help='Seed of the weights and of every batch; drawn at random (and recorded) if absent.')
    add('--distribution', default='none', choices=distribution.STRATEGIES,
        help='`none`: one device; `mirrored`: every GPU of this host (its CPU split by '
             '--cpu_devices without GPUs); `multi_worker`: one process per host, the cluster '
             'given by the TF_CONFIG variable. The PK batch stays the global batch: each '
             'replica gets P/replicas whole identities, and the loss mines the whole batch.')
    add('--cpu_devices', default=0, type=common.nonnegative_int,
        help='Split the CPU into this many logical devices (to try --distribution mirrored '
             'without GPUs).')
    add('--sync_batch_norm', action='store_true',
        help='Under --distribution, batch-norm statistics over the global batch (as on one '
             'device) instead of each replica\'s share (Keras\'s batch-norm code, which '
             'all-reduces the moments, instead of the fused kernel).')
    add('--mixed_precision', default='none', choices=['none', 'mixed_float16', 'mixed_bfloat16'],
        help='Compute in 16-bit floats, keep the weights in 32-bit (Keras\'s mixed precision). '
             'mixed_float16 scales the loss dynamically against underflow; it is for GPUs '
             '(slower on CPUs). mixed_bfloat16 also runs faster on CPUs with AVX512_BF16 '
             '(1.8x for resnet_v1_50, BENCHMARKS.md), but moves the first gradients far from '
             'float32\'s: check it against a float32 run before relying on it.')
    add('--deterministic', action='store_true',
        help='Make every op deterministic (tf.config.experimental.enable_op_determinism): '
             'with the same --seed, hardware and thread counts, a run gives bit-identical '
             'weights however often it is interrupted and resumed. Can be slower on GPUs.')
    add('--warmup_iterations', default=0, type=common.nonnegative_int,
        help='Raise the learning rate linearly from 1/N of its value to it over the first N '
             'steps; 0 (the default) starts at the full rate, as the official.')
    add('--curriculum_steps', default=0, type=common.nonnegative_int,
        help='Grow P and K from --curriculum_start_p/k to --batch_p/k over the first N steps, '
             f'in {pipeline.Curriculum.STAGES} stages; 0 (the default) uses them from the start.')
    add('--curriculum_start_p', default=2, type=common.positive_int,
        help='Identities per batch at the start of the curriculum.')
    add('--curriculum_start_k', default=2, type=common.positive_int,
        help='Images per identity at the start of the curriculum.')
    return parser


def resolve_args(parser, argv=None, chief=True, replicas=1):
    """Parse and check the flags; on `--resume`, take the experiment's flags from its
    args.json. Nothing is written: a new experiment's args.json comes once its training set has
    passed its checks (`write_args`).
    """
    args = parser.parse_args(argv)
    args_file = os.path.join(args.experiment_root, 'args.json')
    if os.path.exists(args.experiment_root) and not os.path.isdir(args.experiment_root):
        raise InputError(f'--experiment_root {args.experiment_root}: is a file, not a folder')
    if args.resume:
        stored = common.load_args_json(args_file)
        common.check_stored_args(parser, stored, args_file)
        given = common.explicit_flags(parser, argv)
        for key, value in stored.items():
            if key in PER_RUN:
                continue
            if key in given and getattr(args, key) != value:
                print(f'Warning: for `--{key}` the value {value!r} from {args_file} is used, '
                      f'not the given {getattr(args, key)!r}.', file=sys.stderr)
            setattr(args, key, value)
        distribution.check_divisible(batch_sizes(args), replicas)
        return args
    if chief and os.path.isdir(args.experiment_root) and os.listdir(args.experiment_root):
        raise InputError(f'--experiment_root {args.experiment_root} is not empty; add --resume '
                         f'to continue that experiment, or choose a new folder')
    check_flags(args, common.explicit_flags(parser, argv))
    distribution.check_divisible(batch_sizes(args), replicas)
    if args.seed is None:
        if args.distribution == 'multi_worker':
            raise InputError('--distribution multi_worker needs --seed: every worker must '
                             'draw the same batches')
        args.seed = random.randrange(2 ** 31)
    return args


def write_args(args):
    """Create the experiment root with its args.json (a new experiment's chief only)."""
    try:
        os.makedirs(args.experiment_root, exist_ok=True)
        common.write_json(os.path.join(args.experiment_root, 'args.json'),
                          {k: v for k, v in vars(args).items() if k not in PER_RUN})
    except OSError as error:
        raise InputError(f'--experiment_root {args.experiment_root}: cannot write '
                         f'({error.strerror})') from None


def batch_sizes(args):
    """Every P the run uses (the curriculum's stages, then --batch_p)."""
    return [p for _, p, _ in make_curriculum(args).stages]


def make_curriculum(args):
    return pipeline.Curriculum(args.batch_p, args.batch_k, args.curriculum_steps,
                               args.curriculum_start_p, args.curriculum_start_k)


def check_flags(args, given):
    """Refuse flag combinations that cannot work, each with a one-line error."""
    check_last_stride(args.model_name, args.last_stride)
    if (args.lr_schedule == 'step') != bool(args.lr_decay_steps):
        raise InputError('--lr_decay_steps goes with --lr_schedule step, and it needs them')
    if list(args.lr_decay_steps) != sorted(set(args.lr_decay_steps)):
        raise InputError('--lr_decay_steps must be increasing')
    if not args.train_set:
        raise InputError('--train_set is required (unless resuming)')
    if args.crop_augment and (args.pre_crop_height < args.net_input_height
                              or args.pre_crop_width < args.net_input_width):
        raise InputError('--crop_augment needs --pre_crop_height/width at least '
                         '--net_input_height/width')
    for flag in ('warmup_iterations', 'curriculum_steps'):
        if getattr(args, flag) >= args.train_iterations:
            raise InputError(f'--{flag} {getattr(args, flag)} must be less than '
                             f'--train_iterations {args.train_iterations}')
    if not 0 < args.random_erasing_area_min <= args.random_erasing_area_max:
        raise InputError('--random_erasing_area_min must be above 0 and at most '
                         '--random_erasing_area_max')
    if not args.random_erasing_aspect_min:
        raise InputError('--random_erasing_aspect_min must be above 0')
    for flag, needs in (('label_smoothing', 'id_loss_weight'),
                        ('center_learning_rate', 'center_loss_weight')):
        if flag in given and not getattr(args, needs):
            raise InputError(f'--{flag} needs --{needs} above 0')
    for size in ('p', 'k'):
        start, final = getattr(args, f'curriculum_start_{size}'), getattr(args, f'batch_{size}')
        if not args.curriculum_steps and f'curriculum_start_{size}' in given:
            raise InputError(f'--curriculum_start_{size} needs --curriculum_steps')
        if start > final:
            raise InputError(f'--curriculum_start_{size} {start} is larger than '
                             f'--batch_{size} {final}')


def load_training_set(args):
    """Read and check the CSV, every image and P against the identities; identities become
    labels 0..n-1."""
    dataset = csv_dataset.read_csv(args.train_set)
    pipeline.check_batch_p(args.batch_p, len(set(dataset.pids)))
    csv_dataset.check_images(dataset, args.image_root or '', args.loading_threads)
    pipeline.check_decodable(dataset, args.image_root, args.loading_threads)
    _, labels = np.unique(dataset.pids, return_inverse=True)
    return dataset, labels


def make_train_step(model, optimizer, args, identity=None, strategy=None):
    """One optimisation step as a `tf.function` of a (distributed) batch: returns the values
    the logs need, of the whole batch.

    The triplet loss trains the feature `embedding_model.training_model` gives (before a
    BNNeck, if any); `identity` (an `IdentityLosses`) adds the ID and center losses. Under a
    `strategy` of N replicas, every replica gathers the features of all and computes the loss
    of the whole batch, divided by N: the optimizer sums the replicas' gradients, and through
    the gather each replica's features get the gradient of the whole loss, so N devices train
    as one device on the same batch.

    Batch sizes change during a curriculum: `reduce_retracing` lets the second size trace a
    step for any size instead of one per size. K, for the precision at K-1, is that of the batch
    (batches are P identities of K images each). Losses that sample get a stateless seed of
    (--seed, step), so a resumed run draws what an uninterrupted one would.
    """
    strategy = strategy or tf.distribute.get_strategy()
    loss_fn = LOSSES[args.loss]
    features_model = training_model(model)
    variables = model.trainable_variables + (identity.classifier_variables if identity else [])
    centers = [identity.centers] if identity and identity.centers is not None else []
    scales_loss = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    def replica_step(images, labels, rows, seed):
        with tf.GradientTape() as tape:
            outputs = features_model(images, training=True)
            features, embeddings = (distribution.gather(tf.cast(t, tf.float32)) for t in outputs)
            labels, rows = distribution.gather(labels), distribution.gather(rows)
            dists = cdist(features, features, args.metric)
            losses = loss_fn(dists, labels, args.margin, seed)
            total = tf.reduce_mean(losses)
            with tf.GradientTape(watch_accessed_variables=False) as center_tape:
                center_tape.watch(centers[0] if centers else [])
                parts = identity(features, embeddings, labels) if identity else {}
            if parts:
                total += identity.weighted_sum(parts)
            objective = total / strategy.num_replicas_in_sync
            if scales_loss:
                objective = optimizer.scale_loss(objective)
        optimizer.apply_gradients(zip(tape.gradient(objective, variables), variables))
        if centers:  # each replica's gradient is that of the whole batch's center loss
            gradient = tf.convert_to_tensor(center_tape.gradient(parts['center_loss'], centers[0]))
            identity.update_centers(gradient / strategy.num_replicas_in_sync)
        batch_k = tf.size(labels) // tf.size(tf.unique(labels).y)
        return dict(monitoring(dists, labels, batch_k - 1), losses=losses, rows=rows,
                    embeddings=features, dists=dists, **parts,
                    active=tf.reduce_sum(tf.cast(losses > 1e-5, tf.float32)))

    @tf.function(reduce_retracing=True)
    def step(images, labels, rows):
        seed = tf.stack([tf.constant(args.seed, tf.int64),
                         tf.cast(optimizer.iterations, tf.int64)])
        values = strategy.run(replica_step, args=(images, labels, rows, seed))
        return {name: strategy.experimental_local_results(value)[0]
                for name, value in values.items()}
    return step


def make_identity_losses(args, num_identities):
    """The ID and center losses the flags ask for, or None (the official recipe)."""
    if not (args.id_loss_weight or args.center_loss_weight):
        return None
    return IdentityLosses(num_identities, args.embedding_dim, args.id_loss_weight,
                          args.label_smoothing, args.center_loss_weight,
                          args.center_learning_rate)


def make_schedule(args, kind='paper', decay_steps=(), decay_factor=0.1):
    """The learning rate as a function of the step: the paper's (default), step or cosine."""
    if kind == 'step':
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            [s - 1 for s in decay_steps],  # the rate drops after that many steps
            [args.learning_rate * decay_factor ** i for i in range(len(decay_steps) + 1)])
    if kind == 'cosine':
        return keras.optimizers.schedules.CosineDecay(args.learning_rate, args.train_iterations)
    return PaperDecay(args.learning_rate, args.decay_start_iteration, args.train_iterations)


def make_optimizer(args, warmup_iterations=0, weight_decay=0.0, **schedule):
    """Adam with TF1's defaults (epsilon 1e-8) and a learning-rate schedule (`make_schedule`),
    after a linear warm-up over `warmup_iterations` steps if any.

    `weight_decay` is decoupled (AdamW): each step shrinks every kernel by learning rate times
    `weight_decay`; batch-norm parameters and biases are left alone.
    """
    rate = make_schedule(args, **schedule)
    if warmup_iterations:
        rate = LinearWarmUp(rate, warmup_iterations)
    optimizer = keras.optimizers.Adam(rate, epsilon=1e-8, weight_decay=weight_decay or None)
    if weight_decay:
        optimizer.exclude_from_weight_decay(var_names=['gamma', 'beta', 'bias'])
    return optimizer


def build_training(args, strategy, num_identities, fused_batch_norm=True):
    """The model, the optimizer and the identity losses, their variables made under
    `strategy` (mirrored on every replica) and in the --mixed_precision policy.

    The model's batch norms train with fused kernels (`nets.fused_batch_norm`; the same
    variables, so its checkpoints are those of `build_model`'s); `fused_batch_norm=False`
    keeps Keras' own, for comparison."""
    if args.mixed_precision != 'none':
        keras.mixed_precision.set_global_policy(args.mixed_precision)
    with strategy.scope():
        model = build_model(args.model_name, args.head_name, args.embedding_dim,
                            None if args.resume else args.initial_checkpoint, args.last_stride)
        if fused_batch_norm:
            model = fuse(model)
        if args.sync_batch_norm:
            distribution.synchronize_batch_norm(model)
        optimizer = make_optimizer(args, args.warmup_iterations, args.weight_decay,
                                   kind=args.lr_schedule, decay_steps=args.lr_decay_steps,
                                   decay_factor=args.lr_decay_factor)
        if args.mixed_precision == 'mixed_float16':  # float16 gradients underflow unscaled
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        identity = make_identity_losses(args, num_identities)
        optimizer.build(model.trainable_variables
                        + (identity.classifier_variables if identity else []))
    return model, optimizer, identity


def distributed_batches(strategy, dataset, args, labels, start, curriculum):
    """The PK batches from step `start` on, each replica's share on its device."""
    def replica_batches(context):
        return pipeline.train_dataset(
            dataset, args.image_root, args, labels, start, curriculum,
            shard=(context.input_pipeline_id, context.num_input_pipelines,
                   context.num_replicas_in_sync))
    return strategy.distribute_datasets_from_function(replica_batches)


def train(args, dataset, labels, strategy=None, chief=True):
    """Train on `dataset` (`load_training_set`) from scratch or from the newest checkpoint.
    Every worker of a multi-worker run calls this; only the `chief` writes files."""
    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(args.seed)
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()
    model, optimizer, identity = build_training(args, strategy, int(labels.max()) + 1)
    checkpoints = TrainingCheckpoints(args.experiment_root, model, optimizer,
                                      args.keep_checkpoints, writes=chief, identity=identity)
    if args.resume:
        start = checkpoints.restore_latest()
        LOG.info('Resumed from step %d', start)
    else:
        start = 0
        checkpoints.save(0)  # the initial weights too, for exactly repeatable experiments
    if start >= args.train_iterations:
        LOG.info('Training finished already (step %d of %d); nothing to do.', start,
                 args.train_iterations)
        return

    curriculum = make_curriculum(args)
    batches = distributed_batches(strategy, dataset, args, labels, start, curriculum)
    train_step = make_train_step(model, optimizer, args, identity, strategy)
    logs = chief and TrainingLogs(args, start, max(len(f.encode()) for f in dataset.fids),
                                  curriculum)
    step = start
    with common.Uninterrupt(log=LOG) as stop:
        for step, (images, batch_labels, rows) in zip(
                range(start + 1, args.train_iterations + 1), batches):
            began = time.time()
            learning_rate = float(optimizer.learning_rate)  # the rate this step uses
            values = {k: v.numpy() for k, v in train_step(images, batch_labels, rows).items()}
            if logs:  # file names only for the detailed logs, the one place they go
                fids = args.detailed_logs and np.array(
                    [dataset.fids[row].encode() for row in values['rows']])
                logs.write(step, values, fids, learning_rate, time.time() - began)
            if args.checkpoint_frequency and step % args.checkpoint_frequency == 0:
                checkpoints.save(step)
            if distribution.anyone(strategy, stop.interrupted):
                LOG.info('Interrupted on request at step %d.', step)
                break
        if not args.checkpoint_frequency or step % args.checkpoint_frequency:
            checkpoints.save(step)
    if logs:
        logs.close()
    LOG.info('Saved the checkpoint of step %d; training %s.', step,
             'finished' if step >= args.train_iterations else 'can go on with --resume')


def main(argv=None):
    parser = build_parser()
    run = parser.parse_args(argv)  # how this run is spread, before anything uses a device
    if run.cpu_devices:
        distribution.split_cpu(run.cpu_devices)
    strategy = distribution.create_strategy(run.distribution)
    chief = distribution.is_chief(strategy)
    args = resolve_args(parser, argv, chief, strategy.num_replicas_in_sync)
    dataset, labels = load_training_set(args)
    if chief and not args.resume:
        write_args(args)
    common.init_logging(os.path.join(args.experiment_root, 'train.log') if chief else None)
    for key, value in sorted(vars(args).items()):
        LOG.info('%s: %s', key, value)
    LOG.info('Training set %s: %d images of %d identities', args.train_set, len(dataset),
             labels.max() + 1)
    if strategy.num_replicas_in_sync > 1:
        LOG.info('Training on %d replicas (%s)', strategy.num_replicas_in_sync,
                 type(strategy).__name__)
    train(args, dataset, labels, strategy, chief)


if __name__ == '__main__':
    common.run_cli(main)
