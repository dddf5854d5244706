"""Training and evaluation pictures as PNG files (matplotlib's Agg backend: no display needed),
written atomically. Every function refuses malformed input with a one-line ValueError naming the
file it was to write.

- plot_loss_curve: a training log (tools/train.py's train_log.tsv: a header "iteration" + output
  names, rows of window means). Losses on the left axis; accuracy outputs ("accuracy…", e.g. stage
  2's SegAccuracy accuracy[0..2]: pixel accuracy, mean recall, mean IoU) on a right axis of their
  own; seed-growth columns ("seed_…", dsrg.seedgrowth) are left to plot_seed_growth.
- plot_seed_growth: the seed-growth columns of the same log over the iterations: density (solid:
  the fraction of the seed grid's cells carrying a seed of the group) and precision (dashed: the
  fraction of the group's seeds that the ground truth confirms), background and foreground.
- plot_class_iou: per-class IoU bars of several evaluations (tools/evaluate.py summaries).

Every line has markers, so a log of a single row still shows its point.
"""
import io
import math

import numpy as np

from dsrg.atomic import atomic_write_bytes
from dsrg.seedgrowth import SEED_COLUMN_PREFIX

ACCURACY_PREFIX = "accuracy"
# SegAccuracy's three outputs (stage 2): what accuracy[i] means.
SEG_ACCURACY_NAMES = {"accuracy[0]": "pixel accuracy", "accuracy[1]": "mean recall", "accuracy[2]": "mean IoU"}
SEED_FIGURE_NAMES = {"seed_bg_density": "background density", "seed_fg_density": "foreground density",
                     "seed_bg_precision": "background precision", "seed_fg_precision": "foreground precision"}
FIGURE_DPI = 100
# plot_class_iou writes each bar's value above it up to this many bars (VOC's 21 classes × 2 stages).
MAX_LABELLED_BARS = 48


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(figure, path):
    plt = _pyplot()
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=FIGURE_DPI)
    finally:
        plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def log_table(path, header, rows):
    """(column names, data rows × columns float64) of a training log; malformed: ValueError naming `path`."""
    if not isinstance(header, (list, tuple)) or len(header) < 2 or header[0] != "iteration" \
            or not all(isinstance(name, str) and name for name in header):
        raise ValueError(f"{path}: a training log header is 'iteration' and at least one column name, got {header!r}")
    if len(set(header)) != len(header):
        raise ValueError(f"{path}: the training log header repeats a column name: {list(header)!r}")
    data = np.empty((len(rows), len(header)), dtype=np.float64)
    for number, row in enumerate(rows):
        if not isinstance(row, (list, tuple, np.ndarray)) or len(row) != len(header):
            raise ValueError(f"{path}: training log row {number} has {len(row) if hasattr(row, '__len__') else 0} "
                             f"values, the header {len(header)}")
        try:
            data[number] = [float(value) for value in row]
        except (TypeError, ValueError):
            raise ValueError(f"{path}: training log row {number} is not all numbers: {list(row)!r}") from None
    if not np.all(np.isfinite(data[:, 0])):
        raise ValueError(f"{path}: a training log row has a non-finite iteration")
    return list(header[1:]), data


def _plot_columns(axes, iterations, data, columns, names, label=None, styles=None, colours=None):
    for name in columns:
        index = names.index(name)
        axes.plot(iterations, data[:, index + 1], marker="o", markersize=3, color=(colours or {}).get(name),
                  linestyle=(styles or {}).get(name, "-"), label=(label or {}).get(name, name))


def _iteration_axis(axes):
    from matplotlib.ticker import MaxNLocator
    axes.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    axes.set_xlabel("iteration")


def plot_loss_curve(path, header, rows, title):
    """The losses of a training log over the iterations, accuracy outputs on a right-hand axis.

    header: ["iteration", name, …]; rows: [[iteration, value, …], …] (tools/train.py's log). Seed
    columns ("seed_…") are not drawn here (plot_seed_growth). No rows: the empty axes.
    """
    names, data = log_table(path, header, rows)
    accuracy = [name for name in names if name.startswith(ACCURACY_PREFIX)]
    losses = [name for name in names if name not in accuracy and not name.startswith(SEED_COLUMN_PREFIX)]
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.2), layout="constrained")
    iterations = data[:, 0]
    _plot_columns(axes, iterations, data, losses, names)
    handles, labels = axes.get_legend_handles_labels()
    if accuracy:
        right = axes.twinx()
        right.set_prop_cycle(color=plt.rcParams["axes.prop_cycle"].by_key()["color"][len(losses):])
        shown = {name: f"{name}: {SEG_ACCURACY_NAMES[name]}" if name in SEG_ACCURACY_NAMES else name
                 for name in accuracy}
        _plot_columns(right, iterations, data, accuracy, names, label=shown, styles=dict.fromkeys(accuracy, "--"))
        right.set_ylabel("accuracy (window mean, dashed)")
        accuracy_values = data[:, [names.index(name) + 1 for name in accuracy]]
        right.set_ylim(0, 1.02 if np.nanmax(accuracy_values, initial=0) <= 1 else None)
        more_handles, more_labels = right.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    if handles:
        figure.legend(handles, labels, fontsize=8, loc="outside lower center", ncol=min(3, len(handles)),
                      frameon=False)
    _iteration_axis(axes)
    axes.set_ylabel("loss (window mean)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    _save(figure, path)


def seed_columns(header):
    """The seed-growth columns of a training log header (dsrg.seedgrowth's names, maybe [layer] suffixed)."""
    return [name for name in header[1:] if isinstance(name, str) and name.startswith(SEED_COLUMN_PREFIX)]


def plot_seed_growth(path, header, rows, title="seed growth"):
    """Seed densities (solid) and precisions (dashed) of a training log over the iterations, as fractions."""
    names, data = log_table(path, header, rows)
    columns = seed_columns(header)
    if not columns:
        raise ValueError(f"{path}: the training log has no seed-growth columns (seed_…), only {names}")
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.2), layout="constrained")
    labels = {name: SEED_FIGURE_NAMES.get(name.split("[")[0], name) + name[len(name.split("[")[0]):]
              for name in columns}
    styles = {name: "--" if "precision" in name else "-" for name in columns}
    # one colour per class group and layer: background and foreground, density solid, precision dashed
    groups = sorted({name.replace("density", "").replace("precision", "") for name in columns})
    colours = {name: f"C{groups.index(name.replace('density', '').replace('precision', '')) % 10}"
               for name in columns}
    _plot_columns(axes, data[:, 0], data, columns, names, label=labels, styles=styles, colours=colours)
    axes.set_ylim(0, 1.02)
    _iteration_axis(axes)
    axes.set_ylabel("fraction (window mean)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    figure.legend(fontsize=8, loc="outside lower center", ncol=min(4, len(columns)), frameon=False)
    _save(figure, path)


def _class_ious(path, label, evaluation, num_classes):
    per_class = evaluation.get("per_class") if isinstance(evaluation, dict) else None
    if not isinstance(per_class, list) or len(per_class) != num_classes:
        raise ValueError(f"{path}: evaluation {label!r} must be a tools/evaluate.py summary with {num_classes} "
                         f"per-class entries")
    values = []
    for entry in per_class:
        iou = entry.get("iou") if isinstance(entry, dict) else "missing"
        if iou is not None and not isinstance(iou, (int, float)):
            raise ValueError(f"{path}: evaluation {label!r} has a per-class IoU that is not a number: {iou!r}")
        values.append(math.nan if iou is None else float(iou))
    return values


def plot_class_iou(path, evaluations, class_names):
    """Per-class IoU bars (percent), one bar per evaluation in each class's group, mIoU in the legend.

    evaluations: {label: tools/evaluate.py summary} in drawing order (e.g. stage 1, stage 2 and the
    all-background prediction of dsrg.evaluation.all_background_confusion(...).summary()); class_names:
    one per class, background first. A class no evaluation scores (no ground truth, no prediction)
    is left out; a missing bar is a class an evaluation has no IoU for.
    """
    if not isinstance(evaluations, dict) or not evaluations:
        raise ValueError(f"{path}: give at least one evaluation ({{label: evaluate.py summary}})")
    class_names = list(class_names)
    if not class_names:
        raise ValueError(f"{path}: no class names")
    table = np.array([_class_ious(path, label, evaluation, len(class_names))
                      for label, evaluation in evaluations.items()])
    shown = [index for index in range(len(class_names)) if not np.all(np.isnan(table[:, index]))]
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(max(6.0, 0.25 * len(shown) * len(evaluations) + 2), 4.5),
                                  layout="constrained")
    width = 0.8 / len(evaluations)
    positions = np.arange(len(shown))
    label_bars = len(shown) * len(evaluations) <= MAX_LABELLED_BARS
    for offset, (label, evaluation) in enumerate(evaluations.items()):
        miou = evaluation.get("miou")
        legend = f"{label} (mIoU {miou:.1f})" if isinstance(miou, (int, float)) else label
        bars = axes.bar(positions + (offset - (len(evaluations) - 1) / 2) * width, table[offset, shown], width,
                        label=legend)
        if label_bars:
            axes.bar_label(bars, fmt="%.0f", fontsize=6, padding=1)
    rotate = len(shown) > 8
    axes.set_xticks(positions, [class_names[index] for index in shown], rotation=45 if rotate else 0,
                    ha="right" if rotate else "center")
    axes.set_ylim(0, 118)
    axes.set_yticks(range(0, 101, 20))
    axes.set_ylabel("IoU (%)")
    axes.set_title("per-class IoU")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=8, loc="upper center", ncol=len(evaluations), frameon=False)
    _save(figure, path)
