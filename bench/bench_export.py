#!/usr/bin/env python3
"""Exported models in their runtimes against embed.py's path: images/s and the mAP change.

The model: a trained experiment (--experiment_root; BENCHMARKS.md says which), exported by
`tripletreid/exporting.py` as LiteRT float32, float16, dynamic-range int8 and full int8
(calibrated on --representative_count images of CUHK03 `train/`, seeded) and as ONNX.

Speed: one fixed batch of --batch CUHK03 `val/` images, resized to 128x64 uint8 (the models
resize them to the network input inside). Contenders, each in its own worker process
(`benchlib.alternate`, rounds alternating AB BA AB ...): `embed_py` runs what embed.py runs on a
batch (tf.image.resize, then the model with fused batch norms in a tf.function), `litert_*`
ai-edge-litert's interpreter (--threads), `onnxruntime` ONNX Runtime on the CPU (--threads).
Figures: medians over rounds with min-max.

mAP: every image of CUHK03 `val/` as query and gallery, cross-camera (excluder `camera`),
euclidean, one view (the image resized to the network input: the exported models' contract),
of embed.py's embeddings and of each export's, with the largest relative difference between
them.
"""
import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # also puts the project's root on the path

DATA = os.path.join(benchlib.ROOT, '..', 'shared', 'data', 'cuhk03-detected')
BATCH_SIZE = (128, 64)
EXPORTS = {'litert_float32': 'none', 'litert_float16': 'float16',
           'litert_dynamic_int8': 'dynamic_int8', 'litert_int8': 'int8', 'onnxruntime': None}
TIMED = ('embed_py', 'litert_float32', 'litert_int8', 'onnxruntime')


def val_dataset(folder):
    from studies.cuhk03 import write_csv
    from tripletreid.csv_dataset import read_csv
    return read_csv(write_csv(os.path.join(DATA, 'val'), os.path.join(folder, 'val.csv')))


def task(kind, model_path, batch_path, experiment_root, threads):
    """A contender's unit of work: embed the fixed batch once."""
    batch = np.load(batch_path)
    if kind == 'embed_py':
        import tensorflow as tf

        from tripletreid import experiment, inference
        from tripletreid.fused_batch_norm import fuse
        spec, _ = experiment.read_experiment(experiment_root)
        model = fuse(inference.load_model(experiment_root, spec)[0])

        @tf.function(autograph=False)
        def forward(images):
            return model(tf.image.resize(tf.cast(images, tf.float32), spec.net_size),
                         training=False)
        images = tf.constant(batch)
        return benchlib.Task(lambda: forward(images).numpy(), len(batch))
    from tripletreid import runtimes
    run = runtimes.runner('onnx' if kind == 'onnxruntime' else 'tflite', model_path, threads)
    return benchlib.Task(lambda: run(batch), len(batch))


def export_all(experiment_root, folder, representative_count, log):
    """{contender: path} of every export of the experiment's newest checkpoint."""
    from studies.cuhk03 import write_csv
    from tripletreid import experiment, export_checks, exporting, inference, pipeline
    from tripletreid.csv_dataset import read_csv
    spec, _ = experiment.read_experiment(experiment_root)
    model, checkpoint = inference.load_model(experiment_root, spec)
    train = read_csv(write_csv(os.path.join(DATA, 'train'), os.path.join(folder, 'train.csv')))
    representative = export_checks.representative_images(
        pipeline.image_paths(train.fids, os.path.join(DATA, 'train')), representative_count)
    paths = {}
    for name, quantize in EXPORTS.items():
        format_ = 'onnx' if quantize is None else 'tflite'
        paths[name] = os.path.join(folder, f'{name}.{format_}')
        seconds = exporting.export(model, format_, paths[name], spec.net_size,
                                   quantize=quantize or 'none', representative=representative)
        log(f'exported {name}: {exporting.size_mb(paths[name]):.2f} MB, {seconds:.1f} s')
    return paths, spec, model, checkpoint


def accuracy(model, spec, paths, folder):
    """mAP, rank-1 and the largest relative difference of each export on CUHK03 val/."""
    from tripletreid import export_checks, inference, pipeline, runtimes
    dataset = val_dataset(folder)
    files = pipeline.image_paths(dataset.fids, os.path.join(DATA, 'val'))
    images = export_checks.read_images(files)
    reference = inference.embed(model, files, spec, inference.Views(), 64, quiet=True)[0]
    retrieval = export_checks.Retrieval(dataset, dataset, [], [], 'camera', 'euclidean', {})
    results = {'embed_py': export_checks.scores(reference, reference, retrieval)}
    for name, path in paths.items():
        run = runtimes.runner('onnx' if name == 'onnxruntime' else 'tflite', path, 2)
        emb = runtimes.embed_images(run, images, 64)
        results[name] = dict(export_checks.scores(emb, emb, retrieval),
                             relative_difference=export_checks.relative_difference(
                                 emb, reference))
        results[name]['mAP_change'] = results[name]['mAP'] - results['embed_py']['mAP']
    return {name: {key: round(value, 6) for key, value in figures.items()}
            for name, figures in results.items()}, len(dataset)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--experiment_root', required=True,
                        help='A trained experiment, e.g. a lunet of studies/cuhk03.py.')
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--calls', type=int, default=5)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--representative_count', type=int, default=100)
    parser.add_argument('--no_accuracy', action='store_true')
    benchlib.add_output_flags(parser, 'export')
    options = parser.parse_args()
    if options.quick:
        options.rounds, options.calls, options.batch = 2, 1, 8

    def log(message):
        print(message, file=sys.stderr, flush=True)

    import cv2
    with tempfile.TemporaryDirectory() as folder:
        paths, spec, model, checkpoint = export_all(options.experiment_root, folder,
                                                    options.representative_count, log)
        result = {'experiment_root': os.path.abspath(options.experiment_root),
                  'checkpoint': os.path.basename(checkpoint),
                  'model': f'{spec.model_name} + {spec.head_name}, {spec.embedding_dim}-D, '
                           f'input {spec.net_input_height}x{spec.net_input_width}',
                  'sizes_mb': {name: round(os.path.getsize(path) / 1e6, 3)
                               for name, path in paths.items()}}
        if not options.no_accuracy:
            result['accuracy'], result['val_images'] = accuracy(model, spec, paths, folder)
            log(f'accuracy: {result["accuracy"]}')
        dataset = val_dataset(folder)
        rng = np.random.default_rng(0)
        chosen = sorted(rng.choice(len(dataset), options.batch, replace=False))
        batch = np.stack([cv2.resize(cv2.imread(os.path.join(DATA, 'val', dataset.fids[i]))
                                     [..., ::-1], BATCH_SIZE[::-1],
                                     interpolation=cv2.INTER_AREA) for i in chosen])
        batch_path = os.path.join(folder, 'batch.npy')
        np.save(batch_path, np.ascontiguousarray(batch, np.uint8))
        contenders = [benchlib.Contender(name, 'bench_export:task', dict(
            kind=name, model_path=paths.get(name), batch_path=batch_path,
            experiment_root=os.path.abspath(options.experiment_root),
            threads=options.threads)) for name in TIMED]
        timing = benchlib.alternate(contenders, options.rounds, options.calls)
    result['speed'] = {'batch': options.batch, 'image_size': list(BATCH_SIZE),
                       'threads': options.threads, 'rounds': options.rounds,
                       'calls_per_round': options.calls, 'contenders': timing,
                       'ratios_over_embed_py': {
                           name: benchlib.ratio(timing, name, 'embed_py')
                           for name in TIMED[1:]}}
    result['load_average_at_end'] = [round(x, 2) for x in os.getloadavg()]
    benchlib.write_results(result, options, 'export')


if __name__ == '__main__':
    main()
