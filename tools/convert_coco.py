#!/usr/bin/env python
"""Convert MS-COCO instance annotations (the official instances JSON) to the VOC layout the pipeline reads.

One call converts one split (the JSON's images); run it once for train2014 and once for val2014
into the same --out folder:

    python tools/convert_coco.py --annotations COCO/annotations/instances_train2014.json \\
        --images COCO/train2014 --out data/coco
    python tools/convert_coco.py --annotations COCO/annotations/instances_val2014.json \\
        --images COCO/val2014 --out data/coco

Output in --out (SPLIT: --split, by default the JSON's name without "instances_", e.g. train2014):

    JPEGImages/<name>.jpg             links to the images in --images (--copy: copies)
    SegmentationClass/<name>.png      label maps: 0 background, 1..80 the COCO categories, 255 crowd
    classes.txt                       the 81 class names, background first
    lists/SPLIT_id.txt                the image ids (<name>: the file name without .jpg)
    lists/SPLIT_input_list.txt        "<name>.jpg <COCO image id>": the id keys the cue file ("%i_labels")
    lists/SPLIT_image_labels.txt      "<name> <class> <class> ...": image-level classes 1..80, crowd
                                      included (format: dsrg.imagelabels; none: no annotations)
    lists/SPLIT_conversion.json       settings and counts of the conversion

Classes, crowd and overlap rules: training/dsrg/coco.py. Masks are decoded with pycocotools
(polygons, uncompressed and compressed RLE); a polygon of fewer than three points has no area and
is skipped. Before anything is written the whole JSON is checked: a category id that is not one
of the 80, a malformed record, an image file missing from --images or of another size than
the JSON gives (its header is read) stops the tool with an error naming them. Every file is
written atomically; a rerun skips images whose label map and image link exist, and refuses an
--out that the same split was converted into from another JSON, image folder or --overlap rule.
--limit converts only the first N images (small subsets).
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as coco_mask

from dsrg.cli import add_hidden_aliases, add_no_progress, run_main, tool_name
from dsrg.coco import (CLASS_OF_CATEGORY, OVERLAP_RULES, CocoFormatError, Instance, class_names_text,
                       compose_label_map, image_labels, index_annotations)
from dsrg.fileio import atomic_save_label_png, atomic_write_json, atomic_write_text, current_umask
from dsrg.imagelabels import write_image_labels
from dsrg.progress import progress

IMAGE_SUBDIR, LABEL_SUBDIR = "JPEGImages", "SegmentationClass"
MISSING_SHOWN = 10


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotations", required=True, help="COCO instances JSON (instances_train2014.json ...)")
    parser.add_argument("--images", required=True, help="folder of the JSON's image files (train2014/ ...)")
    parser.add_argument("--out", required=True, help="output data set root (PASCAL_DIR for run.sh)")
    parser.add_argument("--split", help="name of the lists (default: the JSON's name without 'instances_')")
    parser.add_argument("--overlap", choices=OVERLAP_RULES, default="smaller-on-top",
                        help="which of two overlapping instances labels a pixel (default smaller-on-top)")
    parser.add_argument("--copy", action="store_true", help="copy the images into JPEGImages/ instead of linking")
    parser.add_argument("--limit", type=int, help="only the first N images of the JSON")
    add_no_progress(parser)
    add_hidden_aliases(parser, {"--image-dir": "--images"})
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be positive, got {args.limit}")
    if args.split is None:
        args.split = Path(args.annotations).stem.removeprefix("instances_")
    if not args.split or any(char in args.split for char in "/\\ \t"):
        parser.error(f"--split must be a plain name, got {args.split!r}")
    return args


def image_name(image, source):
    """The id of an image record in the lists: its file name without '.jpg' (what the pipeline appends)."""
    file_name = image["file_name"]
    if Path(file_name).name != file_name or not file_name.endswith(".jpg"):
        raise CocoFormatError(f"{source}: image {image['id']}: file name {file_name!r} is not a plain '<name>.jpg'")
    return file_name[:-len(".jpg")]


def decode_mask(annotation, height, width, source):
    """The H×W boolean mask of an annotation's polygons or RLE (pycocotools), checked against the image size."""
    segmentation = annotation["segmentation"]
    where = f"{source}: annotation {annotation['id']} (image {annotation['image_id']})"
    if isinstance(segmentation, list):
        polygons = [polygon for polygon in segmentation if len(polygon) >= 6]
        if any(len(polygon) % 2 for polygon in polygons):
            raise CocoFormatError(f"{where}: a polygon with an odd number of coordinates")
        if not polygons:
            return np.zeros((height, width), dtype=bool)
        rle = coco_mask.merge(coco_mask.frPyObjects(polygons, height, width))
    elif isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        if list(segmentation["size"]) != [height, width]:
            raise CocoFormatError(f"{where}: RLE of size {segmentation['size']} (H, W) for an image of "
                                  f"{[height, width]}")
        rle = coco_mask.frPyObjects(segmentation, height, width) if isinstance(segmentation["counts"], list) \
            else segmentation
    else:
        raise CocoFormatError(f"{where}: segmentation is neither a list of polygons nor an RLE "
                              f"({str(segmentation)[:80]})")
    return coco_mask.decode(rle).astype(bool)


def label_map(image, annotations, rule, source):
    height, width = int(image["height"]), int(image["width"])
    instances = [Instance(CLASS_OF_CATEGORY[annotation["category_id"]], decode_mask(annotation, height, width, source),
                          bool(annotation.get("iscrowd", 0)), annotation["id"]) for annotation in annotations]
    return compose_label_map(height, width, instances, rule)


def atomic_link_or_copy(source, target, copy):
    """`target` becomes a symbolic link to (or a copy of) `source`, through a temporary name and a rename."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if copy:
            shutil.copyfile(source, tmp)
            os.chmod(tmp, 0o666 & ~current_umask())
        else:
            os.unlink(tmp)
            os.symlink(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


def shown(items):
    return ", ".join(items[:MISSING_SHOWN]) + (f" and {len(items) - MISSING_SHOWN} more"
                                               if len(items) > MISSING_SHOWN else "")


def check_image_files(images, image_dir, source, quiet):
    """Every image file is in `image_dir` with the JSON's size (header read); else an error naming them."""
    missing, wrong_size = [], []
    for image in progress(images, desc="convert_coco: check images", unit="img", disable=quiet):
        path = image_dir / image["file_name"]
        if not path.is_file():
            missing.append(image["file_name"])
            continue
        with Image.open(path) as opened:
            if opened.size != (int(image["width"]), int(image["height"])):
                wrong_size.append(f"{image['file_name']} ({opened.size[0]}×{opened.size[1]}, the JSON says "
                                  f"{image['width']}×{image['height']})")
    if missing:
        raise FileNotFoundError(f"{source}: {len(missing)} of its {len(images)} images are missing from "
                                f"{image_dir}: {shown(missing)}")
    if wrong_size:
        raise CocoFormatError(f"{source}: {len(wrong_size)} images in {image_dir} differ in size (W×H) from the "
                              f"JSON: {shown(wrong_size)}")


def settings_record(args):
    annotations = Path(args.annotations).resolve()
    stat = annotations.stat()
    return {"annotations": str(annotations), "annotations_bytes": stat.st_size,
            "annotations_mtime_ns": stat.st_mtime_ns, "image_dir": str(Path(args.images).resolve()),
            "overlap": args.overlap}


def check_previous(record_path, settings):
    if not record_path.is_file():
        return
    previous = json.loads(record_path.read_text()).get("settings")
    if previous != settings:
        changed = sorted(key for key in settings if (previous or {}).get(key) != settings[key])
        raise CocoFormatError(f"{record_path}: this split was converted into {record_path.parent.parent} with other "
                              f"settings ({', '.join(changed)} differ); use another --out or remove it")


def main(argv=None):
    args = parse_args(argv)
    source = args.annotations
    image_dir, out = Path(args.images), Path(args.out)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"--images {image_dir} is not a folder")
    with open(source, encoding="utf-8") as handle:
        dataset = json.load(handle)
    images, by_image = index_annotations(dataset, source)
    images = images[:args.limit] if args.limit else images
    names = [image_name(image, source) for image in images]
    check_image_files(images, image_dir, source, args.no_progress)
    settings = settings_record(args)
    record_path = out / "lists" / f"{args.split}_conversion.json"
    check_previous(record_path, settings)
    for folder in (IMAGE_SUBDIR, LABEL_SUBDIR, "lists"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    atomic_write_json(record_path, {"settings": settings, "complete": False})
    atomic_write_text(out / "classes.txt", class_names_text())

    counts = {"images": len(images), "converted": 0, "skipped": 0, "annotations": 0, "crowd_annotations": 0,
              "images_without_annotations": 0}
    labels_by_name = {}
    for image, name in progress(list(zip(images, names)), desc=f"convert_coco {args.split}", unit="img",
                                disable=args.no_progress):
        annotations = by_image[image["id"]]
        counts["annotations"] += len(annotations)
        counts["crowd_annotations"] += sum(bool(annotation.get("iscrowd", 0)) for annotation in annotations)
        counts["images_without_annotations"] += not annotations
        labels_by_name[name] = image_labels(annotations)
        label_path, link_path = out / LABEL_SUBDIR / f"{name}.png", out / IMAGE_SUBDIR / image["file_name"]
        if label_path.is_file() and os.path.lexists(link_path):
            counts["skipped"] += 1
            continue
        image_path = (image_dir / image["file_name"]).resolve()
        atomic_save_label_png(label_path, label_map(image, annotations, args.overlap, source))
        atomic_link_or_copy(image_path, link_path, args.copy)
        counts["converted"] += 1

    lists = out / "lists"
    atomic_write_text(lists / f"{args.split}_id.txt", "".join(f"{name}\n" for name in names))
    atomic_write_text(lists / f"{args.split}_input_list.txt",
                      "".join(f"{image['file_name']} {image['id']}\n" for image in images))
    write_image_labels(lists / f"{args.split}_image_labels.txt", labels_by_name)
    atomic_write_json(record_path, {"settings": settings, "complete": True, "counts": counts})
    print(f"{tool_name()}: {args.split}: {counts['images']} images ({counts['converted']} converted, "
          f"{counts['skipped']} done before), {counts['annotations']} annotations ({counts['crowd_annotations']} "
          f"crowd), {counts['images_without_annotations']} images without annotations; {out}")
    return counts


if __name__ == "__main__":
    sys.exit(run_main(main))
