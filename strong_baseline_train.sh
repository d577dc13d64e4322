#!/bin/sh
# The Bag-of-Tricks strong baseline (Luo et al. 2019: Market-1501 mAP 85.9, rank-1 94.5 with
# ResNet-50 at 256x128; 94.2 mAP with re-ranking) with this project's options, next to the
# paper's recipe in market1501_train.sh:
#   last stride 1, BNNeck (the 2048-D pooled feature, batch norm without shift after it), a
#   label-smoothed (0.1) identity loss on the BNNeck feature plus the batch-hard triplet loss
#   with a 0.3 hinge margin on the feature before it, center loss 0.0005 (centers by SGD at
#   0.5), random erasing 0.5, flip and crop, P=16 x K=4, Adam 3.5e-4 with a linear warm-up
#   over 10 epochs and x0.1 at epochs 40 and 70, weight decay 5e-4, 120 epochs.
# One epoch of Market-1501 at 64 images per step is 12,936 / 64 = 202 steps, so the epochs
# above are steps 2,020 (warm-up), 8,080 and 14,140 (drops) and 24,240 (end).
#
# Differences from the PyTorch code, worth knowing when comparing figures:
#   - the warm-up starts at 1/2020 of the rate (theirs at 1/100), then rises linearly alike;
#   - the crop comes from a 276x148 resize (theirs: 10 pixels of zero padding around 256x128);
#   - the weight decay is decoupled (AdamW) and spares batch-norm parameters and biases;
#     theirs is an L2 term in the loss;
#   - ResNet-50 is slim's resnet_v1_50 (stride in the last unit of each block) from
#     slim's ImageNet checkpoint; theirs is torchvision's.
# Evaluate the BNNeck feature as they do, scaled to unit length and without test-time
# augmentation:
#   python embed.py --experiment_root "$EXP_ROOT" --dataset data/market1501_query.csv \
#       --image_root "$IMAGE_ROOT"          (and the same for data/market1501_test.csv)
#   python evaluate.py --excluder market1501 --metric euclidean --normalize \
#       --query_dataset data/market1501_query.csv \
#       --query_embeddings "$EXP_ROOT/market1501_query_embeddings.h5" \
#       --gallery_dataset data/market1501_test.csv \
#       --gallery_embeddings "$EXP_ROOT/market1501_test_embeddings.h5" [--rerank]
#
# Set the three paths as for market1501_train.sh; further flags go on to train.py. This recipe
# is market1501_train.sh (the paths, the CSVs, the network, flip and crop) with the flags below
# after its own, which they override (the last value of a flag wins).
EXP_ROOT=${EXP_ROOT:-./experiments/market1501_strong_baseline}
export EXP_ROOT
exec "$(dirname "$0")/market1501_train.sh" \
    --last_stride 1 \
    --head_name bnneck \
    --embedding_dim 2048 \
    --pre_crop_height 276 --pre_crop_width 148 \
    --random_erasing_prob 0.5 \
    --batch_p 16 \
    --margin 0.3 \
    --id_loss_weight 1 \
    --label_smoothing 0.1 \
    --center_loss_weight 0.0005 \
    --center_learning_rate 0.5 \
    --learning_rate 3.5e-4 \
    --warmup_iterations 2020 \
    --lr_schedule step \
    --lr_decay_steps 8080 14140 \
    --lr_decay_factor 0.1 \
    --weight_decay 0.0005 \
    --train_iterations 24240 \
    "$@"
