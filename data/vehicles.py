"""The vehicle datasets: VeRi-776 (Liu et al., ECCV 2016) and VehicleID (Liu et al., CVPR 2016).

VeRi-776: `image_train/`, `image_query/` and `image_test/` (the gallery) with names
`<vehicle>_c<camera>_<frame>_<n>.jpg` (`0001_c001_00016450_0.jpg`); the protocol is
Market-1501's: a query ignores the gallery images of its vehicle from its camera.

VehicleID: `image/<name>.jpg` and `train_test_split/` with `train_list.txt` and
`test_list_{800,1600,2400}.txt`, lines `<name> <vehicle>`. No cameras; the protocol draws, ten
times, one random image per vehicle of a test list as the gallery, the others being the queries
(`evaluate.py --gallery_draws 10`).
"""
import os
import re

from data.builders import (Row, build_splits, check_listed, finish, output_paths,
                           read_list_file)

VERI_NAME = re.compile(r'^(?P<identity>\d+)_c(?P<camera>\d+)_\d+_\d+\.jpg$')
VERI_SPLITS = (('train', 'image_train'), ('query', 'image_query'), ('test', 'image_test'))
VEHICLEID_LISTS = (('train', 'train_list.txt'), ('test800', 'test_list_800.txt'),
                   ('test1600', 'test_list_1600.txt'), ('test2400', 'test_list_2400.txt'))


def build_veri(dataset_root, output_dir, **options):
    """`veri_{train,query,test}.csv` (`identity,path,camera`, paths relative to the VeRi
    folder; test is the gallery)."""
    return build_splits(dataset_root, output_dir, 'veri', VERI_NAME, VERI_SPLITS,
                        with_camera=True, **options)


def build_vehicleid(dataset_root, output_dir, overwrite=False, check=False, threads=8,
                    skip_unmatched=False):
    """`vehicleid_{train,test800,test1600,test2400}.csv` (`identity,path`, paths
    `image/<name>.jpg` relative to the VehicleID folder, list order, identities as listed)."""
    del skip_unmatched  # names are free-form: nothing to match
    paths = output_paths(output_dir, 'vehicleid', [split for split, _ in VEHICLEID_LISTS],
                         overwrite)
    outputs = []
    for split, list_name in VEHICLEID_LISTS:
        list_path = os.path.join(dataset_root, 'train_test_split', list_name)
        entries = read_list_file(list_path, '0004763 8')
        rows = [Row(entry.label, f'image/{entry.name}', None)
                if entry.name.lower().endswith('.jpg')
                else Row(entry.label, f'image/{entry.name}.jpg', None) for entry in entries]
        check_listed(dataset_root, [row.path for row in rows],
                     [f'{list_path}:{entry.line}' for entry in entries])
        outputs.append((paths[split], dataset_root, rows, False))
    return finish(outputs, check, threads)
