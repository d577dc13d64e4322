#!/usr/bin/env python3
"""Import a checkpoint of the official TF1 code into a new experiment root.

E.g. the released Market-1501 TriNet (`checkpoint-25000`: resnet_v1_50, fc1024, 128-D). The
new root holds our checkpoint at the official step and an args.json, so `embed.py` uses it as
it is. The network comes from the official run's args.json; without one (the release has
none), from the official defaults and the flags here.
"""
import sys

from heads import HEADS
from nets import NETS
from tripletreid import cli

OVERRIDES = ('model_name', 'head_name', 'embedding_dim')


def build_parser():
    parser = cli.ArgumentParser(description=__doc__)
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
    add('--embedding_dim', type=cli.positive_int, help='Overrides args.json.')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    cli.quiet_tensorflow()
    from tripletreid import official_import
    step = official_import.official_step(args.checkpoint)
    official_import.refuse_existing(args.experiment_root)
    notes = []
    overrides = {key: getattr(args, key) for key in OVERRIDES if getattr(args, key) is not None}
    config = official_import.experiment_config(args.experiment_root, args.checkpoint,
                                               args.args_json, overrides, notes)
    official_import.import_checkpoint(args.checkpoint, config, step, notes)
    for line in notes + [f'Imported {args.checkpoint} ({config.model_name} + '
                         f'{config.head_name}, {config.embedding_dim}-D, step {step}) into '
                         f'{args.experiment_root}']:
        print(line, file=sys.stderr)


if __name__ == '__main__':
    cli.run(main)
