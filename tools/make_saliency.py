#!/usr/bin/env python
r"""Built-in saliency maps for the background cues: one 8-bit grey PNG per image, round(255·saliency).

The maps are min-max normalised per image, like the DRFI maps DSRG thresholds at 0.06 (see
dsrg/saliency.py for the methods: mbplus, the default, rbd, and the border baseline). Each PNG is
written atomically; a rerun skips the ids whose <id>.png exists. A folder of DRFI (or any other)
saliency PNGs can be used instead of this tool's output: tools/make_cues.py reads either.

    python tools/make_saliency.py --images VOC/JPEGImages --ids VOC/lists/train_aug_id.txt \
        --out runs/voc/saliency --method mbplus
"""
import argparse
import sys
import time
from pathlib import Path

from dsrg.cli import add_hidden_aliases, add_no_progress, run_main, tool_name
from dsrg.fileio import atomic_save_image, read_rgb
from dsrg.lists import read_image_ids
from dsrg.progress import progress
from dsrg.saliency import SALIENCY_METHODS, WORK_MAX_SIDE, compute_saliency, saliency_levels


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True, help="folder of <id><image-ext> photos")
    parser.add_argument("--ids", required=True, help="image list (ids, '<id>.jpg <index>' or Caffe list lines)")
    parser.add_argument("--out", required=True, help="folder for the <id>.png saliency maps")
    parser.add_argument("--method", default=SALIENCY_METHODS[0], choices=SALIENCY_METHODS,
                        help=f"saliency method (default {SALIENCY_METHODS[0]})")
    parser.add_argument("--image-ext", default=".jpg", help="photo file extension (default .jpg)")
    parser.add_argument("--max-side", type=int, default=WORK_MAX_SIDE,
                        help=f"longer side of the working copy (default {WORK_MAX_SIDE})")
    parser.add_argument("--quiet", action="store_true", help="print nothing: no progress and no summary line")
    add_no_progress(parser)
    add_hidden_aliases(parser, {"--image-dir": "--images", "--out-dir": "--out", "--ext": "--image-ext"})
    args = parser.parse_args(argv)
    if args.max_side < 3:
        parser.error("--max-side must be at least 3")
    return args


def main(argv=None):
    args = parse_args(argv)
    out_dir = Path(args.out)
    ids = read_image_ids(args.ids)
    todo = [image_id for image_id in ids if not (out_dir / f"{image_id}.png").is_file()]
    started = time.monotonic()
    bar = progress(todo, desc=f"saliency ({args.method})", unit="img", disable=args.quiet or args.no_progress)
    for image_id in bar:
        image_path = Path(args.images) / f"{image_id}{args.image_ext}"
        rgb = read_rgb(image_path)
        try:
            saliency = compute_saliency(rgb, args.method, max_side=args.max_side)
        except ValueError as error:
            raise ValueError(f"{image_path}: {error}") from error
        atomic_save_image(out_dir / f"{image_id}.png", saliency_levels(saliency), "PNG")
    elapsed = time.monotonic() - started
    if not args.quiet:
        rate = f", {elapsed / len(todo):.3f} s/img" if todo else ""
        print(f"{tool_name()}: {len(todo)} written, {len(ids) - len(todo)} already there, "
              f"{elapsed:.1f} s{rate} -> {out_dir}")
    return {"written": len(todo), "skipped": len(ids) - len(todo), "seconds": elapsed}


if __name__ == "__main__":
    sys.exit(run_main(main))
