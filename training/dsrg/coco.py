"""MS-COCO instance annotations as the VOC layout the pipeline reads: 81 classes, label maps, image labels.

Numpy only (no Caffe, no pycocotools): the converter ``tools/convert_coco.py`` decodes each
annotation's polygons or RLE into a boolean mask with pycocotools and hands the masks to
:func:`compose_label_map`.

Classes. 81: background (0) and the 80 COCO categories as 1..80 in ascending COCO category id
(:data:`COCO_CATEGORIES`; ids run 1..90 with ten gaps: 12, 26, 29, 30, 45, 66, 68, 69, 71, 83).
The release (speedinghzl/DSRG) fixes only the count: its ``AnnotationLayerCOCO`` and
``test-coco.py`` read label PNGs whose values are already 0..80 and hard-code 81 classes, with no
id table. Ascending id is the order of the ``categories`` list in the official instances JSON
files and the contiguous mapping COCO tools use.

Label maps (:func:`compose_label_map`), H×W uint8:

- 0 where no annotation covers a pixel;
- 255 (ignore) on crowd regions (``iscrowd: 1``: one RLE over a group of objects whose pixels
  are not attributed to single instances), unless a regular instance covers the pixel;
- the class of the regular (``iscrowd: 0``) instance covering the pixel; where regular instances
  overlap, the rule ``smaller-on-top`` (default) paints them from the largest mask to the
  smallest (pixel count of the decoded mask; equal areas: the later annotation on top), so the
  smaller one wins. COCO masks overlap mostly where an object lies in front of or on a larger one
  (a cup on a dining table, a person on a bed, a tie on a person): the larger mask is drawn
  around the smaller object, which otherwise vanishes, while the reverse (a small mask wrongly
  covering part of a big object) costs the big class few pixels. The rule depends on the masks
  alone, not on the JSON's order. ``annotation-order`` (the later annotation on top, as the
  COCO-Stuff API's ``cocoSegmentationToPng`` paints) is kept for comparison.

Image-level labels (:func:`image_labels`): the classes of all the image's annotations, crowd
included (a crowd of people is people in the image), sorted; background is implicit, as in the
official cue files' ``"%i_labels"``.
"""
from collections import Counter
from dataclasses import dataclass

import numpy as np

from dsrg.voc import IGNORE_LABEL

COCO_CATEGORIES = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"), (7, "train"),
    (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"), (13, "stop sign"),
    (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"), (19, "horse"), (20, "sheep"),
    (21, "cow"), (22, "elephant"), (23, "bear"), (24, "zebra"), (25, "giraffe"), (27, "backpack"),
    (28, "umbrella"), (31, "handbag"), (32, "tie"), (33, "suitcase"), (34, "frisbee"), (35, "skis"),
    (36, "snowboard"), (37, "sports ball"), (38, "kite"), (39, "baseball bat"), (40, "baseball glove"),
    (41, "skateboard"), (42, "surfboard"), (43, "tennis racket"), (44, "bottle"), (46, "wine glass"), (47, "cup"),
    (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl"), (52, "banana"), (53, "apple"), (54, "sandwich"),
    (55, "orange"), (56, "broccoli"), (57, "carrot"), (58, "hot dog"), (59, "pizza"), (60, "donut"), (61, "cake"),
    (62, "chair"), (63, "couch"), (64, "potted plant"), (65, "bed"), (67, "dining table"), (70, "toilet"),
    (72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"), (76, "keyboard"), (77, "cell phone"),
    (78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"), (82, "refrigerator"), (84, "book"),
    (85, "clock"), (86, "vase"), (87, "scissors"), (88, "teddy bear"), (89, "hair drier"), (90, "toothbrush"),
)
CLASS_NAMES = ("background",) + tuple(name for _, name in COCO_CATEGORIES)
NUM_CLASSES = len(CLASS_NAMES)
CLASS_OF_CATEGORY = {category_id: index for index, (category_id, _) in enumerate(COCO_CATEGORIES, start=1)}
OVERLAP_RULES = ("smaller-on-top", "annotation-order")


class CocoFormatError(ValueError):
    """An instances JSON that does not describe the 80 COCO categories, or a malformed record."""


@dataclass(frozen=True)
class Instance:
    """One decoded annotation: its class index (1..80), H×W boolean mask, crowd flag and annotation id."""

    class_index: int
    mask: np.ndarray
    iscrowd: bool
    annotation_id: int


def class_names_text():
    """classes.txt: one class name per line, background first (what tools/evaluate.py --classes reads)."""
    return "".join(f"{name}\n" for name in CLASS_NAMES)


def _require(record, keys, kind, source):
    missing = [key for key in keys if key not in record]
    if missing:
        raise CocoFormatError(f"{source}: a{'n' if kind[0] in 'aeiou' else ''} {kind} record lacks "
                              f"{', '.join(repr(key) for key in missing)}: {str(record)[:200]}")


def check_categories(categories, source):
    """Every category of the JSON must be a COCO category with its official name (a subset is fine)."""
    known = dict(COCO_CATEGORIES)
    problems = []
    for category in categories:
        _require(category, ("id", "name"), "category", source)
        category_id, name = category["id"], category["name"]
        if category_id not in known:
            problems.append(f"id {category_id} ({name!r}) is not a COCO category id")
        elif known[category_id] != name:
            problems.append(f"id {category_id} is named {name!r}, COCO's {category_id} is {known[category_id]!r}")
    if problems:
        raise CocoFormatError(f"{source}: categories: {'; '.join(problems)} (expected the 80 COCO categories, "
                              f"ids 1..90 without 12, 26, 29, 30, 45, 66, 68, 69, 71, 83)")


def index_annotations(dataset, source):
    """Check an instances JSON (already parsed) and group its annotations by image.

    Returns (images, annotations_by_image): the image records in the JSON's order, and for each
    image id the list of its annotation records in the JSON's order. Every problem that would make
    a wrong label map is a :class:`CocoFormatError` naming `source`: missing keys, a category id
    that is not one of the 80 (all of them listed, with counts and an example annotation), an
    annotation of an image the JSON does not list, a repeated image id or file name.
    """
    if not isinstance(dataset, dict):
        raise CocoFormatError(f"{source}: expected a JSON object with 'images', 'annotations' and 'categories'")
    _require(dataset, ("images", "annotations", "categories"), "instances file", source)
    check_categories(dataset["categories"], source)
    images, seen_ids, seen_names = [], set(), set()
    for image in dataset["images"]:
        _require(image, ("id", "file_name", "height", "width"), "image", source)
        if image["id"] in seen_ids:
            raise CocoFormatError(f"{source}: image id {image['id']} is listed twice")
        if image["file_name"] in seen_names:
            raise CocoFormatError(f"{source}: image file {image['file_name']} is listed twice")
        seen_ids.add(image["id"])
        seen_names.add(image["file_name"])
        images.append(image)
    by_image = {image["id"]: [] for image in images}
    unknown, example = Counter(), {}
    for annotation in dataset["annotations"]:
        _require(annotation, ("id", "image_id", "category_id", "segmentation"), "annotation", source)
        category_id = annotation["category_id"]
        if category_id not in CLASS_OF_CATEGORY:
            unknown[category_id] += 1
            example.setdefault(category_id, annotation)
            continue
        if annotation["image_id"] not in by_image:
            raise CocoFormatError(f"{source}: annotation {annotation['id']} belongs to image id "
                                  f"{annotation['image_id']}, which the file's 'images' do not list")
        by_image[annotation["image_id"]].append(annotation)
    if unknown:
        listed = ", ".join(f"{category_id} ({count} annotation{'s' if count > 1 else ''}, e.g. annotation "
                           f"{example[category_id]['id']} of image {example[category_id]['image_id']})"
                           for category_id, count in sorted(unknown.items(), key=lambda item: str(item[0])))
        raise CocoFormatError(f"{source}: unknown category id{'s' if len(unknown) > 1 else ''} {listed}; "
                              f"the 80 COCO categories have ids 1..90 without 12, 26, 29, 30, 45, 66, 68, 69, 71, 83")
    return images, by_image


def image_labels(annotations):
    """Sorted class indices (1..80) of an image's annotation records, crowd included."""
    return sorted({CLASS_OF_CATEGORY[annotation["category_id"]] for annotation in annotations})


def paint_order(instances, rule="smaller-on-top"):
    """Indices of the regular instances in painting order (the last painted is on top)."""
    if rule not in OVERLAP_RULES:
        raise ValueError(f"unknown overlap rule {rule!r}; expected one of {OVERLAP_RULES}")
    regular = [index for index, instance in enumerate(instances) if not instance.iscrowd]
    if rule == "annotation-order":
        return regular
    return sorted(regular, key=lambda index: (-int(instances[index].mask.sum()), index))


def compose_label_map(height, width, instances, rule="smaller-on-top", ignore_label=IGNORE_LABEL):
    """An H×W uint8 label map of an image's decoded instances (module doc: crowd → ignore, overlaps by `rule`)."""
    label = np.zeros((height, width), dtype=np.uint8)
    for instance in instances:
        if instance.mask.shape != (height, width):
            raise CocoFormatError(f"annotation {instance.annotation_id}: mask of shape {instance.mask.shape} "
                                  f"for an image of {height}×{width} (H×W)")
        if not 1 <= instance.class_index < NUM_CLASSES:
            raise CocoFormatError(f"annotation {instance.annotation_id}: class index {instance.class_index} "
                                  f"outside 1..{NUM_CLASSES - 1}")
    for instance in instances:
        if instance.iscrowd:
            label[instance.mask.astype(bool)] = ignore_label
    for index in paint_order(instances, rule):
        label[instances[index].mask.astype(bool)] = instances[index].class_index
    return label
