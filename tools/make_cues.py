#!/usr/bin/env python
"""Localization cues from image labels: CAM foreground + saliency background, in the official format.

For every image of --input-list ("<id>.jpg <index>"; the index keys the cue file), on the
--cue-size grid:
  - foreground: for each of the image's labels (--labels, dsrg.imagelabels format) the cells where the
    class heatmap (--cams/<id>.npy from tools/extract_cams.py, resampled to the grid, aligned-corners
    bilinear) exceeds --fg-threshold × its maximum (SEC's rule, 0.2; --fg-rule range: min +
    threshold × (max − min), for heatmaps whose maximum is not positive);
  - background: the cells whose saliency (--saliency/<id>.png, area average on the grid) is below
    --bg-threshold (DSRG's rule on DRFI maps, 0.06);
  - one label per cell: background first, then the foreground classes by decreasing area, so the
    smaller region wins a conflict (dsrg.cuegen).

Output: --out, the official dict ("%i_labels", "%i_cues"), .pickle / .pickle.gz / .npz by suffix,
written atomically once every image is done (a missing heatmap or saliency map, an image without a
line in the label file, or a label outside 1..C-1 stops the tool with the file named and nothing
written). OUT.json beside it records the settings and cue statistics; a rerun with the same
settings and inputs is skipped.

Example:
  python tools/make_cues.py --input-list data/lists/input_list.txt --labels data/lists/image_labels.txt \\
      --cams runs/demo/cams --saliency runs/demo/saliency --num-classes 7 --cue-size 21 \\
      --out runs/demo/cues/localization_cues.pickle.gz
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

from dsrg.cam import FOREGROUND_RULES, FOREGROUND_THRESHOLD, foreground_masks, heatmaps_on_grid
from dsrg.cli import add_no_progress, run_main, tool_name
from dsrg.cuegen import cue_entry, cue_label_map
from dsrg.cues import save_cues
from dsrg.fileio import atomic_write_json
from dsrg.imagelabels import read_image_labels
from dsrg.lists import read_indexed_list
from dsrg.progress import progress
from dsrg.saliency import DEFAULT_BACKGROUND_THRESHOLD, background_cells, read_saliency_png, saliency_on_grid
from dsrg.voc import IGNORE_LABEL, NUM_CLASSES


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input-list", required=True, help="'<id>.jpg <index>' lines (the index keys the cue file)")
    parser.add_argument("--labels", required=True, help="image label file ('<id> <class> ...' lines)")
    parser.add_argument("--cams", required=True, help="folder of <id>.npy class heatmaps (tools/extract_cams.py)")
    parser.add_argument("--saliency", required=True, help="folder of <id>.png saliency maps (tools/make_saliency.py)")
    parser.add_argument("--out", required=True, help="cue file to write (.pickle, .pickle.gz or .npz)")
    parser.add_argument("--num-classes", type=int, default=NUM_CLASSES, help=f"classes with background "
                                                                            f"(default {NUM_CLASSES})")
    parser.add_argument("--cue-size", type=int, default=41, help="cue grid side (default 41: a 321 input)")
    parser.add_argument("--fg-threshold", type=float, default=FOREGROUND_THRESHOLD,
                        help=f"foreground: heatmap > this × its maximum (default {FOREGROUND_THRESHOLD}, SEC)")
    parser.add_argument("--fg-rule", choices=FOREGROUND_RULES, default="max",
                        help="max: > threshold × the maximum (SEC, default); range: > min + threshold × "
                             "(max − min), for heatmaps without a positive maximum (dsrg.cam)")
    parser.add_argument("--bg-threshold", type=float, default=DEFAULT_BACKGROUND_THRESHOLD,
                        help=f"background: saliency < this (default {DEFAULT_BACKGROUND_THRESHOLD}, DSRG)")
    parser.add_argument("--limit", type=int, help="only the first LIMIT images of the list")
    parser.add_argument("--force", action="store_true", help="rewrite even when OUT is up to date")
    add_no_progress(parser)
    args = parser.parse_args(argv)
    if args.cue_size < 2 or args.num_classes < 2:
        parser.error("need --cue-size >= 2 and --num-classes >= 2")
    return args


def image_cues(image_id, labels, heatmap_path, saliency_path, args):
    """The h×w cue label map of one image; errors name the file."""
    if not heatmap_path.is_file():
        raise FileNotFoundError(f"{tool_name()}: no heatmaps for image {image_id}: {heatmap_path} does not exist "
                                f"(run tools/extract_cams.py over this list)")
    heatmaps = np.load(heatmap_path, allow_pickle=False)
    if heatmaps.ndim != 3 or heatmaps.shape[0] != args.num_classes - 1:
        raise ValueError(f"{tool_name()}: {heatmap_path}: expected {args.num_classes - 1}×h×w heatmaps (one per "
                         f"foreground class), got shape {heatmaps.shape}")
    heatmaps = heatmaps_on_grid(heatmaps, args.cue_size)
    try:
        masks = foreground_masks(heatmaps, labels, args.fg_threshold, args.fg_rule)
    except ValueError as error:
        raise ValueError(f"{tool_name()}: {heatmap_path}: {error}") from error
    saliency = saliency_on_grid(read_saliency_png(saliency_path), args.cue_size)
    return cue_label_map(background_cells(saliency, args.bg_threshold), masks)


def settings_of(args, entries):
    return {"input_list": str(Path(args.input_list).resolve()), "labels": str(Path(args.labels).resolve()),
            "cams": str(Path(args.cams).resolve()), "saliency": str(Path(args.saliency).resolve()),
            "num_classes": args.num_classes, "cue_size": args.cue_size, "fg_threshold": args.fg_threshold,
            "fg_rule": args.fg_rule, "bg_threshold": args.bg_threshold, "images": len(entries)}


def up_to_date(out, record_path, settings, entries, args):
    """OUT exists, was made with these settings, and is newer than every input it was made from."""
    if args.force or not out.is_file() or not record_path.is_file():
        return False
    if json.loads(record_path.read_text()).get("settings") != settings:
        return False
    newest = max([Path(args.labels).stat().st_mtime, Path(args.input_list).stat().st_mtime]
                 + [path.stat().st_mtime for image_id, _ in entries
                    for path in (Path(args.cams) / f"{image_id}.npy", Path(args.saliency) / f"{image_id}.png")
                    if path.is_file()])
    return out.stat().st_mtime >= newest


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    record_path = out.with_name(out.name + ".json")
    entries = read_indexed_list(args.input_list)[:args.limit]
    labels_by_id = read_image_labels(args.labels, args.num_classes)
    settings = settings_of(args, entries)
    if up_to_date(out, record_path, settings, entries, args):
        print(f"{tool_name()}: {out} is up to date ({record_path}), skipping")
        return 0
    mapping = {}
    counts = np.zeros(args.num_classes, dtype=np.int64)
    for image_id, index in progress(entries, desc="cues", unit="img", disable=args.no_progress):
        if image_id not in labels_by_id:
            raise KeyError(f"{tool_name()}: image {image_id} (line '{image_id}.jpg {index}' of {args.input_list}) "
                           f"has no line in the label file {args.labels}")
        labels = labels_by_id[image_id]
        label_map = image_cues(image_id, labels, Path(args.cams) / f"{image_id}.npy",
                               Path(args.saliency) / f"{image_id}.png", args)
        counts += np.bincount(label_map[label_map != IGNORE_LABEL], minlength=args.num_classes)
        mapping.update(cue_entry(index, labels, label_map))
    save_cues(out, mapping)
    cells = len(entries) * args.cue_size ** 2
    statistics = {"coverage": 100.0 * counts.sum() / cells,
                  "density_per_class": [100.0 * count / cells for count in counts.tolist()]}
    atomic_write_json(record_path, {"settings": settings, "statistics": statistics})
    print(f"{tool_name()}: {len(entries)} images -> {out}: coverage {statistics['coverage']:.1f} %, background "
          f"density {statistics['density_per_class'][0]:.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
