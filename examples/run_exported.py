#!/usr/bin/env python3
"""Run a model of export.py with its own runtime alone (no import of this project), embed a
folder of images and search an index file of search.py by brute force.

    python examples/run_exported.py exported/trinet.tflite photos/ --index gallery.h5 \\
        --top_k 5 --output answers.csv

The format comes from the name: `.tflite` runs in LiteRT (`pip install ai-edge-litert`),
`.onnx` in ONNX Runtime (`pip install onnxruntime`), `.keras` in Keras, a folder is a
TensorFlow SavedModel. Images (JPEG, PNG, BMP) are decoded with Pillow into uint8 RGB of their
own size: the model resizes them inside. (TensorFlow's JPEG decoder, embed.py's, may differ from
Pillow's by a grey level here and there; PNGs decode identically.)

The index (search.py's HDF5 file) holds `emb` [N, D] float32, `paths`, `pids` (UTF-8 bytes)
and the attributes `metric` (euclidean, sqeuclidean or cityblock) and `normalized` (the
embeddings are unit length, so the queries are made so too). Answers, one CSV row per query
and rank: `query,rank,gallery_path,identity,distance`, nearest first, ties in gallery order.
`--embeddings F.npy` also saves the queries' embeddings, in the order of the answers' queries.
"""
import argparse
import csv
import os
import sys

import numpy as np

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp')


def load_runner(model_path, threads=None):
    """A function of a uint8 batch [n, h, w, 3] to float32 embeddings [n, D]."""
    if model_path.endswith('.tflite'):
        from ai_edge_litert.interpreter import Interpreter
        interpreter = Interpreter(model_path=model_path, num_threads=threads)
        source = interpreter.get_input_details()[0]['index']
        target = interpreter.get_output_details()[0]['index']

        def run(batch):
            interpreter.resize_tensor_input(source, batch.shape, strict=False)
            interpreter.allocate_tensors()
            interpreter.set_tensor(source, batch)
            interpreter.invoke()
            return interpreter.get_tensor(target).copy()
        return run
    if model_path.endswith('.onnx'):
        import onnxruntime
        session = onnxruntime.InferenceSession(model_path, providers=['CPUExecutionProvider'])
        name = session.get_inputs()[0].name
        return lambda batch: session.run(None, {name: batch})[0]
    if model_path.endswith('.keras'):
        import keras
        model = keras.models.load_model(model_path)
        return lambda batch: np.asarray(model(batch))
    import tensorflow as tf
    serve = tf.saved_model.load(model_path).signatures['serving_default']
    return lambda batch: serve(images=tf.constant(batch))['embeddings'].numpy()


def read_index(path):
    import h5py
    with h5py.File(path, 'r') as f:
        emb = f['emb'][()].astype(np.float64)
        paths = [p.decode('utf-8') for p in f['paths'][()]]
        pids = [p.decode('utf-8') for p in f['pids'][()]]
        metric = f.attrs['metric']
        metric = metric.decode() if isinstance(metric, bytes) else str(metric)
        normalized = bool(f.attrs.get('normalized', False))
    return emb, paths, pids, metric, normalized


def distances(queries, gallery, metric):
    """[Q, N] distances, float64, brute force."""
    if metric == 'cityblock':
        return np.abs(queries[:, None, :] - gallery[None]).sum(-1)
    squared = ((queries ** 2).sum(1)[:, None] + (gallery ** 2).sum(1)[None]
               - 2 * queries @ gallery.T)
    squared = np.maximum(squared, 0)
    return np.sqrt(squared) if metric == 'euclidean' else squared


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('model', help='.tflite, .onnx, .keras file or SavedModel folder')
    parser.add_argument('images', help='folder of query images')
    parser.add_argument('--index', required=True, help="search.py's index file (HDF5)")
    parser.add_argument('--top_k', type=int, default=5)
    parser.add_argument('--output', default='-', help='answers CSV (default: stdout)')
    parser.add_argument('--embeddings', default=None, help='also save them (.npy)')
    parser.add_argument('--threads', type=int, default=None)
    args = parser.parse_args(argv)

    from PIL import Image
    names = sorted(n for n in os.listdir(args.images) if n.lower().endswith(IMAGE_SUFFIXES))
    if not names:
        parser.error(f'{args.images}: no images')
    run = load_runner(args.model, args.threads)
    embeddings = []
    for name in names:  # one at a time: the images may differ in size
        with Image.open(os.path.join(args.images, name)) as image:
            pixels = np.asarray(image.convert('RGB'), dtype=np.uint8)
        embeddings.append(run(pixels[None])[0])
    queries = np.stack(embeddings).astype(np.float64)
    if args.embeddings:
        np.save(args.embeddings, queries.astype(np.float32))

    gallery, paths, pids, metric, normalized = read_index(args.index)
    if normalized:
        queries /= np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    dist = distances(queries, gallery, metric)
    out = sys.stdout if args.output == '-' else open(args.output, 'w', newline='')
    writer = csv.writer(out)
    writer.writerow(['query', 'rank', 'gallery_path', 'identity', 'distance'])
    for name, row in zip(names, dist):
        for rank, i in enumerate(np.argsort(row, kind='stable')[:args.top_k], start=1):
            writer.writerow([name, rank, paths[i], pids[i], f'{row[i]:.9g}'])
    if out is not sys.stdout:
        out.close()


if __name__ == '__main__':
    main()
