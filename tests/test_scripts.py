"""The shell recipes: every flag they pass to train.py exists and the combination is accepted."""
import os
import re
import shlex

import pytest

from conftest import ROOT


def train_flags(script):
    """The arguments of the script's `python train.py` command, its variables filled in; for a
    recipe that runs another with more flags, those of the other, then its own."""
    text = open(os.path.join(ROOT, script)).read()
    delegated = re.search(r'^exec "\$\(dirname "\$0"\)/(\S+)" \\\n(.*?)"\$@"', text, re.S | re.M)
    if delegated:
        return train_flags(delegated.group(1)) + shlex.split(
            delegated.group(2).replace('\\\n', ' '))
    command = re.search(r'^python train\.py \\\n(.*?)"\$@"', text, re.S | re.M).group(1)
    command = command.replace('"$IMAGE_ROOT"', ROOT).replace('"$INIT_CHECKPT"', 'init.ckpt')
    return shlex.split(command.replace('"$EXP_ROOT"', 'exp').replace('\\\n', ' '))


@pytest.mark.parametrize('script', ['market1501_train.sh', 'strong_baseline_train.sh'])
def test_recipe_flags_are_accepted(script):
    from tripletreid import cli, experiment
    parser = experiment.build_train_parser()
    flags = train_flags(script)
    args = experiment.TrainConfig(**vars(parser.parse_args(flags)))
    experiment.check_flags(args, cli.explicit_flags(parser, flags))
    assert args.train_set == 'data/market1501_train.csv'


def test_strong_baseline_settings():
    from tripletreid import experiment
    args = experiment.build_train_parser().parse_args(train_flags('strong_baseline_train.sh'))
    steps_per_epoch = 12936 // (args.batch_p * args.batch_k)  # Market-1501's training images
    assert steps_per_epoch == 202
    assert (args.warmup_iterations, args.lr_decay_steps, args.train_iterations) == (
        10 * steps_per_epoch, [40 * steps_per_epoch, 70 * steps_per_epoch],
        120 * steps_per_epoch)
    assert (args.head_name, args.embedding_dim, args.last_stride) == ('bnneck', 2048, 1)
    assert (args.margin, args.id_loss_weight, args.label_smoothing) == (0.3, 1.0, 0.1)
    assert (args.center_loss_weight, args.random_erasing_prob) == (0.0005, 0.5)
