#!/usr/bin/env python
"""Write the stage-2 training list: one "image_path label_path" line per image, relative to a root.

Stage 2 retrains the network on the stage-1 pseudo labels; its ImageSegDataLayer reads this list
(`source`) with paths relative to its `root_folder`. Every listed image and label must exist.

With --warp SIZE the pairs are first warped to SIZE×SIZE (image bilinear, label nearest) into
--warp-dir, and the list names those copies: a CPU-sized experiment whose stage 1 sees square
warps (e.g. 161×161) retrains stage 2 at the same object scale. Copies already made are kept.

Example:
  python tools/make_stage2_list.py --ids VOC/lists/train_aug_id.txt --images VOC/JPEGImages \\
      --labels runs/voc/pseudo_labels --root / --out runs/voc/stage2_train.txt
"""
import argparse
import os
import sys
from pathlib import Path

from PIL import Image

from dsrg.cli import add_no_progress, run_main, tool_name
from dsrg.fileio import atomic_save_image, atomic_save_label_png, atomic_write_text, read_label_png
from dsrg.lists import read_image_ids
from dsrg.progress import progress
from dsrg.seeds import sample_labels_on_grid


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", required=True, help="image list (ids, or '<id>.jpg <index>' lines)")
    parser.add_argument("--images", required=True, help="folder of <id><ext> images")
    parser.add_argument("--labels", required=True, help="folder of <id>.png label maps (the pseudo labels)")
    parser.add_argument("--root", required=True, help="folder the listed paths are relative to (root_folder)")
    parser.add_argument("--out", required=True, help="list file to write")
    parser.add_argument("--image-ext", default=".jpg", help="image file extension (default .jpg)")
    parser.add_argument("--warp", type=int, metavar="SIZE", help="warp every pair to SIZE×SIZE first")
    parser.add_argument("--warp-dir", help="folder for the warped pairs (images/, labels/); required with --warp")
    add_no_progress(parser)
    args = parser.parse_args(argv)
    if args.warp is not None and (args.warp < 1 or not args.warp_dir):
        parser.error("--warp needs a positive SIZE and --warp-dir")
    return args


def warp_pair(image_path, label_path, size, warp_dir):
    """SIZE×SIZE copies of an image (bilinear, lossless PNG) and its label map (nearest); returns their paths."""
    name = image_path.stem
    image_out = warp_dir / "images" / f"{name}.png"
    label_out = warp_dir / "labels" / f"{name}.png"
    if not image_out.is_file():
        with Image.open(image_path) as image:
            atomic_save_image(image_out, image.convert("RGB").resize((size, size), Image.BILINEAR))
    if not label_out.is_file():
        atomic_save_label_png(label_out, sample_labels_on_grid(read_label_png(label_path), size, size))
    return image_out, label_out


def main(argv=None):
    args = parse_args(argv)
    root = Path(args.root).resolve()
    pairs, lines, missing = [], [], []
    for name in read_image_ids(args.ids):
        image = Path(args.images).resolve() / f"{name}{args.image_ext}"
        label = Path(args.labels).resolve() / f"{name}.png"
        missing += [str(path) for path in (image, label) if not path.is_file()]
        pairs.append((image, label))
    if missing:
        raise FileNotFoundError(f"{tool_name()}: {len(missing)} listed files do not exist, e.g. {missing[:3]}")
    if args.warp is not None:
        warp_dir = Path(args.warp_dir).resolve()
        pairs = [warp_pair(image, label, args.warp, warp_dir)
                 for image, label in progress(pairs, desc="warp", unit="img", disable=args.no_progress)]
    for image, label in pairs:
        lines.append(f"{os.path.relpath(image, root)} {os.path.relpath(label, root)}")
    if any(" " in line.split(" ", 1)[1] or len(line.split()) != 2 for line in lines):
        raise ValueError(f"{tool_name()}: paths with spaces cannot be written to a Caffe list file")
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print(f"{tool_name()}: {len(lines)} image/label pairs -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
