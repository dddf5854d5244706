"""Segmentation scores from a confusion matrix accumulated over a data set.

`ConfusionMatrix.matrix[g, p]` counts the pixels whose ground truth is class g and whose prediction
is class p; pixels whose ground truth is the ignore label (255) are left out. From it:

    IoU_c            = M[c,c] / (sum_p M[c,p] + sum_g M[g,c] - M[c,c])     (TP / (TP + FP + FN))
    pixel accuracy   = trace(M) / sum(M)
    class accuracy_c = M[c,c] / sum_p M[c,p]                               (recall of class c)
    precision_c      = M[c,c] / sum_g M[g,c]

A class with an empty denominator has no score (NaN) and is left out of the means.

Two mean IoUs are offered:
  - "standard": the mean over every class that occurs in the ground truth or in the predictions
    (all 21 classes on VOC val) — the figure papers report.
  - "nonzero": the original DSRG evaluation script's mean over the classes with a non-zero
    diagonal entry (at least one correctly labelled pixel). It silently drops classes the model
    never gets right and so can only flatter a result; it is kept to compare with that script.
"""

import numpy as np

from dsrg.voc import CLASS_NAMES, IGNORE_LABEL

MIOU_MODES = ("standard", "nonzero")


class ConfusionMatrix:
    """A C×C pixel-count matrix, rows = ground-truth class, columns = predicted class."""

    def __init__(self, num_classes, ignore_label=IGNORE_LABEL):
        if int(num_classes) < 1:
            raise ValueError(f"ConfusionMatrix: num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_label = ignore_label
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def add(self, pred, gt, source=None):
        """Count one prediction against its ground truth (arrays of the same shape).

        Ground-truth pixels equal to the ignore label are skipped. Any other ground-truth or
        predicted value outside 0..C-1 is an error; `source` (e.g. a file name) is named in it.
        """
        pred = np.asarray(pred)
        gt = np.asarray(gt)
        where = f"{source}: " if source is not None else ""
        if pred.shape != gt.shape:
            raise ValueError(f"{where}prediction shape {pred.shape} differs from ground-truth shape {gt.shape}")
        valid = gt != self.ignore_label
        gt_valid = gt[valid].astype(np.int64)
        pred_valid = pred[valid].astype(np.int64)
        for name, values in (("ground-truth", gt_valid), ("predicted", pred_valid)):
            if values.size and (values.min() < 0 or values.max() >= self.num_classes):
                bad = values[(values < 0) | (values >= self.num_classes)]
                raise ValueError(
                    f"{where}{name} label {int(bad[0])} outside the expected range 0..{self.num_classes - 1}"
                    + (f" (or {self.ignore_label} = ignore)" if name == "ground-truth" else "")
                )
        flat = gt_valid * self.num_classes + pred_valid
        self.matrix += np.bincount(flat, minlength=self.num_classes ** 2).reshape(self.num_classes, self.num_classes)
        return self

    def merge(self, other):
        """Add the counts of another matrix of the same size."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge a {other.num_classes}-class matrix into a {self.num_classes}-class one")
        self.matrix += other.matrix
        return self

    @property
    def true_positives(self):
        return np.diag(self.matrix).astype(np.float64)

    @property
    def gt_counts(self):
        """Pixels per ground-truth class (row sums)."""
        return self.matrix.sum(axis=1).astype(np.float64)

    @property
    def pred_counts(self):
        """Pixels per predicted class (column sums)."""
        return self.matrix.sum(axis=0).astype(np.float64)

    def iou(self):
        """Per-class intersection over union; NaN for a class absent from both GT and prediction."""
        union = self.gt_counts + self.pred_counts - self.true_positives
        return safe_divide(self.true_positives, union)

    def miou(self, mode="standard"):
        """Mean IoU (a fraction, 0..1) under `mode` ("standard" or "nonzero", see the module doc)."""
        if mode not in MIOU_MODES:
            raise ValueError(f"unknown mIoU mode {mode!r}; expected one of {MIOU_MODES}")
        iou = self.iou()
        if mode == "nonzero":
            iou = np.where(self.true_positives > 0, iou, np.nan)
        return nanmean(iou)

    def pixel_accuracy(self):
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else float("nan")

    def class_accuracy(self):
        """Per-class accuracy (recall): correct pixels of class c / ground-truth pixels of class c."""
        return safe_divide(self.true_positives, self.gt_counts)

    def mean_class_accuracy(self):
        return nanmean(self.class_accuracy())

    def precision(self):
        """Per-class precision: correct pixels of class c / pixels predicted as class c."""
        return safe_divide(self.true_positives, self.pred_counts)

    def summary(self, class_names=None, miou_mode="standard"):
        """A JSON-ready dict with the overall figures (percent) and a per-class table."""
        names = resolve_class_names(class_names, self.num_classes)
        iou, accuracy, precision = self.iou(), self.class_accuracy(), self.precision()
        return {
            "num_classes": self.num_classes,
            "miou_mode": miou_mode,
            "miou": percent(self.miou(miou_mode)),
            "miou_standard": percent(self.miou("standard")),
            "miou_nonzero": percent(self.miou("nonzero")),
            "pixel_accuracy": percent(self.pixel_accuracy()),
            "mean_class_accuracy": percent(self.mean_class_accuracy()),
            "pixels": int(self.matrix.sum()),
            "per_class": [
                {
                    "class": index,
                    "name": names[index],
                    "iou": percent(iou[index]),
                    "accuracy": percent(accuracy[index]),
                    "precision": percent(precision[index]),
                    "gt_pixels": int(self.gt_counts[index]),
                    "pred_pixels": int(self.pred_counts[index]),
                }
                for index in range(self.num_classes)
            ],
            "confusion_matrix": self.matrix.tolist(),
        }


def all_background_confusion(matrix):
    """The ConfusionMatrix of predicting background everywhere over the ground truth of `matrix` (a
    C×C count matrix, rows = ground truth, e.g. an evaluation JSON's "confusion_matrix"): background
    IoU is its pixel share, every other class present in the ground truth scores 0, the rest none."""
    matrix = np.asarray(matrix, dtype=np.int64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 1:
        raise ValueError(f"a confusion matrix must be C×C, got shape {matrix.shape}")
    baseline = ConfusionMatrix(matrix.shape[0])
    baseline.matrix[:, 0] = matrix.sum(axis=1)
    return baseline


def format_table(summary):
    """A readable per-class table followed by the overall figures; the last line is `mIoU: xx.xx`."""
    width = max(12, max(len(row["name"]) for row in summary["per_class"]) + 2)
    lines = [f"{'class':<{width}}{'IoU':>8}{'acc':>8}{'prec':>8}{'GT px':>12}"]
    for row in summary["per_class"]:
        lines.append(
            f"{row['name']:<{width}}{format_score(row['iou'])}{format_score(row['accuracy'])}"
            f"{format_score(row['precision'])}{row['gt_pixels']:>12d}"
        )
    lines.append(f"pixel accuracy: {format_score(summary['pixel_accuracy']).strip()}")
    lines.append(f"mean class accuracy: {format_score(summary['mean_class_accuracy']).strip()}")
    other = "nonzero" if summary["miou_mode"] == "standard" else "standard"
    lines.append(f"mIoU ({other} mode, for reference): {format_score(summary['miou_' + other]).strip()}")
    lines.append(f"mIoU: {format_score(summary['miou']).strip()}")
    return "\n".join(lines)


def resolve_class_names(class_names, num_classes):
    if class_names is None:
        class_names = CLASS_NAMES if num_classes <= len(CLASS_NAMES) else ()
    names = list(class_names)[:num_classes]
    if len(names) < num_classes:
        names += [f"class_{index}" for index in range(len(names), num_classes)]
    return names


def safe_divide(numerator, denominator):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def nanmean(values):
    values = np.asarray(values, dtype=np.float64)
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def percent(value):
    """A fraction as a percentage rounded to 4 decimals, or None (JSON null) when undefined."""
    value = float(value)
    return None if np.isnan(value) else round(100.0 * value, 4)


def format_score(value, width=8):
    """A score of a table (a percentage from :func:`percent`) right-aligned in `width` characters with
    two decimals; an undefined one (None) as "-"."""
    return f"{'-':>{width}}" if value is None else f"{value:{width}.2f}"
