"""Activation maps: where the backbone's last feature map is strong, drawn over the image.

As torchreid's `visualize_actmap` (after Zagoruyko and Komodakis, ICLR 2017): the energy of the
last feature map before global pooling (at each position, the sum over channels of the squared
activations), upsampled bilinearly to the picture, normalised per image from its minimum (0) to
its maximum (1) and coloured over the image (jet: blue low, red high). It shows whether the
network looks at the person or at the background. torchreid also divides each map by its L2
norm first; the min-max normalisation cancels any scale, so that step is left out.
"""
import cv2
import keras
import numpy as np

from tripletreid import csv_dataset, pipeline
from tripletreid.errors import InputError
from tripletreid.files import atomic_path

TILE_HEIGHT = 128         # pixels of each picture in the grid; the width keeps the net's ratio
IMAGE_WEIGHT = 0.5        # of the image in the overlay, the rest is the coloured map
GAP = 4                   # white pixels between tiles
PAIR_GAP = 12             # and between one image's pair of tiles and the next
CAPTION = 16              # height of the caption band above each pair
HEADER = 22               # height of the explanation line at the top
FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.4
TEXT = (0, 0, 0)          # BGR
WHITE = (255, 255, 255)
GLOBAL_POOLINGS = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)


def feature_map_model(model):
    """A model from the raw images to the backbone's last feature map, [N, h, w, C]: the input
    of its last global pooling (every backbone of `nets/` has one, followed by nothing or by
    layers on the pooled vector, as osnet's).

    `model` is an embedding network of `tripletreid.model.build_model` (its backbone is the
    nested Keras model); the layers and weights are shared, nothing is copied."""
    backbone = next((layer for layer in model.layers if isinstance(layer, keras.Model)), None)
    if backbone is None:
        raise InputError(f'{model.name}: no backbone model inside the network')
    return keras.Model(backbone.input, _pooled_input(backbone),
                       name=f'{backbone.name}_feature_map')


def _pooled_input(network):
    """The tensor of `network`'s graph that its last global pooling pools (one that keeps the
    spatial axes, such as a channel gate's, does not count). A backbone that ends in another
    model (Keras Applications' ResNet50 in `nets/keras_resnet50.py`) is followed inside it."""
    for layer in reversed(network.layers):  # functional layers are in topological order
        if isinstance(layer, GLOBAL_POOLINGS) and not layer.keepdims:
            return layer.input
        if isinstance(layer, keras.Model):
            # The tensor of `network`'s graph that feeds the nested model (the nested model's
            # own `input` belongs to its graph).
            fed = layer._inbound_nodes[0].input_tensors[0]
            return keras.Model(layer.input, _pooled_input(layer))(fed)
    raise InputError(f'{network.name}: no global pooling, so no last feature map to draw')


def energy(feature_maps):
    """The sum over channels of the squared activations: [N, h, w, C] -> [N, h, w]."""
    return np.sum(np.square(np.asarray(feature_maps, np.float64)), axis=-1)


def normalised_map(energy_map, size):
    """One image's energy [h, w] upsampled bilinearly (OpenCV, half-pixel centres) to `size`
    (height, width) and scaled to [0, 1] from its minimum to its maximum; all zeros when the
    map is flat."""
    upsampled = cv2.resize(energy_map.astype(np.float32), (size[1], size[0]),
                           interpolation=cv2.INTER_LINEAR).astype(np.float64)
    low, high = upsampled.min(), upsampled.max()
    return (upsampled - low) / (high - low) if high > low else np.zeros_like(upsampled)


def overlay(image_rgb, unit_map):
    """The map in [0, 1] coloured (jet) over the uint8 RGB image of the same size, as BGR."""
    coloured = cv2.applyColorMap(np.uint8(np.floor(255 * unit_map)), cv2.COLORMAP_JET)
    image_bgr = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    return cv2.addWeighted(image_bgr, IMAGE_WEIGHT, coloured, 1 - IMAGE_WEIGHT, 0)


def compute(model, paths, net_size, batch_size=32):
    """The energy maps [N, h, w] of the images `paths`, each resized to `net_size` (height,
    width) as embed.py feeds the network (no crop, no flip)."""
    features = feature_map_model(model)
    return np.concatenate([energy(features(batch, training=False)) for batch in
                           pipeline.image_batches(paths, net_size, batch_size, threads=2)])


def choose(dataset, count):
    """`count` rows of the CSV `Dataset` spread evenly over it (all of them when it has fewer),
    so that a CSV sorted by identity shows many identities."""
    total = len(dataset)
    rows = np.arange(total) if count >= total else np.arange(count) * total // count
    return csv_dataset.subset(dataset, rows)


def captions(dataset):
    """The caption of each row of a CSV `Dataset`: its identity, and its camera when known."""
    cameras = dataset.cams if dataset.cams is not None else [None] * len(dataset)
    return [f'{pid}' if camera is None else f'{pid} cam {camera}'
            for pid, camera in zip(dataset.pids, cameras)]


def draw_dataset(model, net_size, dataset, image_root, path, columns):
    """The grid of every row of the CSV `Dataset` into the PNG `path`; `model` is the trained
    embedding network, `net_size` its input (height, width)."""
    paths = pipeline.image_paths(dataset.fids, image_root)
    save_grid(paths, captions(dataset), compute(model, paths, net_size), tile_size(net_size),
              path, columns)


def tile_size(net_size):
    """(height, width) of each picture: TILE_HEIGHT high, the network input's aspect ratio."""
    return TILE_HEIGHT, max(1, round(TILE_HEIGHT * net_size[1] / net_size[0]))


def save_grid(paths, labels, energies, size, path, columns):
    """Write the PNG `path`: for each image (its label above) the image and the image under
    its activation map, side by side, `columns` images a row, an explanation line on top.
    Pictures are `size` (height, width); images are read from `paths`."""
    pairs = []
    for image_path, label, energy_map in zip(paths, labels, energies):
        image = np.uint8(np.clip(np.round(pipeline.load_image(image_path, size).numpy()), 0,
                                 255))
        pair = np.hstack([cv2.cvtColor(image, cv2.COLOR_RGB2BGR), _white(size[0], GAP),
                          overlay(image, normalised_map(energy_map, size))])
        pairs.append(np.vstack([_caption(label, pair.shape[1]), pair]))
    rows = [_row(pairs[i:i + columns], columns) for i in range(0, len(pairs), columns)]
    width = rows[0].shape[1]
    picture = np.vstack([_header(width)] + [np.vstack([row, _white(GAP, width)])
                                            for row in rows])
    ok, png = cv2.imencode('.png', picture)
    if not ok:
        raise InputError(f'{path}: could not encode the activation-map picture')
    with atomic_path(path) as tmp:
        png.tofile(tmp)


def _white(height, width):
    return np.full((height, width, 3), 255, np.uint8)


def _text(band, text, y):
    cv2.putText(band, text, (GAP, y), FONT, FONT_SCALE, TEXT, 1, cv2.LINE_AA)
    return band


def _caption(text, width):
    """A white band with `text` (cut to fit the pair's width)."""
    fits = len(text)
    while fits and cv2.getTextSize(text[:fits], FONT, FONT_SCALE, 1)[0][0] > width - GAP:
        fits -= 1
    return _text(_white(CAPTION, width), text[:fits], CAPTION - 4)


def _row(pairs, columns):
    """`pairs` side by side with PAIR_GAP between them, padded to `columns` pairs."""
    height, width = pairs[0].shape[:2]
    cells = pairs + [_white(height, width)] * (columns - len(pairs))
    spaced = []
    for cell in cells:
        spaced += [_white(height, PAIR_GAP), cell]
    return np.hstack(spaced + [_white(height, PAIR_GAP)])


def _header(width):
    return _text(_white(HEADER, width), 'each pair: image | energy of the last feature map '
                 '(blue low, red high)', HEADER - 7)
