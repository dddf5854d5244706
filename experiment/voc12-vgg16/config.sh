# Settings of the published PASCAL VOC 2012 / VGG16 experiment, read by run.sh through
# tools/resolve_settings.py: NAME=value lines only. An environment variable of the same name overrides
# any of them; `python3 tools/resolve_settings.py --describe` lists every setting. Other experiments
# start from these with BASE=voc12-vgg16.
# $PASCAL_DIR must hold JPEGImages/, SegmentationClassAug/, lists/{input_list,train_aug_id,val_id}.txt
# and the localization cue file; INIT_WEIGHTS the ImageNet VGG16 .caffemodel (see README).
DATA_KIND=voc
NUM_CLASSES=21
CUE_SIZE=41
GT_SUBDIR=SegmentationClassAug
IMAGE_SUBDIR=JPEGImages
INPUT_LIST_NAME=lists/input_list.txt
TRAIN_IDS_NAME=lists/train_aug_id.txt
VAL_IDS_NAME=lists/val_id.txt
# The first that exists in $PASCAL_DIR is used unless CUES names a file. DSRG's published cues
# (CAM foreground + DRFI saliency background) first, then SEC's.
CUE_FILE_NAMES="localization_cues-sal.pickle localization_cues-sal.pickle.gz localization_cues.pickle localization_cues.pickle.gz localization_cues-sec.pickle.gz localization_cues-sec.pickle"
CLASSES_NAME=
STAGE1_SCALES=241,321,401
STAGE2_SCALES=0.75,1,1.25
STAGE1_ITERS=
STAGE2_ITERS=
LOG_EVERY=20
INIT_WEIGHTS_REQUIRED=1
# Grown seeds: the first 1464 training images are enough for the figures (empty: all 10582).
SEEDS_LIMIT=1464
SEEDS_BATCH=10
# `bash run.sh probe`: the trunk's linear probes at the published input size.
PROBE_SIZE=321
