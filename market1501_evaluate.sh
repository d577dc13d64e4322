#!/bin/sh
# Embed Market-1501's query and gallery with a trained experiment, using the paper's test-time
# augmentation (flip and five crops, averaged), then evaluate with the Market protocol.
# Paper (TriNet, this setting): mAP 69.14, rank-1 84.92.
#   IMAGE_ROOT   the extracted Market-1501 folder
#   EXP_ROOT     the experiment trained by market1501_train.sh
# Further flags are passed on to evaluate.py, e.g. `--use_market_ap` or `--picture_dir pics`.
set -e
IMAGE_ROOT=${IMAGE_ROOT:-/absolute/path/to/Market-1501-v15.09.15}
EXP_ROOT=${EXP_ROOT:-./experiments/market1501_trinet}
cd "$(dirname "$0")"

for split in query test; do
    python embed.py \
        --experiment_root "$EXP_ROOT" \
        --dataset data/market1501_$split.csv \
        --image_root "$IMAGE_ROOT" \
        --flip_augment \
        --crop_augment five \
        --aggregator mean
done

python evaluate.py \
    --excluder market1501 \
    --query_dataset data/market1501_query.csv \
    --query_embeddings "$EXP_ROOT/market1501_query_embeddings.h5" \
    --gallery_dataset data/market1501_test.csv \
    --gallery_embeddings "$EXP_ROOT/market1501_test_embeddings.h5" \
    --metric euclidean \
    --filename "$EXP_ROOT/market1501_evaluation.json" \
    "$@"
