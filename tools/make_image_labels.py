#!/usr/bin/env python
"""Image-level labels of a list of images from their ground truth: the classes present in each map.

On PASCAL VOC the image-level labels of the weakly supervised setting are the classes that occur in
an image's segmentation ground truth (255 = ignore is not a class). Writes one line per image,
'<id> <class> ...' (foreground classes increasing; format in dsrg.imagelabels), atomically; a rerun
whose output is newer than its list is skipped.

Example:
  python tools/make_image_labels.py --gt ../shared/data/voc12/SegmentationClassAug \\
      --ids ../shared/data/voc12/lists/train_aug_photos_id.txt --out runs/voc12-photos/lists/image_labels.txt
"""
import argparse
import sys
from pathlib import Path

from dsrg.cli import add_no_progress, run_main, tool_name
from dsrg.fileio import read_label_png
from dsrg.imagelabels import labels_from_label_map, write_image_labels
from dsrg.lists import read_image_ids
from dsrg.progress import progress
from dsrg.voc import NUM_CLASSES


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gt", required=True, help="ground-truth folder of <id>.png label maps")
    parser.add_argument("--ids", required=True, help="image ids (or '<id>.jpg <index>' lines)")
    parser.add_argument("--out", required=True, help="label file to write")
    parser.add_argument("--num-classes", type=int, default=NUM_CLASSES, help=f"classes (default {NUM_CLASSES})")
    parser.add_argument("--force", action="store_true", help="rewrite even when OUT is newer than --ids")
    add_no_progress(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    if not args.force and out.is_file() and out.stat().st_mtime >= Path(args.ids).stat().st_mtime:
        print(f"{tool_name()}: {out} is newer than {args.ids}, skipping")
        return 0
    labels_by_id = {}
    for image_id in progress(read_image_ids(args.ids), desc="labels", unit="img", disable=args.no_progress):
        path = Path(args.gt) / f"{image_id}.png"
        if not path.is_file():
            raise FileNotFoundError(f"{tool_name()}: ground truth of image {image_id} not found: {path}")
        labels_by_id[image_id] = labels_from_label_map(read_label_png(path), args.num_classes, str(path))
    write_image_labels(out, labels_by_id)
    print(f"{tool_name()}: {len(labels_by_id)} images -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
