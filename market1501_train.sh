#!/bin/sh
# The paper's TriNet on Market-1501: ResNet-50 (slim layout) + fc1024 head, 128-D embedding,
# P=18 x K=4, flip and crop augmentation (288x144 resized, 256x128 crops), soft margin,
# euclidean distance, Adam 3e-4 for 25,000 steps with decay from 15,000.
#
# As in the official script, set the three paths (here, or in the environment):
#   IMAGE_ROOT     the extracted Market-1501 folder (holding bounding_box_train/ etc.)
#   INIT_CHECKPT   ImageNet weights of the backbone (the paper starts from them)
#   EXP_ROOT       a new folder for this experiment
# Further flags are passed on to train.py, e.g. `--resume` or `--seed 1`.
set -e
IMAGE_ROOT=${IMAGE_ROOT:-/absolute/path/to/Market-1501-v15.09.15}
INIT_CHECKPT=${INIT_CHECKPT:-/absolute/path/to/resnet_v1_50.ckpt}
EXP_ROOT=${EXP_ROOT:-./experiments/market1501_trinet}
cd "$(dirname "$0")"

# The CSVs (market1501_{train,query,test}.csv), built from the folder once.
[ -f data/market1501_train.csv ] || python -m data.build_csv market1501 "$IMAGE_ROOT" data

python train.py \
    --train_set data/market1501_train.csv \
    --model_name resnet_v1_50 \
    --head_name fc1024 \
    --image_root "$IMAGE_ROOT" \
    --initial_checkpoint "$INIT_CHECKPT" \
    --experiment_root "$EXP_ROOT" \
    --flip_augment \
    --crop_augment \
    --embedding_dim 128 \
    --batch_p 18 \
    --batch_k 4 \
    --pre_crop_height 288 --pre_crop_width 144 \
    --net_input_height 256 --net_input_width 128 \
    --margin soft \
    --metric euclidean \
    --loss batch_hard \
    --learning_rate 3e-4 \
    --train_iterations 25000 \
    --decay_start_iteration 15000 \
    "$@"
