"""PASCAL VOC 2012 constants: class names, the colour palette, the Caffe mean."""
import numpy as np

CLASS_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
NUM_CLASSES = len(CLASS_NAMES)
IGNORE_LABEL = 255
# BGR mean subtracted from images by the networks' data layers (ImageNet VGG16 convention).
MEAN_BGR = (104.008, 116.669, 122.675)
# BGR mean the published CRF / growing layers add back before running the dense CRF.
CRF_MEAN_BGR = (104.0, 117.0, 123.0)


def _voc_palette():
    """The standard VOC palette: the colour of index k is spread from the bits of k."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        value, red, green, blue = index, 0, 0, 0
        for shift in range(7, -1, -1):
            red |= (value & 1) << shift
            green |= ((value >> 1) & 1) << shift
            blue |= ((value >> 2) & 1) << shift
            value >>= 3
        palette[index] = (red, green, blue)
    return palette.reshape(-1).tolist()


PALETTE = _voc_palette()
