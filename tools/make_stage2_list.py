#!/usr/bin/env python
"""Write the stage-2 training list: one "image_path label_path" line per image, relative to a root.

Stage 2 retrains the network on the stage-1 pseudo labels; its ImageSegDataLayer reads this list
(`source`) with paths relative to its `root_folder`. Every listed image and label must exist.

Example:
  python tools/make_stage2_list.py --ids VOC/lists/train_aug_id.txt --images VOC/JPEGImages \\
      --labels runs/voc/pseudo_labels --root / --out runs/voc/stage2_train.txt
"""
import argparse
import os
import sys
from pathlib import Path

from dsrg.evaluation import read_image_ids
from dsrg.fileio import atomic_write_text


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", required=True, help="image list (ids, or '<id>.jpg <index>' lines)")
    parser.add_argument("--images", required=True, help="folder of <id><ext> images")
    parser.add_argument("--labels", required=True, help="folder of <id>.png label maps (the pseudo labels)")
    parser.add_argument("--root", required=True, help="folder the listed paths are relative to (root_folder)")
    parser.add_argument("--out", required=True, help="list file to write")
    parser.add_argument("--image-ext", default=".jpg", help="image file extension (default .jpg)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    root = Path(args.root).resolve()
    lines, missing = [], []
    for name in read_image_ids(args.ids):
        image = Path(args.images).resolve() / f"{name}{args.image_ext}"
        label = Path(args.labels).resolve() / f"{name}.png"
        missing += [str(path) for path in (image, label) if not path.is_file()]
        lines.append(f"{os.path.relpath(image, root)} {os.path.relpath(label, root)}")
    if missing:
        raise FileNotFoundError(f"make_stage2_list.py: {len(missing)} listed files do not exist, e.g. {missing[:3]}")
    if any(" " in line.split(" ", 1)[1] or len(line.split()) != 2 for line in lines):
        raise ValueError("make_stage2_list.py: paths with spaces cannot be written to a Caffe list file")
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print(f"make_stage2_list.py: {len(lines)} image/label pairs -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
