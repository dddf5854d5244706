#!/usr/bin/env python
r"""Draw panels image (| cues | grown seeds) | prediction | ground truth for a list of images, in the
method's order: the seeds, what growing makes of them, what the net predicts, the truth.

Every input but the id list is optional; a panel is drawn for each one given. Label maps are
coloured with the VOC palette, a legend row names the classes shown (and, where cues or grown seeds
are drawn, the light grey of background seeds). --pred-title names the prediction column (run.sh:
"pseudo label" for the training images' panels).

    python tools/visualize.py --ids data/demo/lists/val_id.txt --images data/demo/JPEGImages \
        --gt data/demo/SegmentationClass --pred out/pred --classes data/demo/classes.txt \
        --grid out/val_panels.png --limit 8

--out DIR writes one <id>.png per image (existing ones are skipped unless --force); --grid FILE
writes all rows stacked in one PNG. Both are written atomically.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from dsrg.cli import add_hidden_aliases, add_no_progress, run_main, tool_name
from dsrg.cues import load_cues
from dsrg.evaluation import resolve_class_names
from dsrg.fileio import atomic_save_image, read_label_png
from dsrg.lists import read_class_names, read_image_ids, read_indexed_list
from dsrg.progress import progress
from dsrg.seeds import cue_seed_masks, find_seed_file, load_seed_map
from dsrg.visual import (BACKGROUND_GREY, colorize, draw_cues, draw_grown_seeds, legend, make_row, seeds_to_label_map,
                         stack)
from dsrg.voc import IGNORE_LABEL, NUM_CLASSES


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", help="image list (ids, '<id>.jpg <index>' or '/JPEGImages/<id>.jpg ...' lines)")
    parser.add_argument("--id", action="append", default=[], help="an image id (repeatable; with or instead of --ids)")
    parser.add_argument("--images", help="folder of images <id><ext>")
    parser.add_argument("--image-ext", default=".jpg", help="image file suffix (default .jpg)")
    parser.add_argument("--gt", help="folder of ground-truth label PNGs")
    parser.add_argument("--pred", help="folder of predicted label PNGs")
    parser.add_argument("--pred-title", default="prediction",
                        help="title of the --pred column (default 'prediction'; e.g. 'pseudo label')")
    parser.add_argument("--cues", help="official cue file; needs --input-list for the image indices")
    parser.add_argument("--input-list",
                        help="input_list.txt ('<id>.jpg <index>') that indexes the cue file")
    parser.add_argument("--cue-size", type=int, default=41, help="cue grid side (default 41)")
    parser.add_argument("--grown-seeds",
                        help="folder of grown seeds <id>.npy (C×h×w or h×w) or <id>.png")
    parser.add_argument("--classes", help="file with one class name per line, background first")
    parser.add_argument("--num-classes", type=int, default=None,
                        help=f"classes incl. background (default: from --classes, else {NUM_CLASSES})")
    parser.add_argument("--limit", type=int, default=None, help="only the first N ids")
    parser.add_argument("--panel-size", type=int, default=200, help="side of each panel in pixels (default 200)")
    parser.add_argument("--out", help="folder for one PNG per id")
    parser.add_argument("--grid", help="one PNG with all rows stacked")
    parser.add_argument("--force", action="store_true", help="redraw per-id PNGs that already exist")
    add_no_progress(parser)
    add_hidden_aliases(parser, {"--list": "--input-list", "--seed-dir": "--grown-seeds",
                                "--class_num": "--num-classes"})
    args = parser.parse_args(argv)
    if not args.ids and not args.id:
        parser.error("give --ids and/or --id")
    if not args.out and not args.grid:
        parser.error("give --out and/or --grid")
    if args.cues and not args.input_list:
        parser.error("--cues needs --input-list (the input_list that maps image ids to cue indices)")
    if not (args.images or args.gt or args.pred):
        parser.error("give at least one of --images, --gt, --pred")
    return args


def _require(path, kind):
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {kind} is missing")
    return path


def image_panels(image_name, args, num_classes, cue_mapping, cue_index):
    """[(title, RGB array, smooth)] for one image, the set of classes they show and whether a seed
    panel shows background seeds (drawn in the legend's "background seed" colour)."""
    gt = read_label_png(_require(Path(args.gt) / f"{image_name}.png", "ground truth")) if args.gt else None
    pred = read_label_png(_require(Path(args.pred) / f"{image_name}.png", "prediction")) if args.pred else None
    if args.images:
        with Image.open(_require(Path(args.images) / f"{image_name}{args.image_ext}", "image")) as handle:
            image = np.asarray(handle.convert("RGB"))
    else:
        shape = (gt if gt is not None else pred).shape
        image = np.full(shape + (3,), BACKGROUND_GREY, dtype=np.uint8)
    panels, shown, seed_classes = [(image_name, image, True)], set(), set()
    if cue_mapping is not None:
        if cue_index is None:
            panels.append(("cues: none", np.full_like(image, BACKGROUND_GREY), False))
        else:
            seeds = seeds_to_label_map(cue_seed_masks(cue_mapping, cue_index, num_classes, args.cue_size, args.cues))
            panels.append(("cues", draw_cues(image, seeds), False))
            seed_classes |= set(np.unique(seeds).tolist())
    if args.grown_seeds:
        seeds = seeds_to_label_map(load_seed_map(find_seed_file(args.grown_seeds, image_name), num_classes))
        panels.append(("grown seeds", draw_grown_seeds(image, seeds), False))
        seed_classes |= set(np.unique(seeds).tolist())
    for title, label_map in ((args.pred_title, pred), ("ground truth", gt)):
        if label_map is not None:
            if label_map.shape != image.shape[:2]:
                raise ValueError(f"{image_name}: {title} size {label_map.shape[1]}x{label_map.shape[0]} differs "
                                 f"from the image size {image.shape[1]}x{image.shape[0]}")
            panels.append((title, colorize(label_map), False))
            shown |= set(np.unique(label_map).tolist())
    # background seeds have a legend entry of their own; the palette's background swatch is for label maps
    label_classes = shown | (seed_classes - {0})
    return panels, label_classes - {IGNORE_LABEL}, 0 in seed_classes


def main(argv=None):
    args = parse_args(argv)
    class_names = read_class_names(args.classes) if args.classes else None
    num_classes = args.num_classes or (len(class_names) if class_names else NUM_CLASSES)
    class_names = resolve_class_names(class_names, num_classes)
    ids = (read_image_ids(args.ids) if args.ids else []) + list(args.id)
    ids = ids[:args.limit]
    cue_mapping = load_cues(args.cues) if args.cues else None
    cue_indices = dict(read_indexed_list(args.input_list)) if args.cues else {}

    rows, written = [], 0
    for image_name in progress(ids, desc="visualize", unit="img", disable=args.no_progress):
        target = Path(args.out) / f"{image_name}.png" if args.out else None
        if not args.grid and target is not None and target.is_file() and not args.force:
            continue
        panels, shown, background_seeds = image_panels(image_name, args, num_classes, cue_mapping,
                                                       cue_indices.get(image_name))
        row = make_row(panels, args.panel_size)
        if target is not None and (args.force or not target.is_file()):
            classes = sorted(index for index in shown if index < num_classes)
            atomic_save_image(target, stack([row], legend(class_names, row.width, classes, background_seeds)))
            written += 1
        rows.append((row, shown, background_seeds))
    if args.grid and rows:
        shown = sorted(set().union(*(classes for _, classes, _ in rows)) & set(range(num_classes)))
        background_seeds = any(seeds for _, _, seeds in rows)
        width = max(row.width for row, _, _ in rows)
        atomic_save_image(args.grid, stack([row for row, _, _ in rows],
                                           legend(class_names, width, shown, background_seeds)))
    print(f"{tool_name()}: {len(ids)} ids, {written} per-id PNGs written"
          + (f", grid {args.grid}" if args.grid and rows else ""))


if __name__ == "__main__":
    sys.exit(run_main(main, also=(KeyError,)))
