#!/usr/bin/env python
"""Write the synthetic VOC-format demo data set (see dsrg/synthetic.py for what it contains).

    python tools/make_demo_data.py --out data/demo --seed 0 --train 200 --val 50 --size 160

Output under --out:
  JPEGImages/<id>.jpg, SegmentationClass/<id>.png (palette PNG, 255 = boundary band / ignore),
  lists/input_list.txt ("<id>.jpg <index>" for the train images; index = cue index),
  lists/train_id.txt, lists/val_id.txt, classes.txt (background first),
  lists/image_labels.txt (the train images' image-level labels, '<id> <class> ...', dsrg.imagelabels),
  localization_cues.pickle.gz (the generator's cues, official SEC/DSRG format, cue grid --cue-size;
  not written with --no-cues, for runs that make their cues from the image labels),
  dataset.json (class names, sizes, counts, seed, and the cues' quality against the ground truth).
dataset.json is written last: when it exists with the same arguments the run is skipped; with other
arguments it is an error (use another --out). The same arguments give byte-identical files.
"""
import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from dsrg.cli import add_no_progress, run_main, tool_name
from dsrg.cues import save_cues
from dsrg.fileio import atomic_save_label_png, atomic_write_bytes, atomic_write_json, atomic_write_text
from dsrg.imagelabels import write_image_labels
from dsrg.progress import progress as show_progress
from dsrg.seeds import SeedQuality, format_seed_table, labels_to_seed_masks, sample_labels_on_grid
from dsrg.synthetic import CLASS_NAMES, generate_split

JPEG_QUALITY = 92
CUE_FILE = "localization_cues.pickle.gz"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--train", type=int, default=200, help="number of training images (default 200)")
    parser.add_argument("--val", type=int, default=50, help="number of validation images (default 50)")
    parser.add_argument("--size", type=int, default=160, help="image side in pixels (default 160)")
    parser.add_argument("--cue-size", type=int, default=21,
                        help="cue grid side (default 21: the demo net's score map for a 161-pixel input)")
    parser.add_argument("--no-cues", action="store_true",
                        help="do not write the generator's cue file (the images and labels stay identical)")
    parser.add_argument("--quiet", action="store_true", help="print less: no progress and no cue-quality table")
    add_no_progress(parser)
    args = parser.parse_args(argv)
    if args.train < 1 or args.val < 0 or args.size < 32 or args.cue_size < 2:
        parser.error("need --train >= 1, --val >= 0, --size >= 32 and --cue-size >= 2")
    return args


def jpeg_bytes(rgb):
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    settings = {"seed": args.seed, "train": args.train, "val": args.val, "size": args.size,
                "cue_size": args.cue_size, "generator_cues": not args.no_cues}
    marker = out / "dataset.json"
    if marker.is_file():
        existing = {"generator_cues": True, **json.loads(marker.read_text())}
        if {key: existing.get(key) for key in settings} == settings:
            print(f"{out}: demo data set already complete ({marker}), skipping")
            return existing
        raise SystemExit(f"{tool_name()}: error: {out} holds a data set made with "
                         f"{ {key: existing.get(key) for key in settings} }, not {settings}; use another --out")

    progress = None if args.quiet or args.no_progress else show_progress
    num_classes = len(CLASS_NAMES)
    cue_mapping, quality = {}, SeedQuality(num_classes)
    ids = {"train": [], "val": []}
    for split, count in (("train", args.train), ("val", args.val)):
        for index, (name, rgb, ground_truth, labels, cues) in enumerate(
                generate_split(split, count, args.seed, args.size, args.cue_size, progress=progress)):
            atomic_write_bytes(out / "JPEGImages" / f"{name}.jpg", jpeg_bytes(rgb))
            atomic_save_label_png(out / "SegmentationClass" / f"{name}.png", ground_truth)
            ids[split].append(name)
            if split == "train":
                cue_mapping[f"{index}_labels"] = labels
                cue_mapping[f"{index}_cues"] = cues
                if not args.no_cues:
                    seed_map = np.full((args.cue_size, args.cue_size), 255, dtype=np.int64)
                    seed_map[cues[1], cues[2]] = cues[0]
                    quality.add(labels_to_seed_masks(seed_map, num_classes),
                                sample_labels_on_grid(ground_truth, args.cue_size, args.cue_size), source=name)

    lists = out / "lists"
    atomic_write_text(lists / "input_list.txt", "".join(f"{name}.jpg {i}\n" for i, name in enumerate(ids["train"])))
    atomic_write_text(lists / "train_id.txt", "".join(f"{name}\n" for name in ids["train"]))
    atomic_write_text(lists / "val_id.txt", "".join(f"{name}\n" for name in ids["val"]))
    atomic_write_text(out / "classes.txt", "".join(f"{name}\n" for name in CLASS_NAMES))
    write_image_labels(lists / "image_labels.txt",
                       {name: cue_mapping[f"{index}_labels"] for index, name in enumerate(ids["train"])})
    cue_quality = None
    if not args.no_cues:
        save_cues(out / CUE_FILE, cue_mapping)
        cue_summary = quality.summary(CLASS_NAMES)
        if not args.quiet:
            print(format_seed_table(cue_summary, "synthetic cues"))
        cue_quality = {key: value for key, value in cue_summary.items() if key != "seed_confusion"}
    summary = {
        **settings,
        "class_names": list(CLASS_NAMES),
        "num_classes": num_classes,
        "image_size": [args.size, args.size],
        "cue_grid": [args.cue_size, args.cue_size],
        "cue_alignment": "cue (row, col) = image pixel (row*(S-1)/(g-1), col*(S-1)/(g-1)), aligned corners",
        "cue_file": None if args.no_cues else CUE_FILE,
        "image_labels": "lists/image_labels.txt",
        "ignore_label": 255,
        "cue_quality": cue_quality,
    }
    atomic_write_json(marker, summary)
    return summary


if __name__ == "__main__":
    sys.exit(run_main(main))
