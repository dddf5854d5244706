# A CPU smoke run of experiment/custom-vgg16 on your own folder (tests/test_own_dataset.py): every step, two
# iterations each, on 81×81 warps (an 11×11 score grid and cue file), batch 2, ASPP and CAM heads 16
# channels wide (smoke.edits), single-scale inference, from the fillers. It checks that the folder goes
# through the whole run in minutes, not what the net learns (docs/own-dataset.md).
#
#   EXP=custom-vgg16-smoke PASCAL_DIR=/data/mine RUN_DIR=runs/mine-smoke bash run.sh
#
# custom-vgg16's settings (and so voc12-vgg16's), then these; the environment overrides any of them.
BASE=custom-vgg16
EDITS="smoke.edits ../custom-vgg16/dataset.edits"
CUE_SIZE=11
STAGE1_SCALES=81
PSEUDO_SCALES=81
STAGE2_SCALE_MODE=warp
STAGE2_SCALES=81
STAGE2_WARP=81
STAGE1_ITERS=2
STAGE2_ITERS=2
CAM_ITERS=2
LOG_EVERY=1
SEEDS_LIMIT=4
SEEDS_BATCH=2
# ImageNet weights do not fit the 16-channel fc6 / fc7; the smoke run starts from the fillers.
INIT_WEIGHTS_REQUIRED=0
