#!/usr/bin/env python
"""Write stage 1's training list: the input-list lines ("<id>.jpg <cue index>") of the training ids.

The official input list names all 10,582 train_aug images; an experiment on a subset (the shared
photos) trains on the lines of its own ids, in the input list's order, with LF line endings (the
official lists have CRLF). Every training id must be in the input list. Without --input-list (a data
set with no cue file yet: run.sh's CUES=generate makes one from this list) the ids are numbered in
the order of --ids, 0, 1, 2, ...

With --repeat-threshold T the list is class-balanced by repeat-factor sampling (Gupta et al.,
LVIS, CVPR 2019): class c, in a fraction f_c of the images (image-level labels from the cue
file), has repeat factor r_c = max(1, sqrt(T / f_c)); an image repeats r_i = max over its classes
of r_c times, the fractional part by a seeded coin, so rare classes are seen more often. Caffe's
ImageData shuffles the list as usual. Without it the list is the plain subset (the release's
sampling).

Example:
  python tools/make_train_list.py --input-list VOC/lists/input_list.txt \\
      --ids VOC/lists/train_aug_photos_id.txt --out runs/x/lists/train_input_list.txt \\
      --cues VOC/localization_cues-sec.pickle.gz --repeat-threshold 0.1
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from dsrg.cli import run_main, tool_name
from dsrg.fileio import atomic_write_json, atomic_write_text
from dsrg.lists import read_image_ids, read_indexed_list


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input-list", help="input_list.txt: '<id>.jpg <cue index>' lines (default: the ids "
                                             "numbered in their order)")
    parser.add_argument("--ids", required=True, help="the training ids")
    parser.add_argument("--out", required=True, help="list file to write (a .json with the counts goes beside it)")
    parser.add_argument("--cues", help="cue file with the image-level labels; required with --repeat-threshold")
    parser.add_argument("--repeat-threshold", type=float, metavar="T",
                        help="class-balance by repeat-factor sampling with threshold T (e.g. 0.1)")
    parser.add_argument("--num-classes", type=int, default=21, help="classes including the background (default 21)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fractional repeats (default 0)")
    args = parser.parse_args(argv)
    if args.repeat_threshold is not None and (not args.cues or not 0 < args.repeat_threshold <= 1):
        parser.error("--repeat-threshold needs --cues and a threshold in (0, 1]")
    return args


def repeat_factors(image_labels, threshold):
    """Per-image repeat factors r_i = max over the image's classes of max(1, sqrt(threshold / f_c))."""
    classes = sorted({label for labels in image_labels for label in labels})
    frequency = {c: sum(c in labels for labels in image_labels) / len(image_labels) for c in classes}
    class_factor = {c: max(1.0, float(np.sqrt(threshold / frequency[c]))) for c in classes}
    return np.array([max((class_factor[c] for c in labels), default=1.0) for labels in image_labels])


def repeat_counts(factors, seed):
    """Whole repeats per image: floor(r_i), plus one with probability frac(r_i) (seeded)."""
    rng = np.random.default_rng(seed)
    whole = np.floor(factors)
    return (whole + (rng.random(len(factors)) < factors - whole)).astype(np.int64)


def main(argv=None):
    args = parse_args(argv)
    wanted = read_image_ids(args.ids)
    if args.input_list:
        entries = {name: index for name, index in read_indexed_list(args.input_list)}
    else:
        entries = {name: index for index, name in enumerate(wanted)}
    missing = [name for name in wanted if name not in entries]
    if missing:
        raise SystemExit(f"{tool_name()}: {len(missing)} training ids of {args.ids} are not in "
                         f"{args.input_list}, e.g. {missing[:5]}")
    chosen = set(wanted)
    order = [name for name in entries if name in chosen]
    counts = np.ones(len(order), dtype=np.int64)
    if args.repeat_threshold is not None:
        from dsrg.cues import image_cue_entry, load_cues
        mapping = load_cues(args.cues)
        labels = [set(image_cue_entry(mapping, entries[name], args.num_classes, source=args.cues)[0].tolist())
                  for name in order]
        counts = repeat_counts(repeat_factors(labels, args.repeat_threshold), args.seed)
    lines = [f"{name}.jpg {entries[name]}" for name, count in zip(order, counts) for _ in range(count)]
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    atomic_write_json(Path(args.out).with_suffix(".json"), {
        "images": len(order), "lines": len(lines), "repeat_threshold": args.repeat_threshold, "seed": args.seed,
        "most_repeats": int(counts.max()),
    })
    print(f"{tool_name()}: {len(order)} training images, {len(lines)} lines -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
