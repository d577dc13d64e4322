#!/usr/bin/env python3
"""Embed the images of a CSV with a trained experiment; write them to an HDF5 file.

The network, head, input sizes and preprocessing come from the experiment's args.json.
Output datasets, as the official: `emb` [N, D] in CSV order; with more than one test-time view
also `emb_aug` [views, N, D]; and `augmentation_types`, the view names.
"""
import argparse
import io
import os
import sys
import time

import common

common.quiet_tensorflow()

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from aggregators import AGGREGATORS  # noqa: E402
from checkpoints import complete_checkpoints, latest_checkpoint, restore_model  # noqa: E402
from common import InputError  # noqa: E402
from data import csv_dataset, pipeline  # noqa: E402
from embedding_model import build_model  # noqa: E402
from nets.fused_batch_norm import fuse  # noqa: E402
import train  # noqa: E402  (its parser validates args.json)

CROPS = ('center', 'top_left', 'top_right', 'bottom_left', 'bottom_right')


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__)
    add = parser.add_argument
    add_experiment_flags(parser)
    add('--dataset', required=True, help='CSV of the images to embed.')
    add('--image_root', type=common.readable_directory,
        help='Folder the CSV paths are relative to (default: the one of training).')
    add('--filename', default=None,
        help='HDF5 output, relative to the experiment root (default: <csv name>_embeddings.h5).')
    add('--overwrite', action='store_true', help='Replace an existing output file.')
    add_view_flags(parser)
    return parser


def add_experiment_flags(parser):
    """`--experiment_root` and `--checkpoint`, shared with embed_files.py and export.py."""
    parser.add_argument('--experiment_root', required=True,
                        help='The trained experiment (with args.json).')
    parser.add_argument('--checkpoint', default=None,
                        help='Checkpoint name in the experiment root, e.g. checkpoint-25000 '
                             '(default: newest).')


def add_view_flags(parser):
    """The test-time views and batching flags, shared with embed_files.py."""
    add = parser.add_argument
    add('--loading_threads', default=8, type=common.positive_int)
    add('--batch_size', default=256, type=common.positive_int)
    add('--flip_augment', action='store_true', help='Also embed the mirrored image.')
    add('--crop_augment', choices=['center', 'avgpool', 'five'], default=None,
        help='`center`: the centre crop of the pre-crop-sized image; `five`: centre and four '
             'corner crops; `avgpool`: the whole pre-crop-sized image (the network pools). '
             'Without it the image is resized to the network input size.')
    add('--aggregator', choices=sorted(AGGREGATORS), default=None,
        help='How to combine the views; required exactly when there is more than one.')
    add('--quiet', action='store_true', help='Print less.')


def resolve_args(args):
    """Complete the flags from the experiment's args.json and check they fit together."""
    trained = experiment_args(args)
    args.image_root = args.image_root or trained.get('image_root')
    check_views(args, trained)
    if args.filename is None:
        args.filename = os.path.splitext(os.path.basename(args.dataset))[0] + '_embeddings.h5'
    args.filename = os.path.join(args.experiment_root, args.filename)
    common.check_output(args.filename, args.overwrite)
    return args


def experiment_args(args):
    """Copy the network and input sizes of the experiment's args.json onto `args`.

    Returns all of args.json, checked against train.py's flags (it may be edited by hand).
    """
    if not os.path.isdir(args.experiment_root):
        raise InputError(f'{args.experiment_root}: no such experiment directory')
    args_file = os.path.join(args.experiment_root, 'args.json')
    trained = common.load_args_json(args_file)
    common.check_stored_args(train.build_parser(), trained, args_file)
    for key in ('model_name', 'head_name', 'embedding_dim', 'net_input_height',
                'net_input_width', 'pre_crop_height', 'pre_crop_width'):
        if key not in trained:
            raise InputError(f'{args_file}: {key!r} is missing')
        setattr(args, key, trained[key])
    args.last_stride = trained.get('last_stride', 2)  # absent from older experiments
    return trained


def check_views(args, trained):
    """Warn when cropping differs from training; require an aggregator exactly for >1 view."""
    if bool(trained.get('crop_augment')) != (args.crop_augment is not None):
        print('Warning: crop augmentation differs between training and embedding.',
              file=sys.stderr)
    views = view_names(args)
    if len(views) > 1 and args.aggregator is None:
        raise InputError(f'{len(views)} views per image ({", ".join(views)}): '
                         f'choose how to combine them with --aggregator')
    if len(views) == 1 and args.aggregator is not None:
        raise InputError('--aggregator needs several views per image (--flip_augment or '
                         '--crop_augment five)')


def load_model(args):
    """The model of args.json with the weights of `args.checkpoint` (default: the newest).

    Returns the model and the checkpoint's path prefix.
    """
    if args.checkpoint:
        checkpoint = os.path.join(args.experiment_root, args.checkpoint)
        if not os.path.isfile(checkpoint + '.index'):
            found = ', '.join(os.path.basename(path) for _, path in
                              sorted(complete_checkpoints(args.experiment_root).items()))
            raise InputError(f'{checkpoint}: no such checkpoint (found: {found or "none"})')
    else:
        checkpoint = latest_checkpoint(args.experiment_root)
        if checkpoint is None:
            raise InputError(f'{args.experiment_root}: no checkpoint found')
    model = build_model(args.model_name, args.head_name, args.embedding_dim,
                        last_stride=args.last_stride)
    restore_model(model, checkpoint)
    return model, checkpoint


def view_names(args):
    """Names of the test-time views of each image, in the official order and spelling."""
    flips = ['original', 'original_flip'] if args.flip_augment else ['original']
    crops = {'five': CROPS, 'center': ['center'], 'avgpool': ['avgpool']}.get(
        args.crop_augment, ['resize'])
    return [f'{flip}_{crop}' for flip in flips for crop in crops]


def five_crops(image, size):
    """Centre and four corner crops of `size` (centre offset rounded down, as the official)."""
    height, width = size
    margin_y, margin_x = image.shape[0] - height, image.shape[1] - width
    corners = {'center': (margin_y // 2, margin_x // 2), 'top_left': (0, 0),
               'top_right': (0, margin_x), 'bottom_left': (margin_y, 0),
               'bottom_right': (margin_y, margin_x)}
    return [image[y:y + height, x:x + width] for y, x in (corners[c] for c in CROPS)]


def views_of(image, args):
    """The test-time views of one loaded image, stacked as [views, h, w, 3]."""
    size = (args.net_input_height, args.net_input_width)
    flips = [image, tf.reverse(image, [1])] if args.flip_augment else [image]
    views = []
    for flipped in flips:
        crops = five_crops(flipped, size)
        views += {'five': crops, 'center': crops[:1]}.get(args.crop_augment, [flipped])
    return tf.stack(views)


def embed(args, model, paths):
    """Embeddings of every view of every image: [views, N, D].

    `model` runs with fused batch norms (`nets.fused_batch_norm.fuse`): the same weights, and
    a faster forward pass.
    """
    model = fuse(model)
    views = len(view_names(args))
    size = ((args.pre_crop_height, args.pre_crop_width) if args.crop_augment
            else (args.net_input_height, args.net_input_width))

    # Neither function has Python control flow for AutoGraph to convert (its attempts to
    # parse lambdas' source print warnings).
    @tf.autograph.experimental.do_not_convert
    def load_views(path):
        return views_of(pipeline.load_image(path, size), args)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)],
                 autograph=False)
    def forward(batch):
        return model(batch, training=False)

    images = tf.data.Dataset.from_tensor_slices(paths).map(
        load_views, num_parallel_calls=args.loading_threads).unbatch()
    images = images.batch(args.batch_size).prefetch(tf.data.AUTOTUNE)
    result = np.zeros((len(paths) * views, args.embedding_dim), np.float32)
    began, done = time.time(), 0
    for batch in images:
        emb = forward(batch).numpy()
        result[done:done + len(emb)] = emb
        done += len(emb)
        if not args.quiet:
            print(f'\rEmbedded {done}/{len(result)} images '
                  f'({done / (time.time() - began):.1f} images/s)', end='', file=sys.stderr)
    if not args.quiet:
        print(file=sys.stderr)
    return result.reshape(len(paths), views, -1).transpose(1, 0, 2)


def aggregate(emb_aug, aggregator):
    """One embedding per image: the only view, or the aggregate of several."""
    return AGGREGATORS[aggregator](emb_aug) if len(emb_aug) > 1 else emb_aug[0]


def write_embeddings(filename, emb_aug, names, aggregator, **extra):
    """The official layout; `extra` datasets (e.g. embed_files.py's `paths`) are added.

    The HDF5 file is made in memory and then written as plain bytes: the HDF5 library crashes
    the process (SIGSEGV) when the disk fills up under it, where Python's write says so.
    """
    memory = io.BytesIO()
    with h5py.File(memory, 'w') as f:
        if len(names) > 1:
            f.create_dataset('emb_aug', data=emb_aug)
        f.create_dataset('emb', data=aggregate(emb_aug, aggregator))
        f.create_dataset('augmentation_types', data=np.asarray(names, dtype='S'))
        for key, value in extra.items():
            f.create_dataset(key, data=value)
    with common.atomic_path(filename) as tmp:
        with open(tmp, 'wb') as f:
            f.write(memory.getbuffer())


def main(argv=None):
    args = resolve_args(build_parser().parse_args(argv))
    dataset = csv_dataset.read_csv(args.dataset)
    csv_dataset.check_images(dataset, args.image_root or '', args.loading_threads)
    pipeline.check_decodable(dataset, args.image_root, args.loading_threads)
    model, checkpoint = load_model(args)
    if not args.quiet:
        print(f'Embedding {len(dataset)} images of {args.dataset} with {checkpoint}',
              file=sys.stderr)
    names = view_names(args)
    emb_aug = embed(args, model, pipeline.image_paths(dataset.fids, args.image_root))
    write_embeddings(args.filename, emb_aug, names, args.aggregator)
    if not args.quiet:
        print(f'Wrote {args.filename}: {len(dataset)} x {args.embedding_dim}, views: '
              f'{", ".join(names)}', file=sys.stderr)


if __name__ == '__main__':
    common.run_cli(main)
