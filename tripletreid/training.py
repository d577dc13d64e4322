"""Training: the training set's checks, the model and optimizer, the step, and the loop."""
import logging
import os
import time

import keras
import numpy as np
import tensorflow as tf

from tripletreid import batch_grid, cli, csv_dataset, distribution, experiment, pipeline
from tripletreid.checkpoints import TrainingCheckpoints
from tripletreid.fused_batch_norm import fuse
from tripletreid.losses import LOSSES
from tripletreid.losses.identity import IdentityLosses
from tripletreid.losses.triplet import cdist, monitoring
from tripletreid.model import build_model, training_model
from tripletreid.schedules import optimizer_of
from tripletreid.training_logs import TrainingLogs
from tripletreid import training_curves

LOG = logging.getLogger('train')


def load_training_set(train_set, image_root, batch_p, loading_threads):
    """Read and check the CSV, every image and P against the identities; identities become
    labels 0..n-1."""
    dataset = csv_dataset.read_csv(train_set)
    pipeline.check_batch_p(batch_p, len(set(dataset.pids)))
    pipeline.check_readable(dataset, image_root, loading_threads)
    _, labels = np.unique(dataset.pids, return_inverse=True)
    return dataset, labels


def make_train_step(model, optimizer, loss='batch_hard', margin='soft', metric='euclidean',
                    seed=0, identity=None, strategy=None):
    """One optimisation step as a `tf.function` of a (distributed) batch: returns the values
    the logs need, of the whole batch. `loss` (a name of `LOSSES`), `margin` and `metric` are
    train.py's flags; `seed` that of the sampling losses.

    The triplet loss trains the feature `model.training_model` gives (before a BNNeck, if
    any); `identity` (an `IdentityLosses`) adds the ID, center and verification losses
    (the pairs of the last drawn from the step's seed too). Under a `strategy` of N replicas,
    every replica gathers the features of all and computes the loss of the whole batch,
    divided by N: the optimizer sums the replicas' gradients, and through the gather
    each replica's features get the gradient of the whole loss, so N devices train as one
    device on the same batch.

    Batch sizes change during a curriculum: `reduce_retracing` lets the second size trace a
    step for any size instead of one per size. K, for the precision at K-1, is that of the batch
    (batches are P identities of K images each). Losses that sample get a stateless seed of
    (--seed, step), so a resumed run draws what an uninterrupted one would.
    """
    strategy = strategy or tf.distribute.get_strategy()
    loss_fn = LOSSES[loss]
    features_model = training_model(model)
    variables = model.trainable_variables + (identity.classifier_variables if identity else [])
    centers = [identity.centers] if identity and identity.centers is not None else []
    scales_loss = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    def replica_step(images, labels, rows, step_seed):
        with tf.GradientTape() as tape:
            outputs = features_model(images, training=True)
            features, embeddings = (distribution.gather(tf.cast(t, tf.float32)) for t in outputs)
            labels, rows = distribution.gather(labels), distribution.gather(rows)
            dists = cdist(features, features, metric)
            losses = loss_fn(dists, labels, margin, step_seed)
            total = tf.reduce_mean(losses)
            with tf.GradientTape(watch_accessed_variables=False) as center_tape:
                center_tape.watch(centers[0] if centers else [])
                parts = identity(features, embeddings, labels, step_seed) if identity else {}
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
        step_seed = tf.stack([tf.constant(seed, tf.int64),
                              tf.cast(optimizer.iterations, tf.int64)])
        values = strategy.run(replica_step, args=(images, labels, rows, step_seed))
        return {name: strategy.experimental_local_results(value)[0]
                for name, value in values.items()}
    return step


def make_identity_losses(config, num_identities):
    """The ID, center and verification losses the experiment asks for, or None (the official
    recipe)."""
    if not config.identity_losses:
        return None
    return IdentityLosses(num_identities, config.embedding_dim, config.id_loss_weight,
                          config.label_smoothing, config.center_loss_weight,
                          config.center_learning_rate, config.id_loss, config.id_scale,
                          config.id_margin, config.verification_loss_weight,
                          config.verification_pair)


def build_training(config, strategy, num_identities, fused_batch_norm=True):
    """The model, the optimizer and the identity losses, their variables made under
    `strategy` (mirrored on every replica) and in the --mixed_precision policy.

    The model's batch norms train with fused kernels (`tripletreid.fused_batch_norm`; the same
    variables, so its checkpoints are those of `build_model`'s); `fused_batch_norm=False`
    keeps Keras' own, for comparison."""
    # Keras' policy is global: set it every time, or a float32 run after a mixed one in the
    # same process (a study, a notebook) would silently compute in 16 bits.
    keras.mixed_precision.set_global_policy(
        'float32' if config.mixed_precision == 'none' else config.mixed_precision)
    with strategy.scope():
        model = build_model(config.model_name, config.head_name, config.embedding_dim,
                            None if config.resume else config.initial_checkpoint,
                            config.last_stride)
        if fused_batch_norm:
            model = fuse(model)
        if config.sync_batch_norm:
            distribution.synchronize_batch_norm(model)
        optimizer = optimizer_of(config)
        if config.mixed_precision == 'mixed_float16':  # float16 gradients underflow unscaled
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        identity = make_identity_losses(config, num_identities)
        optimizer.build(model.trainable_variables
                        + (identity.classifier_variables if identity else []))
    return model, optimizer, identity


def augmentation_of(config):
    """The `pipeline.Augmentation` of the experiment's flags."""
    return pipeline.Augmentation(
        (config.net_input_height, config.net_input_width),
        (config.pre_crop_height, config.pre_crop_width), config.flip_augment,
        config.crop_augment, config.random_erasing_prob,
        (config.random_erasing_area_min, config.random_erasing_area_max),
        config.random_erasing_aspect_min)


def training_batches(config, dataset, labels, start=0, shard=(0, 1, 1)):
    """The experiment's PK batches from step `start` on (`pipeline.train_dataset`)."""
    return pipeline.train_dataset(dataset, config.image_root, labels, config.curriculum(),
                                  augmentation_of(config), config.seed, config.loading_threads,
                                  start, shard)


def distributed_batches(strategy, dataset, config, labels, start):
    """The PK batches from step `start` on, each replica's share on its device."""
    def replica_batches(context):
        return training_batches(config, dataset, labels, start,
                                (context.input_pipeline_id, context.num_input_pipelines,
                                 context.num_replicas_in_sync))
    return strategy.distribute_datasets_from_function(replica_batches)


def train(config, dataset, labels, strategy=None, chief=True):
    """Train on `dataset` (`load_training_set`) from scratch or from the newest checkpoint.
    Every worker of a multi-worker run calls this; only the `chief` writes files."""
    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    model, optimizer, identity = build_training(config, strategy, int(labels.max()) + 1)
    checkpoints = TrainingCheckpoints(config.experiment_root, model, optimizer,
                                      config.keep_checkpoints, writes=chief, identity=identity)
    if config.resume:
        start = checkpoints.restore_latest()
        LOG.info('Resumed from step %d', start)
    else:
        start = 0
        checkpoints.save(0)  # the initial weights too, for exactly repeatable experiments
    if start >= config.train_iterations:
        LOG.info('Training finished already (step %d of %d); nothing to do.', start,
                 config.train_iterations)
        return

    batches = distributed_batches(strategy, dataset, config, labels, start)
    train_step = make_train_step(model, optimizer, config.loss, config.margin, config.metric,
                                 config.seed, identity, strategy)
    logs = chief and TrainingLogs(config, start, max(len(f.encode()) for f in dataset.fids))
    step = start
    with cli.Uninterrupt(log=LOG) as stop:
        for step, (images, batch_labels, rows) in zip(
                range(start + 1, config.train_iterations + 1), batches):
            began = time.time()
            learning_rate = float(optimizer.learning_rate)  # the rate this step uses
            values = {k: v.numpy() for k, v in train_step(images, batch_labels, rows).items()}
            if logs:  # file names only for the detailed logs, the one place they go
                fids = config.detailed_logs and np.array(
                    [dataset.fids[row].encode() for row in values['rows']])
                logs.write(step, values, fids, learning_rate, time.time() - began)
            if config.checkpoint_frequency and step % config.checkpoint_frequency == 0:
                checkpoints.save(step)
            if distribution.anyone(strategy, stop.interrupted):
                LOG.info('Interrupted on request at step %d.', step)
                break
        if not config.checkpoint_frequency or step % config.checkpoint_frequency:
            checkpoints.save(step)
    if logs:
        logs.close()
        LOG.info('Training curves: %s', training_curves.save(config.experiment_root))
    LOG.info('Saved the checkpoint of step %d; training %s.', step,
             'finished' if step >= config.train_iterations else 'can go on with --resume')


def run(config, strategy=None, chief=True):
    """A whole training run of a checked `TrainConfig` (`experiment.resolve`): check the
    training set, write args.json (a new experiment), log the flags, train. With
    --show_batches, only draw the first batches (`batch_grid`)."""
    if config.show_batches:
        batch_grid.check_path(config.show_batches)
    dataset, labels = load_training_set(config.train_set, config.image_root, config.batch_p,
                                        config.loading_threads)
    if config.show_batches:  # a look at the batches only: no experiment is made
        if chief:
            batch_grid.save_batches(config.show_batches, training_batches(config, dataset, labels),
                                    dataset.pids, config.show_batches_count, config.seed)
        return
    if chief and (not config.resume or config.extend_to is not None):
        experiment.write_args(config)  # a new experiment's, or the new length of an extension
    cli.init_logging(os.path.join(config.experiment_root, 'train.log') if chief else None)
    for key, value in sorted(vars(config).items()):
        LOG.info('%s: %s', key, value)
    LOG.info('Training set %s: %d images of %d identities', config.train_set, len(dataset),
             labels.max() + 1)
    short = np.count_nonzero(np.bincount(labels) < config.batch_k)
    if short:
        LOG.info('%d of %d identities have fewer than K=%d images: a batch repeats their '
                 'images (each equally often, as the official code)', short, labels.max() + 1,
                 config.batch_k)
    warning = experiment.schedule_warning(config)
    if warning:
        LOG.warning(warning)
    replicas = strategy.num_replicas_in_sync if strategy else 1
    if replicas > 1:
        LOG.info('Training on %d replicas (%s)', replicas, type(strategy).__name__)
    train(config, dataset, labels, strategy, chief)


def run_flags(argv):
    """A training run on one device from train.py's flags (a list of strings), as a program
    that trains on its own (the demo, the studies) starts one."""
    run(experiment.resolve(experiment.build_train_parser(), argv))
