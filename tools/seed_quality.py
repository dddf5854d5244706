#!/usr/bin/env python
r"""Precision, recall and coverage of localization seeds against ground truth, per class and overall.

Seeds come from an official cue file (--cues, "%i_cues" on a --cue-size grid, image index from
--input-list) and/or from a folder of grown seeds (--grown-seeds: <id>.npy C×h×w 0/1 or h×w labels,
or <id>.png label maps, 255 = no seed). The ground truth is sampled onto each seed grid by
aligned-corners nearest sampling; GT 255 cells are skipped. Definitions: see dsrg/seeds.py.

    python tools/seed_quality.py --cues localization_cues-sec.pickle.gz \
        --gt VOC/SegmentationClassAug --input-list lists/input_list.txt --cue-size 41 --out seeds.json
"""
import argparse
import sys
from pathlib import Path


from dsrg.cli import add_hidden_aliases, add_no_progress, run_main
from dsrg.cues import load_cues
from dsrg.fileio import atomic_write_json, atomic_write_text
from dsrg.lists import read_class_names, read_image_ids, read_indexed_list
from dsrg.progress import progress as show_progress
from dsrg.seeds import (SeedQuality, cue_seed_masks, find_seed_file, format_seed_markdown, format_seed_table,
                        load_seed_map, read_ground_truth, sample_labels_on_grid)
from dsrg.voc import CLASS_NAMES, NUM_CLASSES


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cues", help="official cue file (.pickle[.gz] / .npz)")
    parser.add_argument("--grown-seeds",
                        help="folder of grown seeds <id>.npy (C×h×w 0/1, or h×w labels) or <id>.png (labels, "
                             "255 = no seed)")
    parser.add_argument("--gt", required=True, help="folder of ground-truth label PNGs <id>.png")
    parser.add_argument("--input-list", required=True,
                        help="input_list.txt ('<id>.jpg <index>'; the index keys the cue file); with only "
                             "--grown-seeds a plain id list works too")
    parser.add_argument("--cue-size", type=int, default=41, help="cue grid side (default 41)")
    parser.add_argument("--num-classes", type=int, default=None,
                        help=f"classes incl. background (default: from --classes, else {NUM_CLASSES})")
    parser.add_argument("--classes", help="file with one class name per line, background first")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images of the list")
    parser.add_argument("--out", help="JSON summary (atomic)")
    parser.add_argument("--markdown", help="also write the figures as markdown tables (atomic)")
    parser.add_argument("--quiet", action="store_true",
                        help="print only the overall lines, not the per-class table (and no progress)")
    add_no_progress(parser)
    add_hidden_aliases(parser, {"--seed-dir": "--grown-seeds", "--list": "--input-list",
                                "--class_num": "--num-classes"})
    args = parser.parse_args(argv)
    if not args.cues and not args.grown_seeds:
        parser.error("give --cues and/or --grown-seeds")
    return args


def measure_cues(cue_path, gt_dir, pairs, num_classes, cue_size, progress=True):
    """SeedQuality of a cue file over (id, index) pairs."""
    mapping = load_cues(cue_path)
    quality = SeedQuality(num_classes)
    for image_name, index in show_progress(pairs, desc="cue quality", unit="img", disable=not progress):
        gt_path = Path(gt_dir) / f"{image_name}.png"
        seeds = cue_seed_masks(mapping, index, num_classes, cue_size, source=cue_path)
        gt_grid = sample_labels_on_grid(read_ground_truth(gt_path), cue_size, cue_size)
        quality.add(seeds, gt_grid, source=f"{cue_path} index {index} / {gt_path}")
    return quality


def measure_seed_dir(seed_dir, gt_dir, ids, num_classes, progress=True):
    """SeedQuality of a folder of grown-seed maps over `ids`."""
    quality = SeedQuality(num_classes)
    for image_name in show_progress(ids, desc="grown-seed quality", unit="img", disable=not progress):
        seed_path = find_seed_file(seed_dir, image_name)
        seeds = load_seed_map(seed_path, num_classes)
        gt_path = Path(gt_dir) / f"{image_name}.png"
        gt_grid = sample_labels_on_grid(read_ground_truth(gt_path), seeds.shape[1], seeds.shape[2])
        quality.add(seeds, gt_grid, source=seed_path)
    return quality


def main(argv=None):
    args = parse_args(argv)
    class_names = read_class_names(args.classes) if args.classes else None
    num_classes = args.num_classes or (len(class_names) if class_names else NUM_CLASSES)
    if class_names is None and num_classes <= len(CLASS_NAMES):
        class_names = CLASS_NAMES[:num_classes]
    progress = not (args.quiet or args.no_progress)
    summaries = {}
    if args.cues:
        pairs = read_indexed_list(args.input_list)[:args.limit]
        quality = measure_cues(args.cues, args.gt, pairs, num_classes, args.cue_size, progress)
        summaries["cues"] = quality.summary(class_names)
    if args.grown_seeds:
        ids = read_image_ids(args.input_list)[:args.limit]
        quality = measure_seed_dir(args.grown_seeds, args.gt, ids, num_classes, progress)
        summaries["grown_seeds"] = quality.summary(class_names)
    for title, summary in summaries.items():
        table = format_seed_table(summary, title)
        print(table if not args.quiet else "\n".join(table.splitlines()[-2:]))
    if args.out:
        atomic_write_json(args.out, {**summaries, "gt": str(args.gt), "list": str(args.input_list),
                                     "cue_file": args.cues, "seed_dir": args.grown_seeds})
    if args.markdown:
        atomic_write_text(args.markdown, format_seed_markdown(summaries))
    return summaries


if __name__ == "__main__":
    sys.exit(run_main(main, also=(KeyError,)))
