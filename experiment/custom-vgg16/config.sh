# Your own data set (docs/own-dataset.md): a folder in VOC's layout whose training images have image-level
# labels only, whose val images have ground-truth PNGs, and whose class names are in classes.txt. The
# published VOC12 VGG16 DeepLab-ASPP nets and DSRG layers (experiment/voc12-vgg16) sized to those classes
# by dataset.edits; the localization cues made from the image labels (run.sh step cues).
#
#   EXP=custom-vgg16 PASCAL_DIR=/data/mine INIT_WEIGHTS=/data/vgg16_20M_mc.caffemodel GPU=0 bash run.sh
#
# voc12-vgg16's settings (schedules, inference scales, INIT_WEIGHTS_REQUIRED=1), then these (NAME=value
# lines; the environment overrides any of them). experiment/custom-vgg16-smoke runs the same folder through
# every step in minutes on a CPU.
BASE=voc12-vgg16
# The nets' classifiers (fc8-SEC_*, fc8_CAM) and the cue layers get NUM_CLASSES and the cue grid from run.sh's
# render; an EDITS of your own keeps dataset.edits in its list, last.
EDITS=dataset.edits
# One class name per line, background first; NUM_CLASSES empty: the number of names (dsrg/runconfig.py).
CLASSES_NAME=classes.txt
NUM_CLASSES=
GT_SUBDIR=SegmentationClass
# Empty: 1 when SegmentationClass/ has <id>.png for every training id (seed quality and the pseudo labels'
# mIoU are then measured against it), else 0 (val ground truth only).
TRAIN_GT=
# The project's lists, else VOC's own ImageSets/Segmentation lists: the first present is used.
TRAIN_IDS_NAME="lists/train_id.txt ImageSets/Segmentation/train.txt"
VAL_IDS_NAME="lists/val_id.txt ImageSets/Segmentation/val.txt"
# Cues from the image labels ('<id> <class> ...' lines, tools/make_image_labels.py's format). No input list:
# step cues numbers the training ids itself. IMAGE_LABELS_NAME= derives the labels from the training ground
# truth instead.
CUES=generate
IMAGE_LABELS_NAME=lists/train_image_labels.txt
INPUT_LIST_NAME=
