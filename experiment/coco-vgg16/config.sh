# MS-COCO 2014 with the published VGG16 DeepLab-ASPP nets and DSRG layer stack: the VOC12 template
# (experiment/voc12-vgg16) rendered with coco.edits for 81 classes.
#
#   EXP=coco-vgg16 PASCAL_DIR=/data/coco INIT_WEIGHTS=/data/vgg16_20M_mc.caffemodel GPU=0 bash run.sh
#
# $PASCAL_DIR is what tools/convert_coco.py writes from instances_train2014.json and
# instances_val2014.json: JPEGImages/, SegmentationClass/ (255 = crowd), classes.txt, lists/; and
# the cue file (official format, 81 classes, indexed by COCO image id), or CUES=/path/to/file.
# voc12-vgg16's settings, then these (NAME=value lines; the environment overrides any of them: the
# smoke test shrinks them).
BASE=voc12-vgg16
EDITS=coco.edits
NUM_CLASSES=81
GT_SUBDIR=SegmentationClass
INPUT_LIST_NAME=lists/train2014_input_list.txt
# CUES=generate: the converter's image labels (every annotated class, crowd regions included; labels
# derived from the PNGs would miss a class present only as crowd, which the PNGs mark 255).
IMAGE_LABELS_NAME=lists/train2014_image_labels.txt
TRAIN_IDS_NAME=lists/train2014_id.txt
VAL_IDS_NAME=lists/val2014_id.txt
CUE_FILE_NAMES="localization_cues-coco.pickle localization_cues-coco.pickle.gz localization_cues-coco.npz"
CLASSES_NAME=classes.txt
# Inference as the release's COCO scripts: test-coco.py (stage-1 model) warps the image to 481×481,
# one scale; test-coco-f.py (final model) runs it at its own size, one scale; both + dense CRF.
# Pseudo labels: the release has no COCO script for them; its VOC warps 241/321/401.
STAGE1_SCALES=481
PSEUDO_SCALES=241,321,401
STAGE2_SCALE_MODE=relative
STAGE2_SCALES=1
# INIT_WEIGHTS: the ImageNet VGG16 (tools/import_weights.py), required; INIT_WEIGHTS_REQUIRED=0 lets a smoke
# run start from the fillers.
# Grown seeds and seed quality on the first 2000 of the 82,783 training images.
SEEDS_LIMIT=2000
