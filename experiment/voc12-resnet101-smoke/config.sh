# A CPU smoke run of experiment/voc12-resnet101 (its nets and DSRG layers, rendered with smoke.edits) on a
# few of the shared photos at 161×161 (21×21 score grid; cues: every second cell of the 41×41 file),
# batch 2, single-scale inference. It checks that every step runs, not what the net learns: with no
# ImageNet ResNet-101 on these machines, the weights are whatever INIT_WEIGHTS / INIT_WEIGHTS_SOURCE give
# (docs/experiments.md, "ResNet-101": the smoke run used a random MSRA-layout file through deeplab-resnet101).
#
#   EXP=voc12-resnet101-smoke PASCAL_DIR=... INIT_WEIGHTS_SOURCE=deeplab-resnet101 INIT_WEIGHTS_INPUT=... \
#     RUN_DIR=runs/resnet-smoke bash run.sh
#
# voc12-resnet101's settings (and so voc12-vgg16's), then these; the environment overrides any of them.
BASE=voc12-resnet101
EDITS=smoke.edits
CUE_SIZE=21
CUE_FILE_SIZE=41
TRAIN_IDS_NAME=lists/train_aug_photos_id.txt
VAL_IDS_NAME=lists/val_photos_id.txt
STAGE1_SCALES=161
PSEUDO_SCALES=161
STAGE2_SCALE_MODE=warp
STAGE2_SCALES=161
STAGE2_WARP=161
STAGE1_ITERS=2
STAGE2_ITERS=2
LOG_EVERY=1
SEEDS_LIMIT=4
SEEDS_BATCH=2
