#!/usr/bin/env python3
"""Embedding images/s: embed.py's `embed` (JPEG files to embeddings) without test-time
augmentation and with flip + five crops (10 views an image), for resnet_v1_50 (256x128) and
lunet (128x64); and the forward pass alone at 256x128, ours against PyTorch's.

    python bench/bench_embed.py                 # both parts
    python bench/bench_embed.py --part embed    # or --part inference
    python bench/bench_embed.py --quick

Part `embed`: each contender embeds the same synthetic 128x64 JPEGs (data/demo.py) per call
(64 images for resnet_v1_50, 256 for lunet) with --loading_threads 2, --batch_size 256,
random weights (the speed does not depend on them); images/s counts images, not views. Each
call of `embed` builds its tf.data pipeline and traces its tf.function anew, a fixed cost that
a real run (thousands of images) pays once: it is measured apart (the best of three calls on
one image, after a first full call) and `steady_images_per_second` leaves it out. Part
`inference`: one fixed batch of 64 random 256x128 images through resnet_v1_50 + fc1024 in
inference mode: ours as embed.py runs it (a tf.function of `model(batch, training=False)`, the
model's batch norms fused, which TensorFlow's graph optimiser runs inside the convolutions as
oneDNN post-ops; `--keras_bn` adds ours with Keras' batch norms), and PyTorch's
(bench/torch_reid.py, eval mode under `torch.inference_mode()`) as a peer runs it, tuned
(channels-last, OpenMP threads that sleep), and tuned with its batch norms folded three ways:
torch.fx's fusion, TorchScript's `torch.jit.freeze`, `torch.compile` with freezing
(tasks.FOLDED_TORCH_VARIANTS). The fastest PyTorch contender (median images/s) is the
reference, `best_pytorch` in the JSON. Contenders alternate round by round (AB BA ...), each in
its own process; ratios carry a bootstrap 95% interval and "tie" when it holds 1.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib
from tasks import (FOLDED_TORCH_VARIANTS, SIZES, TORCH_VARIANTS, configure_tensorflow,
                   demo_images, torch_contenders)
from benchlib import Contender, Task

VIEWS = {'none': dict(flip=False, crop=None), 'flip_five': dict(flip=True, crop='five')}
IMAGES = {'resnet_v1_50': 64, 'lunet': 256}
PEERS = {**TORCH_VARIANTS, **FOLDED_TORCH_VARIANTS}
OURS = ("embed.py's forward: a tf.function of the model, batch norms fused (FusedBatchNormV3, "
        "run by oneDNN as the convolutions' post-ops), NHWC tensors, TensorFlow's default thread "
        'pools (2 intra-op threads)')
KERAS_BN = ("embed.py's forward before the fused batch norm: Keras' batch norms (element-wise "
            'ops apart from the convolutions), otherwise as ours')


def embed_task(csv, image_root, model_name, views, images, batch_size=256):
    """inference.embed (what embed.py runs) over the first `images` images of the CSV."""
    configure_tensorflow()
    from tripletreid import csv_dataset, experiment, inference, pipeline
    from tripletreid.model import build_model
    height, width = SIZES.get(model_name, (256, 128))
    spec = experiment.ModelSpec(model_name, 'fc1024', 128, height, width, height * 9 // 8,
                                width * 9 // 8)
    model = build_model(model_name, 'fc1024', 128)
    paths = pipeline.image_paths(csv_dataset.read_csv(csv).fids[:images], image_root)

    def run(some_paths):
        return inference.embed(model, some_paths, spec, inference.Views(**VIEWS[views]),
                               batch_size, loading_threads=2, quiet=True)

    run(paths)  # the one-time costs of the first call
    overhead = []
    for _ in range(3):
        began = time.perf_counter()
        run(paths[:1])
        overhead.append(time.perf_counter() - began)
    return Task(lambda: run(paths), len(paths),
                info={'per_call_overhead_seconds': round(min(overhead), 3)})


def inference_task(batch=64, height=256, width=128, model_name='resnet_v1_50', keras_bn=False):
    """Ours: the forward pass embed.py makes (fused batch norms), on one fixed batch;
    `keras_bn`: with Keras' batch norms instead (as before the fused ones were adopted)."""
    configure_tensorflow()
    import tensorflow as tf
    from tripletreid.model import build_model
    from tripletreid.fused_batch_norm import fuse
    model = build_model(model_name, 'fc1024', 128)
    if not keras_bn:
        model = fuse(model)
    forward = tf.function(lambda batch: model(batch, training=False),
                          input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    images = tf.random.uniform([batch, height, width, 3], 0, 255)
    return Task(lambda: forward(images).numpy(), batch)


def run_embed(options):
    with demo_images() as (csv, root):
        contenders = [Contender(f'{model}_{views}', 'bench_embed:embed_task',
                                dict(csv=csv, image_root=root, model_name=model, views=views,
                                     images=options.images or IMAGES[model]),
                                warmup=options.warmup)
                      for model in options.models for views in VIEWS]
        rounds = options.rounds or 3
        results = benchlib.alternate(contenders, rounds, 1)
    for name, result in results.items():
        overhead = result['info']['per_call_overhead_seconds']
        steady = [result['images'] / (seconds - overhead) for seconds in result['round_seconds']]
        result['steady_images_per_second'] = benchlib.summary(steady)
        views = 10 if name.endswith('flip_five') else 1
        result['steady_views_per_second'] = benchlib.summary([r * views for r in steady])
    return {'loading_threads': 2, 'batch_size': 256, 'rounds': rounds,
            'contenders': results}


def run_inference(options):
    size = dict(batch=options.batch, height=options.height, width=options.width)
    contenders = [Contender('tensorflow', 'bench_embed:inference_task', size,
                            warmup=options.warmup, about=OURS)]
    if options.keras_bn:
        contenders.append(Contender('tensorflow_keras_bn', 'bench_embed:inference_task',
                                    dict(size, keras_bn=True), warmup=options.warmup,
                                    about=KERAS_BN))
    contenders += torch_contenders(options, 'torch_reid:inference_task', PEERS, **size)
    rounds = options.rounds or 10
    results = benchlib.alternate(contenders, rounds, options.calls)
    result = {'model_name': 'resnet_v1_50', 'input': [options.height, options.width],
              'batch': options.batch, 'rounds': rounds,
              'calls_per_round': options.calls, 'contenders': results}
    peers = [name for name in results if name.startswith('pytorch')]
    if peers:
        result['best_pytorch'] = max(
            peers, key=lambda name: results[name]['images_per_second']['median'])
    result.update(benchlib.peer_ratios(results))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--part', choices=['embed', 'inference', 'both'], default='both')
    parser.add_argument('--rounds', type=int, default=None,
                        help='Default: 3 for the embed part, 10 for inference.')
    parser.add_argument('--calls', type=int, default=2, help='Inference batches per round.')
    parser.add_argument('--images', type=int, default=None,
                        help='Images per embed call (default: 64 for resnet_v1_50, 256 for lunet).')
    parser.add_argument('--batch', type=int, default=64, help='Inference batch.')
    parser.add_argument('--height', type=int, default=256)
    parser.add_argument('--width', type=int, default=128)
    parser.add_argument('--warmup', type=int, default=1, help='Untimed calls after the first.')
    parser.add_argument('--torch', nargs='+', default=list(PEERS), choices=list(PEERS),
                        help='The PyTorch contenders (tasks.TORCH_VARIANTS and '
                             'FOLDED_TORCH_VARIANTS; default: all).')
    parser.add_argument('--no_torch', action='store_true')
    parser.add_argument('--keras_bn', action='store_true',
                        help="Inference: also ours with Keras' batch norm instead of the fused "
                             'one.')
    benchlib.add_output_flags(parser, 'embed')
    options = parser.parse_args()
    options.models = list(IMAGES)
    if options.quick:
        options.models = ['lunet']
        options.rounds, options.calls, options.warmup, options.images = 2, 1, 0, 32
        options.batch, options.height, options.width = 8, 64, 32
        # the last named PyTorch contender that builds in seconds (compiling takes minutes)
        options.torch = [name for name in options.torch if name != 'pytorch_compile'][-1:]
    parts = ['embed', 'inference'] if options.part == 'both' else [options.part]
    result = {part: {'embed': run_embed, 'inference': run_inference}[part](options)
              for part in parts}
    benchlib.write_results(result, options, 'embed' if len(parts) > 1 else parts[0])


if __name__ == '__main__':
    main()
