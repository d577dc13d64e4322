#!/usr/bin/env python3
"""Train an embedding network with the batch-hard triplet loss (official flags and defaults)."""
from tripletreid import cli, experiment


def main(argv=None):
    parser = experiment.build_train_parser(__doc__)
    flags = parser.parse_args(argv)  # --help and flag errors come before TensorFlow loads
    cli.quiet_tensorflow()
    from tripletreid import distribution, training
    if flags.cpu_devices:  # how this run is spread, before anything uses a device
        distribution.split_cpu(flags.cpu_devices)
    strategy = distribution.create_strategy(flags.distribution)
    chief = distribution.is_chief(strategy)
    config = experiment.resolve(parser, argv, chief, strategy.num_replicas_in_sync)
    training.run(config, strategy, chief)


if __name__ == '__main__':
    cli.run(main)
