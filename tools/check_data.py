#!/usr/bin/env python
"""Check a VOC-layout data set before training: lists, every image, its ground truth, the cues.

Every training and val image is decoded completely and compared with its ground-truth PNG (same
size, values 0..C-1 or 255; --no-train-gt: the val images only, for training images with image-level
labels only); every training id must be in the input list with a cue index that the cue file holds; the list files must be readable by the pipeline (LF or CRLF, no byte-order mark).
See training/dsrg/datacheck.py for the full list of checks.

Output: the first --show problems, one line each naming the file, then the count of all problems
(exit status 1); or one summary line (exit status 0). --out writes the JSON report (every problem,
counts, notes, the inputs' fingerprint) atomically; a rerun with the same --out skips the check when
that report records a pass on inputs with the same fingerprint (list contents, sizes and mtimes of
the cue file and of every listed image and label map), unless --force. A progress bar on a terminal,
a line per tenth of the images otherwise (--no-progress: neither). Exit status 2: bad arguments.

Example:
  python tools/check_data.py --images VOC/JPEGImages --gt VOC/SegmentationClassAug \\
      --input-list VOC/lists/input_list.txt --train-ids VOC/lists/train_aug_id.txt \\
      --val-ids VOC/lists/val_id.txt --cues VOC/localization_cues-sal.pickle --num-classes 21 \\
      --out runs/voc12/data_check.json
"""
import argparse
import functools
import json
import sys
import time
from pathlib import Path

from dsrg.cli import add_no_progress, run_main, tool_name
from dsrg.datacheck import REPORT_FORMAT, DataLayout, check_dataset, fingerprint
from dsrg.fileio import atomic_write_json
from dsrg.progress import progress as show_progress
from dsrg.voc import NUM_CLASSES

EXIT_PROBLEMS = 1


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True, help="image folder (JPEGImages)")
    parser.add_argument("--gt", required=True, help="ground-truth folder of <id>.png (SegmentationClassAug)")
    parser.add_argument("--input-list", required=True, help="input_list.txt: '<id>.jpg <cue index>' lines")
    parser.add_argument("--train-ids", required=True, help="training ids (train_aug_id.txt)")
    parser.add_argument("--val-ids", required=True, help="val ids (val_id.txt)")
    parser.add_argument("--cues", required=True, help="localization cue file (.pickle, .pickle.gz or .npz)")
    parser.add_argument("--num-classes", type=int, default=NUM_CLASSES,
                        help=f"classes including the background (default {NUM_CLASSES})")
    parser.add_argument("--cue-size", type=int, default=41, help="cue grid side of the cue file (default 41)")
    parser.add_argument("--image-ext", default=".jpg", help="val image file extension (default .jpg)")
    parser.add_argument("--no-train-gt", action="store_true",
                        help="the training images have no ground truth: check it for the val images only")
    parser.add_argument("--out", help="JSON report, written atomically; a passing report for the same inputs "
                                      "makes a rerun skip the check")
    parser.add_argument("--force", action="store_true", help="check even when --out records a pass on the same inputs")
    parser.add_argument("--show", type=int, default=20, help="problems printed (default 20; all are in --out)")
    parser.add_argument("--jobs", type=int, help="decoding threads (default: the number of CPUs)")
    add_no_progress(parser)
    args = parser.parse_args(argv)
    for option, value in (("--cue-size", args.cue_size), ("--jobs", args.jobs)):
        if value is not None and value < 1:
            parser.error(f"{option} must be positive, got {value}")
    if args.show < 0:
        parser.error(f"--show must be non-negative, got {args.show}")
    if args.num_classes < 2:
        parser.error(f"--num-classes must be at least 2 (background and one class), got {args.num_classes}")
    return args


def previous_pass(path, digest):
    """The report at `path` when it records a pass of this check on inputs with fingerprint `digest`."""
    if path is None or not path.is_file():
        return None
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if report.get("format") == REPORT_FORMAT and report.get("ok") and report.get("fingerprint") == digest:
        return report
    return None


def summary_line(report, seconds):
    counts = report["counts"]
    matched = " with matching ground truth" if report["layout"].get("train_gt", True) else \
        ", the val images with matching ground truth"
    return (f"OK: {counts['images_checked']} images decode completely{matched} "
            f"({counts['train_ids']} training ids, {counts['val_ids']} val ids); every training id is in the "
            f"input list ({counts['input_list_entries']} entries) with cues in the cue file "
            f"({counts['cue_file_images']} images); {seconds:.1f} s")


def main(argv=None):
    args = parse_args(argv)
    layout = DataLayout(args.images, args.gt, args.input_list, args.train_ids, args.val_ids, args.cues,
                        args.num_classes, args.cue_size, args.image_ext, train_gt=not args.no_train_gt)
    out = Path(args.out) if args.out else None
    started = time.monotonic()
    digest = fingerprint(layout)
    previous = None if args.force else previous_pass(out, digest)
    if previous is not None:
        print(f"{tool_name()}: {out} records a pass on the same inputs (fingerprint {digest[:12]}); skipping. "
              + summary_line(previous, previous["seconds"]))
        return 0
    progress = functools.partial(show_progress, desc="check images", unit="img", disable=args.no_progress)
    report = check_dataset(layout, progress=progress, jobs=args.jobs)
    seconds = time.monotonic() - started
    report.update(fingerprint=digest, seconds=round(seconds, 1))
    if out is not None:
        atomic_write_json(out, report)
    for note in report["notes"]:
        print(f"{tool_name()}: note: {note}")
    if report["ok"]:
        print(f"{tool_name()}: {summary_line(report, seconds)}")
        return 0
    problems = report["problems"]
    for item in problems[:args.show]:
        print(f"{item['file']}: {item['problem']}", file=sys.stderr)
    if len(problems) > args.show:
        print(f"... and {len(problems) - args.show} more", file=sys.stderr)
    where = f"; all of them in {out}" if out is not None else ""
    print(f"{tool_name()}: {len(problems)} problem{'s' if len(problems) != 1 else ''} in the data set "
          f"({report['counts']['images_checked']} images checked, {seconds:.1f} s){where}", file=sys.stderr)
    return EXIT_PROBLEMS


if __name__ == "__main__":
    sys.exit(run_main(main))
