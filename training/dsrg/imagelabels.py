"""Image-level label files: what a weakly supervised run knows about each training image.

Format (``lists/image_labels.txt``): one line per image, the image id followed by its foreground
classes (1..C-1, background 0 implicit) separated by single spaces, in increasing order::

    2007_000032 1 15
    2007_000039 20

An image whose line has only its id has no foreground class. On VOC the labels are the classes
present in the image's ground truth (255 = ignore is not a class), which is what "image-level
labels" means there; the demo generator writes the classes it drew.
"""
from pathlib import Path

import numpy as np

from dsrg.fileio import atomic_write_text
from dsrg.voc import IGNORE_LABEL


def labels_from_label_map(label_map, num_classes, source="label map"):
    """The foreground classes (int64, increasing) present in an H×W ground-truth map."""
    values = np.unique(np.asarray(label_map))
    values = values[values != IGNORE_LABEL]
    if values.size and values.max() >= num_classes:
        raise ValueError(f"{source}: class {int(values.max())} outside 0..{num_classes - 1} (or {IGNORE_LABEL})")
    return values[values != 0].astype(np.int64)


def format_image_labels(labels_by_id):
    """The text of a label file for {id: classes}, in the given order of ids."""
    lines = []
    for image_id, labels in labels_by_id.items():
        classes = sorted(set(int(label) for label in np.asarray(labels).reshape(-1)))
        lines.append(" ".join([image_id] + [str(label) for label in classes]) + "\n")
    return "".join(lines)


def write_image_labels(path, labels_by_id):
    """Write {id: classes} atomically in the format of the module docstring."""
    atomic_write_text(path, format_image_labels(labels_by_id))


def read_image_labels(path, num_classes):
    """{id: int64 foreground classes} from a label file; a malformed line, a class outside 1..C-1 or an
    id listed twice is a ValueError naming the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image label file not found: {path}")
    labels_by_id = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        image_id, values = fields[0], fields[1:]
        try:
            classes = [int(value) for value in values]
        except ValueError:
            raise ValueError(f"{path}:{number}: expected '<id> <class> ...' with integer classes, "
                             f"got {line.strip()!r}") from None
        bad = [label for label in classes if not 1 <= label <= num_classes - 1]
        if bad:
            raise ValueError(f"{path}:{number}: image {image_id}: labels {bad} outside 1..{num_classes - 1} "
                             f"(foreground classes; background 0 is implicit)")
        if image_id in labels_by_id:
            raise ValueError(f"{path}:{number}: image {image_id} is listed twice")
        labels_by_id[image_id] = np.array(sorted(set(classes)), dtype=np.int64)
    return labels_by_id
