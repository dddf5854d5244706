#!/usr/bin/env python
r"""Score predicted label maps against ground truth: mIoU, per-class IoU, pixel and class accuracy.

The confusion matrix is accumulated over the whole list before any ratio is taken (the standard VOC
protocol). Ground-truth pixels labelled 255 are ignored. Predictions and ground truth are label PNGs
named <id>.png. The original DSRG script's flag spellings are accepted too.

    python tools/evaluate.py --pred out/pred --gt VOC/SegmentationClassAug --ids val_id.txt \
        --out out/eval.json --num-classes 21

The JSON summary is written atomically to --out; the last printed line is "mIoU: <percent>".
"""
import argparse
import sys
from pathlib import Path


from dsrg.cli import add_hidden_aliases, add_no_progress, run_main
from dsrg.evaluation import ConfusionMatrix, MIOU_MODES, format_table
from dsrg.fileio import atomic_write_json, read_label_png
from dsrg.lists import read_class_names, read_image_ids
from dsrg.progress import progress as show_progress
from dsrg.voc import CLASS_NAMES, NUM_CLASSES


# The original DSRG evaluation script's flags.
RELEASE_SPELLINGS = {"--pred_path": "--pred", "--gt_path": "--gt", "--test_ids": "--ids", "--save_path": "--out",
                     "--class_num": "--num-classes"}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pred", required=True, help="folder of predicted <id>.png")
    parser.add_argument("--gt", required=True, help="folder of ground-truth <id>.png")
    parser.add_argument("--ids", required=True,
                        help="image list (ids, '<id>.jpg <index>' or '/JPEGImages/<id>.jpg ...' lines)")
    parser.add_argument("--out", help="JSON summary to write (atomic)")
    parser.add_argument("--num-classes", type=int, default=None,
                        help=f"number of classes incl. background (default: from --classes, else {NUM_CLASSES})")
    parser.add_argument("--classes", help="file with one class name per line, background first "
                                          "(default: the VOC names)")
    parser.add_argument("--miou-mode", choices=MIOU_MODES, default="standard",
                        help="standard: mean IoU over all classes present in GT or prediction (default); "
                             "nonzero: the original DSRG script's mean over classes with non-zero hits")
    parser.add_argument("--quiet", action="store_true",
                        help="print only the summary lines, not the table (and no progress)")
    add_no_progress(parser)
    add_hidden_aliases(parser, RELEASE_SPELLINGS)
    return parser.parse_args(argv)


def evaluate(pred_dir, gt_dir, ids, num_classes, progress=True):
    """Accumulate a ConfusionMatrix over `ids`; a missing file or a size mismatch is a ValueError/FileNotFoundError."""
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    matrix = ConfusionMatrix(num_classes)
    for image_id in show_progress(ids, desc="evaluate", unit="img", disable=not progress):
        pred_path, gt_path = pred_dir / f"{image_id}.png", gt_dir / f"{image_id}.png"
        for kind, path in (("prediction", pred_path), ("ground truth", gt_path)):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: {kind} for image id {image_id} is missing (expected a label PNG)")
        pred, gt = read_label_png(pred_path), read_label_png(gt_path)
        if pred.shape != gt.shape:
            raise ValueError(
                f"{pred_path}: prediction size {pred.shape[1]}x{pred.shape[0]} (WxH) differs from the "
                f"ground truth {gt_path} size {gt.shape[1]}x{gt.shape[0]}"
            )
        matrix.add(pred, gt, source=pred_path)
    return matrix


def main(argv=None):
    args = parse_args(argv)
    class_names = read_class_names(args.classes) if args.classes else None
    num_classes = args.num_classes or (len(class_names) if class_names else NUM_CLASSES)
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"{args.classes}: {len(class_names)} class names, but --num-classes is {num_classes}")
    if class_names is None and num_classes <= len(CLASS_NAMES):
        class_names = CLASS_NAMES[:num_classes]
    ids = read_image_ids(args.ids)
    matrix = evaluate(args.pred, args.gt, ids, num_classes, progress=not (args.quiet or args.no_progress))
    summary = matrix.summary(class_names, miou_mode=args.miou_mode)
    summary.update(images=len(ids), pred=str(args.pred), gt=str(args.gt), test_ids=str(args.ids))
    if args.out:
        atomic_write_json(args.out, summary)
    table = format_table(summary)
    print(table if not args.quiet else "\n".join(table.splitlines()[-4:]))
    return summary


if __name__ == "__main__":
    sys.exit(run_main(main))
