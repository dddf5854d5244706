#!/usr/bin/env python
"""Print the figures of a run folder (run.sh's last step): seed quality of the raw cues and the grown
seeds, train pseudo-label mIoU, the val all-background baseline, val mIoU of both stages, and the time
per step. The last line is `final val mIoU: <percent>`, which scripts read.

Reads what the earlier steps wrote: seeds_cues.json, seeds_grown.json, eval_train_pseudo_labels.json,
eval_val_stage1.json, eval_val_stage2.json, step_times.tsv; a missing file prints "n/a". Without the
final evaluation the tool exits 1 after printing the rest.

Example:
  python tools/summary.py --run-dir runs/demo
"""
import argparse
import json
import sys
from pathlib import Path
from dsrg.cli import run_main, tool_name
from dsrg.evaluation import all_background_confusion

FINAL = "eval_val_stage2.json"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True, help="the run folder (RUN_DIR)")
    return parser.parse_args(argv)


def load(run, name):
    path = run / name
    return json.loads(path.read_text()) if path.is_file() else None


def miou_text(summary):
    return "n/a" if summary is None else f"{summary['miou']:.2f}"


def all_background_miou(evaluation):
    """Standard mIoU (percent) of predicting background everywhere, from an evaluation's confusion
    matrix (dsrg.evaluation.all_background_confusion); 0 for an empty matrix."""
    miou = all_background_confusion(evaluation["confusion_matrix"]).miou()
    return 0.0 if miou != miou else 100.0 * miou


def summary_lines(run):
    """The summary's lines (without the final one) and the final evaluation, or None."""
    lines = [f"== DSRG run {run}"]
    for name, title in (("seeds_cues.json", "raw cues"), ("seeds_grown.json", "grown seeds (DSRG)")):
        for figures in (load(run, name) or {}).values():
            if isinstance(figures, dict) and "precision" in figures:
                lines.append(f"  {title:24s}  precision {figures['precision']:6.2f}  recall {figures['recall']:6.2f}  "
                             f"coverage {figures['coverage']:6.2f}")
    lines.append(f"  train pseudo labels mIoU    {miou_text(load(run, 'eval_train_pseudo_labels.json'))}")
    final = load(run, FINAL)
    if final is not None:
        lines.append(f"  val all-background mIoU     {all_background_miou(final):.2f}")
    lines.append(f"  val stage 1 mIoU            {miou_text(load(run, 'eval_val_stage1.json'))}")
    lines.append(f"  val stage 2 (final) mIoU    {miou_text(final)}")
    times = run / "step_times.tsv"
    if times.is_file():
        rows = [line.split("\t") for line in times.read_text().splitlines() if line]
        lines.append("  time per step (s): " + ", ".join(f"{step} {seconds}" for step, seconds in rows))
    return lines, final


def main(argv=None):
    args = parse_args(argv)
    run = Path(args.run_dir)
    if not run.is_dir():
        print(f"{tool_name()}: error: the run folder {run} does not exist", file=sys.stderr)
        return 1
    lines, final = summary_lines(run)
    print("\n".join(lines))
    if final is None:
        print(f"{tool_name()}: error: no final evaluation ({run / FINAL}) yet", file=sys.stderr)
        return 1
    print(f"final val mIoU: {final['miou']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
