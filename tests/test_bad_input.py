"""Bad input to every command, met as a user meets it: from the command line, each case must
stop with exit code 2 and a last line naming the file, CSV line or flag, without a traceback,
and leave every existing file as it was. Some odd inputs must simply work (exit 0).

Each case of `CASES` makes its inputs in a folder of its own; every file there is fingerprinted
(size, mtime, SHA-256) before and after the run, and a run may add files only where the case
says. Starting TensorFlow costs a command about 5 s of CPU, so the module fixture runs the
selected cases in two Python processes, each running its share one after another as their
command lines run them (`helpers/case_runner.py`); the few that need a process of their own (a
read-only mount, a file-size limit) run alone. Each test then checks one case.
"""
import csv
import dataclasses
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import cv2
import h5py
import numpy as np
import PIL.Image
import pytest

from conftest import ROOT

TINY = ['--model_name', 'lunet', '--head_name', 'fc1024', '--embedding_dim', '8',
        '--batch_p', '2', '--batch_k', '2', '--net_input_height', '32', '--net_input_width',
        '16', '--pre_crop_height', '32', '--pre_crop_width', '16', '--train_iterations', '2',
        '--checkpoint_frequency', '0', '--loading_threads', '2', '--seed', '1']
SIZE = (16, 8)  # of the images, height x width
SUFFIX = {'jpg': '.jpg', 'grey': '.png', 'rgba': '.png', 'png16': '.png', 'cmyk': '.jpg'}
ODD_KINDS = ['grey', 'rgba', 'png16', 'cmyk']  # P = 2 of these 4 identities: 2 steps see all
WORKERS = 2
FINISHED = 'Saved the checkpoint of step 2; training finished'


# Images and datasets.

def colour_image(seed):
    """A noisy image of one colour per `seed`: identities are learnable and distinct."""
    rng = np.random.default_rng(seed)
    colour = rng.integers(0, 256, 3)
    return np.clip(colour + rng.normal(0, 30, SIZE + (3,)), 0, 255).astype(np.uint8)


def write_image(path, rgb, kind='jpg'):
    """`rgb` as a file of `kind` (see SUFFIX): RGB JPEG, grey or RGBA PNG, 16-bit RGB PNG (each
    value times 257, so that 255 becomes 65535), or CMYK JPEG."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if kind == 'png16':
        write_file(path, cv2.imencode('.png', (rgb.astype(np.uint16) * 257)[..., ::-1])[1])
        return
    image = PIL.Image.fromarray(rgb)
    if kind == 'rgba':
        image.putalpha(PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, SIZE,
                                                                             np.uint8)))
    image.convert({'grey': 'L', 'cmyk': 'CMYK'}.get(kind, image.mode)).save(path, quality=95)


def write_file(path, content, encoding='utf-8'):
    """`content` (text, bytes or an array of bytes) into `path`; returns the path."""
    with open(path, 'wb') as f:
        f.write(content.encode(encoding) if isinstance(content, str) else bytes(content))
    return path


def write_set(folder, rows, kind='jpg', newline='\n', bom=False):
    """Images for `rows` (identity, name without suffix) below folder/images, of `kind` or of
    the kinds of a list, one per row; and their CSV folder/set.csv, identities quoted where
    needed. Returns (CSV, image root)."""
    image_root = os.path.join(folder, 'images')
    identities = list(dict.fromkeys(identity for identity, _ in rows))
    kinds = [kind] * len(rows) if isinstance(kind, str) else kind
    lines = []
    for j, ((identity, name), kind) in enumerate(zip(rows, kinds)):
        rgb = colour_image(identities.index(identity) * 100 + j % 2)
        write_image(os.path.join(image_root, name + SUFFIX[kind]), rgb, kind)
        lines.append([identity, name + SUFFIX[kind]])
    csv_path = os.path.join(folder, 'set.csv')
    with open(csv_path, 'w', newline='', encoding='utf-8-sig' if bom else 'utf-8') as f:
        csv.writer(f, lineterminator=newline).writerows(lines)
    return csv_path, image_root


def good_set(folder, **options):
    """Two identities of two images: every PK batch (P = K = 2) holds all four."""
    return write_set(folder, [('0', 'a0'), ('0', 'a1'), ('1', 'b0'), ('1', 'b1')], **options)


# Command lines. `d` is the case's folder; `s` is what the cases share (`Shared`).

def train_args(d, csv_path, image_root, *extra):
    return ['--experiment_root', os.path.join(d, 'exp'), '--train_set', csv_path,
            '--image_root', image_root, *TINY, *extra]


def train_on(d, *extra, **options):
    """train.py on the good set, written with the `options` of `write_set`."""
    return train_args(d, *good_set(d, **options), *extra)


def train_with_image(d, content):
    """The good set with the image of CSV line 3 made of `content(good JPEG bytes)`, or
    deleted if `content` is None."""
    csv_path, image_root = good_set(d)
    path = os.path.join(image_root, 'b0.jpg')
    if content is None:
        os.remove(path)
    else:
        write_file(path, content(open(path, 'rb').read()))
    return train_args(d, csv_path, image_root)


def raw_csv_training(d, text, encoding='utf-8'):
    return train_args(d, write_file(os.path.join(d, 'set.csv'), text, encoding), d)


def copy_experiment(s, d, **edits):
    """d/exp: the module experiment's args.json, updated by `edits`, and newest checkpoint."""
    root = os.path.join(d, 'exp')
    os.makedirs(root)
    with open(os.path.join(s.root, 'args.json')) as f:
        stored = json.load(f)
    with open(os.path.join(root, 'args.json'), 'w') as f:
        json.dump({**stored, **edits}, f)
    for name in os.listdir(s.root):
        if name.startswith('checkpoint-3.'):
            shutil.copy(os.path.join(s.root, name), root)
    return root


def embed_args(s, d, *extra, dataset=None, **edits):
    return ['--experiment_root', copy_experiment(s, d, **edits), '--dataset',
            dataset or s.csv_path, '--quiet', *extra]


def embed_existing(s, d, *extra):
    """embed.py into an experiment that holds the default output already."""
    root = copy_experiment(s, d)
    with h5py.File(os.path.join(root, 'train_embeddings.h5'), 'w') as f:
        f['emb'] = np.ones((12, 8), np.float32)
    return ['--experiment_root', root, '--dataset', s.csv_path, '--quiet', *extra]


def embed_truncated(s, d):
    csv_path, image_root = good_set(d)
    path = os.path.join(image_root, 'a1.jpg')
    data = open(path, 'rb').read()
    write_file(path, data[:len(data) * 2 // 3])
    return embed_args(s, d, '--image_root', image_root, dataset=csv_path)


def embed_files_list(s, d, second=None, *extra):
    """embed_files.py on a list of two images; the second holds `second` if given."""
    paths = [os.path.join(d, 'a.jpg'), os.path.join(d, 'b.jpg')]
    for i, path in enumerate(paths):
        write_image(path, colour_image(i))
    if second is not None:
        write_file(paths[1], second)
    image_list = write_file(os.path.join(d, 'list.txt'), ''.join(p + '\n' for p in paths))
    return [image_list, '--experiment_root', copy_experiment(s, d), '--quiet', *extra]


def export_args(s, d, *extra, **edits):
    return ['--experiment_root', copy_experiment(s, d, **edits), '--output',
            os.path.join(d, 'model.keras'), *extra]


def export_broken_args_json(s, d):
    args = export_args(s, d)
    with open(os.path.join(args[1], 'args.json'), 'r+') as f:
        f.truncate(40)
    return args


QUERY = [('0001', 'query/0001_c1s1_000010_00.jpg'), ('0002', 'query/0002_c1s1_000011_00.jpg')]
GALLERY = [('0001', 'bounding_box_test/0001_c2s1_000001_00.jpg'),
           ('0002', 'bounding_box_test/0002_c3s1_000002_00.jpg'),
           ('0003', 'bounding_box_test/0003_c1s1_000003_00.jpg')]


def csv_text(rows):
    return ''.join(f'{pid},{fid}\n' for pid, fid in rows)


def write_h5(path, values, name='emb'):
    with h5py.File(path, 'w') as f:
        f[name] = np.asarray(values, dtype=np.float32)
    return path


def evaluate_args(d, *extra, query=None, gallery=None, query_emb=None, gallery_emb=None):
    """A small Market-style evaluation. Any part can be given instead: the CSV content, and
    the embeddings as an array or a file."""
    args = ['--excluder', 'market1501', '--metric', 'euclidean']
    for role, content, emb, rows in (('query', query, query_emb, QUERY),
                                      ('gallery', gallery, gallery_emb, GALLERY)):
        if emb is None:
            emb = np.arange(len(rows) * 4).reshape(-1, 4)
        if not isinstance(emb, str):
            emb = write_h5(os.path.join(d, f'{role}.h5'), emb)
        content = csv_text(rows) if content is None else content
        args += [f'--{role}_dataset', write_file(os.path.join(d, f'{role}.csv'), content),
                 f'--{role}_embeddings', emb]
    return args + list(extra)


def evaluate_existing(d, *extra):
    """evaluate.py with an existing result as --filename."""
    result = write_file(os.path.join(d, 'result.json'), '{"mAP": 0.5}\n')
    return evaluate_args(d, '--filename', result, *extra)


def build_csv_folders(d, *extra, output='out.csv', not_an_image=None):
    """`folders` on two identity folders of one image each, plus `not_an_image` if given."""
    for identity in ('alice', 'bob'):
        write_image(os.path.join(d, 'people', identity, '0.jpg'), colour_image(0))
    if not_an_image:
        write_file(os.path.join(d, not_an_image), b'\xff\xd8\xff' + bytes(50))
    return ['folders', os.path.join(d, 'people'), os.path.join(d, output), *extra]


def file_limit(size):
    """A preexec_fn: no file may grow beyond `size` bytes, so writing fails as on a full disk
    (EFBIG rather than ENOSPC); SIGXFSZ is ignored, or it would kill the process instead."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return limit


def read_only(folder):
    """A command prefix that runs the command with `folder` read-only.

    For a user, chmod does it (no prefix). root writes anyway, so it gets a mount namespace of
    its own in which `folder` is bound read-only onto itself; skipped where neither works.
    """
    if os.geteuid() != 0:
        for path in [folder] + [os.path.join(folder, name) for name in os.listdir(folder)]:
            os.chmod(path, 0o555 if os.path.isdir(path) else 0o444)
        return []
    prefix = ['unshare', '-m', 'sh', '-c',
              'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"', folder]
    try:
        probe = subprocess.run(prefix + ['sh', '-c', f'! touch "{folder}/.probe"'],
                               capture_output=True, timeout=30).returncode
    except OSError:
        probe = None
    if probe != 0:
        pytest.skip('running as root, and no read-only bind mount (unshare -m) here')
    return prefix


def embed_read_only(s, d):
    args = embed_args(s, d)
    return Call(args, prefix=read_only(args[1]))


def resume_read_only(s, d):
    root = copy_experiment(s, d, train_iterations=5)
    return Call(['--experiment_root', root, '--resume'], prefix=read_only(root))


def resume_without_args_json(d):
    root = os.path.join(d, 'exp')
    os.makedirs(root)
    write_file(os.path.join(root, 'notes.txt'), 'precious')
    return train_on(d, '--resume')


# The cases.

@dataclasses.dataclass
class Call:
    args: list
    prefix: list = dataclasses.field(default_factory=list)
    preexec_fn: Callable = None


@dataclasses.dataclass
class Case:
    id: str
    command: str  # a script, or a module run with -m
    setup: Callable  # (case folder, Shared) -> the arguments, or a Call
    message: str  # in the last line of stderr
    code: int = 2
    writes: str = None  # the sub-folder in which the run may create files


def works(id_, setup, message=FINISHED):
    """A training run that must succeed: 2 steps, `message` in its log."""
    return Case(id_, 'train.py', setup, message, code=0, writes='exp')


def train_fails(id_, setup, message):
    # train.py checks the training set before it creates the experiment root: nothing written.
    return Case(id_, 'train.py', setup, message)


CASES = [
    # Dataset CSVs.
    train_fails('csv_missing_column', lambda d, s: raw_csv_training(d, '0,a.jpg\n0,b.jpg\n1\n'),
                'set.csv:3: expected `identity,path`, `identity,path,camera` or '
                '`identity,path,camera,tracklet`, found 1'),
    Case('csv_extra_columns', 'evaluate.py',
         lambda d, s: evaluate_args(d, query=csv_text(QUERY[:1]) + 'a,x.jpg,1,t,extra\n'),
         'query.csv:2: expected `identity,path`, `identity,path,camera` or '
         '`identity,path,camera,tracklet`, found 5 column(s)'),
    Case('csv_empty', 'embed.py',
         lambda d, s: embed_args(s, d, dataset=write_file(os.path.join(d, 'e.csv'), '')),
         'e.csv: the CSV has no rows'),
    Case('csv_header_row', 'evaluate.py',
         lambda d, s: evaluate_args(d, gallery='identity,path\n' + csv_text(GALLERY)),
         'gallery.csv:1: looks like a header row (identity,path)'),
    train_fails('csv_not_utf8_late_line',  # far past the first block a decoder reads
                lambda d, s: raw_csv_training(d, ''.join(f'{i % 9},{i}.jpg\n' for i in range(3000))
                                              + 'Jos\xe9,x.jpg\n', 'latin-1'),
                'set.csv:3001: not valid UTF-8'),
    Case('csv_utf16', 'evaluate.py',
         lambda d, s: evaluate_args(d, gallery=csv_text(GALLERY).encode('utf-16-le')),
         'gallery.csv:1: NUL character (UTF-16 or binary? the CSV must be UTF-8 text)'),
    Case('csv_unclosed_quote', 'evaluate.py',
         lambda d, s: evaluate_args(d, query=f'0001,{QUERY[0][1]}\n"0002,{QUERY[1][1]}\n'),
         'query.csv:2: unclosed quote'),
    Case('csv_is_a_folder', 'evaluate.py',
         lambda d, s: evaluate_args(d) + ['--gallery_dataset', d],
         'csv_is_a_folder: is a directory, not a CSV file'),
    Case('csv_missing', 'embed.py',
         lambda d, s: embed_args(s, d, dataset=os.path.join(d, 'nothere.csv')),
         'nothere.csv: no such file'),
    works('csv_windows_crlf_and_bom', lambda d, s: train_on(d, newline='\r\n', bom=True),
          '4 images of 2 identities'),
    works('csv_quoted_identities_with_commas',
          lambda d, s: train_args(d, *write_set(d, [('Doe, Jane', 'a0'), ('Doe, Jane', 'a1'),
                                                    ('Roe, "Rick"', 'b0'),
                                                    ('Roe, "Rick"', 'b1')])),
          '4 images of 2 identities'),
    works('csv_non_ascii_paths',
          lambda d, s: train_args(d, *write_set(d, [('José', 'müller/ñ0'), ('José', 'müller/ñ1'),
                                                    ('Zoë', 'øst/日本')])),
          '3 images of 2 identities'),
    # Image files.
    train_fails('image_missing', lambda d, s: train_with_image(d, None),
                'set.csv:3: image'),
    train_fails('image_empty', lambda d, s: train_with_image(d, lambda data: b''),
                'set.csv:3: image'),
    train_fails('image_corrupt',
                lambda d, s: train_with_image(d, lambda data: data[:4] + bytes(range(256)) * 3),
                'b0.jpg cannot be decoded (corrupt or truncated)'),
    Case('image_truncated', 'embed.py', lambda d, s: embed_truncated(s, d),
         'a1.jpg cannot be decoded (corrupt or truncated)'),
    Case('image_not_an_image', 'embed_files.py', lambda d, s: embed_files_list(s, d, b'hello'),
         'b.jpg is not a JPEG, PNG, BMP or GIF image'),
    works('images_grey_rgba_png16_cmyk',  # what each becomes: test_odd_images_become_...
          lambda d, s: train_args(d, *write_set(d, [(kind, f'{kind}{j}') for kind in ODD_KINDS
                                                    for j in range(2)],
                                                [kind for kind in ODD_KINDS for _ in range(2)])),
          '8 images of 4 identities'),
    # Identities, batches and flags.
    works('single_image_identity',
          lambda d, s: train_args(d, *write_set(d, [('0', 'a0'), ('1', 'b0'), ('1', 'b1')])),
          '3 images of 2 identities'),
    train_fails('fewer_identities_than_p', lambda d, s: train_on(d, '--batch_p', '3'),
                '--batch_p 3 needs at least that many identities, the training set has 2'),
    train_fails('batch_k_zero', lambda d, s: train_on(d, '--batch_k', '0'),
                "argument --batch_k: '0' is not a positive integer"),
    train_fails('image_root_missing',
                lambda d, s: train_args(d, good_set(d)[0], os.path.join(d, 'nothere')),
                "nothere' is not a directory"),
    Case('unknown_excluder', 'evaluate.py', lambda d, s: evaluate_args(d, '--excluder', 'cuhk'),
         "argument --excluder: invalid choice: 'cuhk'"),
    Case('batch_size_zero', 'evaluate.py', lambda d, s: evaluate_args(d, '--batch_size', '0'),
         "argument --batch_size: '0' is not a positive integer"),
    Case('query_expansion_negative', 'evaluate.py',
         lambda d, s: evaluate_args(d, '--query_expansion', '-1'),
         "argument --query_expansion: '-1' is not a non-negative integer"),
    # Experiment roots, args.json and checkpoints.
    Case('experiment_root_is_a_file', 'train.py',
         lambda d, s: train_on(d) + ['--experiment_root', write_file(os.path.join(d, 'x'), 'x')],
         'x: is a file, not a folder'),
    Case('experiment_root_read_only_embed', 'embed.py', lambda d, s: embed_read_only(s, d),
         'train_embeddings.h5: cannot write ('),
    Case('experiment_root_read_only_resume', 'train.py', lambda d, s: resume_read_only(s, d),
         'train.log: cannot write ('),
    Case('resume_without_args_json', 'train.py', lambda d, s: resume_without_args_json(d),
         'exp/args.json: no such file (is this an experiment root?)'),
    Case('args_json_unknown_key', 'embed.py', lambda d, s: embed_args(s, d, learning_rates=3),
         "args.json: unknown key 'learning_rates'"),
    Case('args_json_invalid_value', 'train.py',
         lambda d, s: ['--experiment_root', copy_experiment(s, d, batch_k=0), '--resume'],
         "args.json: invalid value 0 for 'batch_k': '0' is not a positive integer"),
    Case('args_json_not_json', 'export.py', lambda d, s: export_broken_args_json(s, d),
         'args.json: not valid JSON'),
    Case('checkpoint_of_another_net', 'embed.py',
         lambda d, s: embed_args(s, d, model_name='mobilenet_v1_1_224'),
         'does not fit the model of args.json'),
    Case('checkpoint_of_another_head', 'export.py',
         lambda d, s: export_args(s, d, head_name='direct'),
         'does not fit the model of args.json'),
    Case('checkpoint_missing', 'export.py',
         lambda d, s: export_args(s, d, '--checkpoint', 'checkpoint-99'),
         'checkpoint-99: no such checkpoint (found: checkpoint-3)'),
    Case('import_missing_checkpoint', 'import_official.py',
         lambda d, s: ['--checkpoint', os.path.join(d, 'checkpoint-25000'),
                       '--experiment_root', os.path.join(d, 'new')],
         'checkpoint-25000: no such checkpoint'),
    Case('import_checkpoint_of_another_net', 'import_official.py',
         lambda d, s: ['--checkpoint', os.path.join(copy_experiment(s, d), 'checkpoint-3'),
                       '--model_name', 'mobilenet_v1_1_224',
                       '--experiment_root', os.path.join(d, 'new')],
         'does not fit mobilenet_v1_1_224 + fc1024'),
    # Embeddings for evaluation.
    Case('h5_of_another_tool', 'evaluate.py',
         lambda d, s: evaluate_args(d, query_emb=write_h5(os.path.join(d, 'other.h5'),
                                                          np.ones((2, 4)), 'features')),
         'other.h5: no dataset `emb` (found: features)'),
    Case('h5_not_hdf5', 'evaluate.py',
         lambda d, s: evaluate_args(d, gallery_emb=write_file(os.path.join(d, 'g.h5'), 'text')),
         'g.h5: not a readable HDF5 file'),
    Case('embeddings_with_nan', 'evaluate.py',
         lambda d, s: evaluate_args(d, query_emb=[[0, 1, 2, 3], [0, np.nan, 1, 1]]),
         'query.h5: row 1 holds NaN or infinite values; it is query/0002_c1s1_000011_00.jpg'),
    Case('embeddings_fewer_than_csv_rows', 'evaluate.py',
         lambda d, s: evaluate_args(d, gallery_emb=np.ones((2, 4))),
         'gallery.h5: 2 embeddings, but'),
    Case('embedding_sizes_differ', 'evaluate.py',
         lambda d, s: evaluate_args(d, query_emb=np.ones((2, 8))),
         'embedding sizes differ: 8 in'),
    Case('query_csv_of_another_dataset', 'evaluate.py',
         lambda d, s: evaluate_args(d, query='0001,cam1/0001_f0046985.jpg\n'
                                             '0002,cam2/0002_f0046986.jpg\n'),
         'query.csv:1: cannot parse the file name "cam1/0001_f0046985.jpg"'),
    # Outputs that exist, and full disks.
    Case('evaluate_output_exists', 'evaluate.py', lambda d, s: evaluate_existing(d),
         'result.json exists already; pass --overwrite to replace it'),
    Case('embed_output_exists', 'embed.py', lambda d, s: embed_existing(s, d),
         'train_embeddings.h5 exists already; pass --overwrite to replace it'),
    Case('embed_files_output_exists', 'embed_files.py',
         lambda d, s: embed_files_list(s, d, None, '--output',
                                       write_file(os.path.join(d, 'out.csv'), 'x\n')),
         'out.csv exists already; pass --overwrite to replace it'),
    Case('evaluate_disk_full', 'evaluate.py',
         lambda d, s: Call(evaluate_existing(d, '--overwrite'), preexec_fn=file_limit(64)),
         'result.json: cannot write (File too large)'),
    Case('embed_disk_full', 'embed.py',
         lambda d, s: Call(embed_existing(s, d, '--overwrite'), preexec_fn=file_limit(1024)),
         'train_embeddings.h5: cannot write (File too large)'),
    # The dataset tool.
    Case('build_csv_missing_root', 'data.build_csv',
         lambda d, s: ['folders', os.path.join(d, 'nothere'), os.path.join(d, 'o.csv')],
         'nothere: no such folder'),
    Case('build_csv_output_exists', 'data.build_csv',
         lambda d, s: build_csv_folders(d, output='people/bob/0.jpg'),
         '0.jpg exists already; pass --overwrite to replace it'),
    Case('build_csv_output_below_a_file', 'data.build_csv',
         lambda d, s: build_csv_folders(d, output='people/bob/0.jpg/o.csv'),
         '0.jpg is a file, not a folder'),
    Case('build_csv_corrupt_image', 'data.build_csv',
         lambda d, s: build_csv_folders(d, '--check_images', not_an_image='people/bob/1.jpg'),
         '1 of 3 image(s) cannot be decoded: bob/1.jpg'),
]


# Running them.

@dataclasses.dataclass
class Shared:
    """What the cases share: the module's trained experiment, which they copy, never change."""
    root: str = None
    csv_path: str = None


@dataclasses.dataclass
class Outcome:
    call: Call = None
    before: dict = None
    result: subprocess.CompletedProcess = None
    after: dict = None
    skip: str = None
    error: Exception = None  # of the setup; the test raises it


def fingerprints(folder):
    """{relative path: (size, mtime, SHA-256)} of every file below `folder`."""
    found = {}
    for directory, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, 'rb') as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            stat = os.stat(path)
            found[os.path.relpath(path, folder)] = (stat.st_size, stat.st_mtime_ns, digest)
    return found


def prepare(case, folder, shared):
    """The case's inputs and their fingerprints. A skip or a failing setup is kept for the
    case's test, so that it does not stop the other cases."""
    os.makedirs(folder)
    try:
        call = case.setup(folder, shared)
    except pytest.skip.Exception as skip:
        return Outcome(skip=str(skip))
    except Exception as error:
        return Outcome(error=error)
    call = call if isinstance(call, Call) else Call(call)
    return Outcome(call, fingerprints(folder))


def command_of(case):
    return case.command if case.command.startswith('data.') else os.path.join(ROOT, case.command)


def run_alone(case, outcome, folder):
    """A case that needs a process of its own (a command prefix, or limits set before exec)."""
    command = ([sys.executable, '-m', case.command] if case.command.startswith('data.')
               else [sys.executable, command_of(case)])
    outcome.result = subprocess.run(
        [*outcome.call.prefix, *command, *outcome.call.args], capture_output=True, text=True,
        cwd=ROOT, timeout=300, stdin=subprocess.DEVNULL, preexec_fn=outcome.call.preexec_fn)
    outcome.after = fingerprints(folder)


def run_together(cases, found, base, folder):
    """Cases run one after another in one Python process (`helpers/case_runner.py`), each as
    its command line runs it: TensorFlow starts once for all of them."""
    os.makedirs(folder)
    spec, results = os.path.join(folder, 'cases.json'), os.path.join(folder, 'results.json')
    with open(spec, 'w') as f:
        json.dump([{'id': case.id, 'command': command_of(case),
                    'args': found[case.id].call.args} for case in cases], f)
    subprocess.run([sys.executable, os.path.join(ROOT, 'tests', 'helpers', 'case_runner.py'),
                    spec, results], cwd=ROOT, timeout=900, stdin=subprocess.DEVNULL, check=True)
    with open(results) as f:
        for case_id, result in json.load(f).items():
            found[case_id].result = subprocess.CompletedProcess(
                case_id, result['code'], '', result['stderr'])
            found[case_id].after = fingerprints(os.path.join(base, case_id))


@pytest.fixture(scope='module')
def outcomes(request, tmp_path_factory):
    """{case id: Outcome} of the cases selected in this session, run `WORKERS` at a time."""
    selected = {item.callspec.params['case'].id for item in request.session.items
                if item.module.__name__ == __name__ and 'case' in getattr(
                    getattr(item, 'callspec', None), 'params', {})}
    cases = [case for case in CASES if case.id in selected]
    shared = Shared()
    if any(case.command not in ('evaluate.py', 'data.build_csv') for case in cases):
        shared.root, shared.csv_path = request.getfixturevalue('experiment')[:2]
    base = str(tmp_path_factory.mktemp('bad_input'))
    found = {case.id: prepare(case, os.path.join(base, case.id), shared) for case in cases}
    ready = [case for case in cases if found[case.id].call is not None]
    alone = [case for case in ready
             if found[case.id].call.prefix or found[case.id].call.preexec_fn]
    together = [case for case in ready if case not in alone]
    runners = str(tmp_path_factory.mktemp('runners'))
    with ThreadPoolExecutor(WORKERS) as pool:
        jobs = [pool.submit(run_together, together[i::WORKERS], found, base,
                            os.path.join(runners, str(i)))
                for i in range(WORKERS) if together[i::WORKERS]]
        jobs += [pool.submit(run_alone, case, found[case.id], os.path.join(base, case.id))
                 for case in alone]
        for job in jobs:
            job.result()
    return found


def changes(outcome, writes):
    """Existing files changed or removed, and files created outside `writes`."""
    problems = [f'{path} changed or removed' for path, fingerprint in outcome.before.items()
                if outcome.after.get(path) != fingerprint]
    problems += [f'{path} created' for path in sorted(set(outcome.after) - set(outcome.before))
                 if writes is None or not path.startswith(writes + os.sep)]
    return problems


@pytest.mark.parametrize('case', CASES, ids=[case.id for case in CASES])
def test_bad_input(case, outcomes):
    outcome = outcomes[case.id]
    if outcome.error:
        raise outcome.error
    if outcome.skip:
        pytest.skip(outcome.skip)
    stderr = outcome.result.stderr
    assert outcome.result.returncode == case.code, stderr[-3000:]
    assert 'Traceback' not in stderr, stderr[-3000:]
    if case.code == 0:
        assert case.message in stderr and FINISHED in stderr
    else:
        last = stderr.strip().splitlines()[-1]
        assert ': error: ' in last and case.message in last, stderr[-3000:]
    assert changes(outcome, case.writes) == []


# Odd image formats decode to the right RGB values, not merely to some image.

@pytest.mark.parametrize('kind', ODD_KINDS)
def test_odd_images_become_the_right_rgb(tmp_path, kind):
    from tripletreid import pipeline
    rgb = colour_image(7)
    path = str(tmp_path / f'image{SUFFIX[kind]}')
    write_image(path, rgb, kind)
    loaded = pipeline.load_image(path, SIZE).numpy()
    if kind == 'png16':  # scaled to 8 bits (65535 -> 255), not wrapped (modulo 256)
        np.testing.assert_allclose(loaded, rgb, atol=1)
    elif kind == 'cmyk':  # as Pillow converts it, and close to the original despite JPEG
        pillow = np.asarray(PIL.Image.open(path).convert('RGB'), np.float32)
        assert np.abs(loaded - pillow).max() <= 10
        assert np.abs(loaded - rgb).mean() <= 5
    else:  # grey replicated into R, G and B; alpha dropped
        expected = np.asarray(PIL.Image.open(path).convert('RGB'), np.float32)
        np.testing.assert_array_equal(loaded, expected)
