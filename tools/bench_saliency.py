#!/usr/bin/env python
r"""Background quality of the built-in saliency methods against ground truth, on the cue grid.

For every photo and method: the saliency map (dsrg.saliency.compute_saliency, min-max normalised
per image, quantised to 8 bits as tools/make_saliency.py stores it), its area average on the grid×grid cue grid, and the background cells (saliency below
each --thresholds value). The ground truth is sampled onto the grid at the aligned-corners cell
centres (dsrg.seeds.sample_labels_on_grid); cells whose ground truth is 255 are skipped. Figures
(percent, dsrg.seeds.SeedQuality's background row, all photos pooled):

  - precision: background cells that are GT background / background cells;
  - coverage:  background cells / valid cells (the cue density of the background);
  - recall:    GT-background cells called background / GT-background cells.

"lowest N %" rows call background the N % least salient cells of each image (--lowest; 10 % is
SEC's rule), which compares methods at the same coverage. Times: wall clock and process CPU time
of compute_saliency per photo (the CPU time is the one-core cost when other jobs share the machine). --sec-cues adds the background row of an official cue file
(SEC's, for example) on the same photos; --input-list maps ids to its indices.

    python tools/bench_saliency.py --images $VOC/JPEGImages --gt $VOC/SegmentationClassAug \
        --ids $VOC/lists/train_aug_photos_id.txt --limit 300 \
        --sec-cues $VOC/localization_cues-sec.pickle.gz --input-list $VOC/lists/input_list.txt \
        --out saliency_bench.json --markdown saliency_bench.md
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from dsrg.cli import add_hidden_aliases, add_no_progress, run_main
from dsrg.cues import load_cues
from dsrg.fileio import atomic_write_json, atomic_write_text, read_rgb
from dsrg.lists import read_image_ids, read_indexed_list
from dsrg.progress import progress
from dsrg.saliency import (DEFAULT_BACKGROUND_THRESHOLD, SALIENCY_METHODS, WORK_MAX_SIDE, background_cells,
                           compute_saliency, saliency_levels, saliency_on_grid)
from dsrg.segdata import read_label_map
from dsrg.seeds import SeedQuality, cue_seed_masks, sample_labels_on_grid
from dsrg.voc import NUM_CLASSES

def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True, help="folder of <id><image-ext> photos")
    parser.add_argument("--gt", required=True, help="folder of ground-truth label PNGs <id>.png (255 = ignore)")
    parser.add_argument("--ids", required=True, help="image list (ids or '<id>.jpg <index>' lines)")
    parser.add_argument("--limit", type=int, help="only the first N ids")
    parser.add_argument("--methods", default=",".join(SALIENCY_METHODS),
                        help=f"comma-separated methods (default {','.join(SALIENCY_METHODS)})")
    parser.add_argument("--thresholds", default=str(DEFAULT_BACKGROUND_THRESHOLD),
                        help=f"comma-separated background thresholds (default {DEFAULT_BACKGROUND_THRESHOLD})")
    parser.add_argument("--lowest", default="0.1",
                        help="comma-separated shares of least salient cells per image (default 0.1, SEC's rule)")
    parser.add_argument("--cue-size", type=int, default=41, help="cue grid side (default 41)")
    parser.add_argument("--max-side", type=int, default=WORK_MAX_SIDE, help="working size (default %(default)s)")
    parser.add_argument("--image-ext", default=".jpg", help="photo file extension (default .jpg)")
    parser.add_argument("--num-classes", type=int, default=NUM_CLASSES, help="classes incl. background")
    parser.add_argument("--sec-cues", help="official cue file to compare with (its background row)")
    parser.add_argument("--input-list", help="'<id>.jpg <index>' list keying --sec-cues (required with it)")
    parser.add_argument("--out", help="JSON summary (atomic)")
    parser.add_argument("--markdown", help="markdown table (atomic)")
    add_no_progress(parser)
    add_hidden_aliases(parser, {"--image-dir": "--images", "--ext": "--image-ext", "--grid": "--cue-size",
                                "--quiet": "--no-progress"})
    args = parser.parse_args(argv)
    args.methods = [name.strip() for name in args.methods.split(",") if name.strip()]
    unknown = [name for name in args.methods if name not in SALIENCY_METHODS]
    if unknown or not args.methods:
        parser.error(f"--methods: unknown {unknown}; choose from {', '.join(SALIENCY_METHODS)}")
    for option in ("thresholds", "lowest"):
        try:
            setattr(args, option, [float(value) for value in getattr(args, option).split(",") if value.strip()])
        except ValueError:
            parser.error(f"--{option}: expected comma-separated numbers, got {getattr(args, option)!r}")
    if any(not 0 < share <= 1 for share in args.lowest):
        parser.error(f"--lowest: shares must lie in (0, 1], got {args.lowest}")
    if args.sec_cues and not args.input_list:
        parser.error("--sec-cues needs --input-list")
    return args


def lowest_cells(saliency_grid, share):
    """The round(share·cells) least salient cells of one grid (ties broken by position)."""
    flat = np.asarray(saliency_grid).ravel()
    chosen = np.zeros(flat.size, dtype=bool)
    chosen[np.argsort(flat, kind="stable")[:round(share * flat.size)]] = True
    return chosen.reshape(np.shape(saliency_grid))


def background_seeds(cells, num_classes):
    """A C×h×w seed map carrying only the background class on `cells`."""
    seeds = np.zeros((num_classes,) + cells.shape, dtype=bool)
    seeds[0] = cells
    return seeds


def background_row(quality):
    row = quality.summary()["per_class"][0]
    return {"images": quality.images, "precision": row["precision"], "coverage": row["density"],
            "recall": row["recall"]}


def measure(args, ids):
    rules = ([(f"< {threshold:g}", ("threshold", threshold)) for threshold in args.thresholds]
             + [(f"lowest {100 * share:g} %", ("lowest", share)) for share in args.lowest])
    qualities = {(method, rule): SeedQuality(args.num_classes) for method in args.methods for rule, _ in rules}
    seconds = {method: [] for method in args.methods}
    cpu_seconds = {method: [] for method in args.methods}
    for image_id in progress(ids, desc="saliency bench", unit="img", disable=args.no_progress):
        rgb = read_rgb(Path(args.images) / f"{image_id}{args.image_ext}")
        gt_grid = sample_labels_on_grid(read_label_map(Path(args.gt) / f"{image_id}.png"), args.cue_size, args.cue_size)
        for method in args.methods:
            started, cpu_started = time.perf_counter(), time.process_time()
            saliency = compute_saliency(rgb, method, max_side=args.max_side)
            seconds[method].append(time.perf_counter() - started)
            cpu_seconds[method].append(time.process_time() - cpu_started)
            grid = saliency_on_grid(saliency_levels(saliency) / 255.0, args.cue_size)  # as stored by make_saliency
            for rule, (kind, value) in rules:
                cells = lowest_cells(grid, value) if kind == "lowest" else background_cells(grid, value)
                qualities[method, rule].add(background_seeds(cells, args.num_classes), gt_grid, source=image_id)
    rows = []
    for method in args.methods:
        for rule, _ in rules:
            rows.append({"method": method, "rule": rule, **background_row(qualities[method, rule]),
                         "seconds_median": statistics.median(seconds[method]),
                         "seconds_mean": statistics.fmean(seconds[method]),
                         "cpu_seconds_median": statistics.median(cpu_seconds[method])})
    return rows


def measure_cue_file(args, ids):
    index_of = dict(read_indexed_list(args.input_list))
    missing = [image_id for image_id in ids if image_id not in index_of]
    if missing:
        raise ValueError(f"{args.input_list}: no cue index for {len(missing)} ids, e.g. {missing[0]}")
    mapping = load_cues(args.sec_cues)
    quality = SeedQuality(args.num_classes)
    for image_id in ids:
        seeds = cue_seed_masks(mapping, index_of[image_id], args.num_classes, args.cue_size, source=args.sec_cues)
        gt_grid = sample_labels_on_grid(read_label_map(Path(args.gt) / f"{image_id}.png"), args.cue_size, args.cue_size)
        quality.add(seeds, gt_grid, source=f"{args.sec_cues} / {image_id}")
    return {"method": "cue file", "rule": Path(args.sec_cues).name, **background_row(quality)}


def format_markdown(rows, grid):
    lines = [f"| saliency | background rule ({grid}×{grid} grid) | images | bg precision | bg coverage | "
             "bg recall | s / photo wall (median) | CPU s / photo (median) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        time_cell = (f"{row['seconds_median']:.3f} | {row['cpu_seconds_median']:.3f}" if "seconds_median" in row
                     else " | ")
        lines.append(f"| {row['method']} | {row['rule']} | {row['images']} | {row['precision']:.1f} | "
                     f"{row['coverage']:.1f} | {row['recall']:.1f} | {time_cell} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    ids = read_image_ids(args.ids)[:args.limit]
    rows = measure(args, ids)
    if args.sec_cues:
        rows.append(measure_cue_file(args, ids))
    table = format_markdown(rows, args.cue_size)
    print(table, end="")
    if args.out:
        atomic_write_json(args.out, {"rows": rows, "ids": str(args.ids), "images": len(ids), "grid": args.cue_size,
                                     "max_side": args.max_side, "gt": str(args.gt)})
    if args.markdown:
        atomic_write_text(args.markdown, table)
    return rows


if __name__ == "__main__":
    sys.exit(run_main(main, also=(KeyError,)))
