#!/usr/bin/env python
"""Side-by-side table of several evaluations (tools/evaluate.py JSON summaries): mIoU and per-class IoU.

Each --eval NAME=PATH is one column. Classes with no ground-truth pixels in every evaluation are
left out of the per-class rows. The table is printed and, with --markdown, written atomically.
--all-background adds a column for predicting background everywhere over the ground truth of the
last evaluation (its confusion matrix). --plot FILE also draws the columns as per-class IoU bars
(dsrg.plots.plot_class_iou; run.sh's evaluate step: $RUN_DIR/eval_classes.png).

Examples (the run.sh ablation and evaluate steps):
  python tools/compare_evals.py --eval "DSRG (growing)=runs/x/eval_val_stage1.json" \\
      --eval "no growing=runs/x/ablation_no_growing/eval_val_stage1.json" --markdown runs/x/ablation.md
  python tools/compare_evals.py --eval "stage 1=runs/x/eval_val_stage1.json" \\
      --eval "stage 2=runs/x/eval_val_stage2.json" --all-background --plot runs/x/eval_classes.png
"""
import argparse
import json
import sys
from pathlib import Path

from dsrg.cli import run_main, tool_name
from dsrg.evaluation import all_background_confusion
from dsrg.fileio import atomic_write_text
from dsrg.plots import plot_class_iou


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eval", action="append", required=True, metavar="NAME=PATH",
                        help="a column: its title and an evaluation JSON (repeatable)")
    parser.add_argument("--title", default="val mIoU", help="heading of the first row (default 'val mIoU')")
    parser.add_argument("--markdown", help="also write the table to this Markdown file")
    parser.add_argument("--all-background", action="store_true",
                        help="add the all-background prediction as a last column (from the last evaluation's "
                             "confusion matrix)")
    parser.add_argument("--plot", help="also draw per-class IoU bars of the columns into this PNG")
    return parser.parse_args(argv)


def all_background_column(columns):
    """("all background", summary) over the ground truth of the last column's confusion matrix."""
    name, summary = columns[-1]
    if "confusion_matrix" not in summary:
        raise ValueError(f"compare_evals.py: --all-background needs the confusion matrix of the last evaluation "
                         f"({name!r} has none)")
    class_names = [entry.get("name") for entry in summary["per_class"]]
    return "all background", all_background_confusion(summary["confusion_matrix"]).summary(class_names)


def load_columns(specs):
    columns = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"{tool_name()}: --eval expects NAME=PATH, got {spec!r}")
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{tool_name()}: evaluation not found: {path} (column {name!r})")
        try:
            summary = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{tool_name()}: {path} is not a tools/evaluate.py summary ({error})") from None
        for key in ("miou", "per_class"):
            if key not in summary:
                raise ValueError(f"{tool_name()}: {path} is not a tools/evaluate.py summary (no {key!r})")
        columns.append((name, summary))
    classes = {len(summary["per_class"]) for _, summary in columns}
    if len(classes) != 1:
        raise ValueError(f"{tool_name()}: the evaluations disagree on the number of classes: {sorted(classes)}")
    return columns


def comparison_table(columns, title="val mIoU"):
    """Markdown table: one row for mIoU, one per class with ground truth, one column per evaluation."""
    names = [name for name, _ in columns]
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    lines.append(f"| **{title}** | " + " | ".join(f"**{summary['miou']:.2f}**" for _, summary in columns) + " |")
    for index, entry in enumerate(columns[0][1]["per_class"]):
        if all(summary["per_class"][index]["gt_pixels"] == 0 for _, summary in columns):
            continue
        cells = []
        for _, summary in columns:
            iou = summary["per_class"][index]["iou"]
            cells.append("n/a" if iou is None else f"{iou:.1f}")
        lines.append(f"| {entry['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    columns = load_columns(args.eval)
    if args.all_background:
        columns.append(all_background_column(columns))
    table = comparison_table(columns, args.title)
    print(table, end="")
    if args.markdown:
        atomic_write_text(args.markdown, table)
    if args.plot:
        plot_class_iou(args.plot, dict(columns), [entry["name"] for entry in columns[0][1]["per_class"]])
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
