"""Quality of localization seeds (raw cues or grown seeds) against ground truth, on the seed grid.

The ground truth is brought to the h×w seed grid by aligned-corners nearest sampling: grid cell
(r, c) takes the GT pixel (round(r·(H−1)/(h−1)), round(c·(W−1)/(w−1))), round = half up; a grid of
one cell samples pixel 0. Cells whose sampled GT is 255 (ignore) are skipped.

Seeds are a boolean C×h×w map; a cell may carry several classes (the SEC cues do: a foreground blob
may overlap the background cues or another class's blob). Each (cell, class) pair is one *seed*:

  - precision_c = seeds of class c on GT-c cells / seeds of class c;
    overall precision = correct seeds / all seeds (a cell seeded with k classes adds k seeds, at most
    one of them correct, so conflicting cells count against precision);
  - recall_c    = GT-c cells carrying a class-c seed / GT-c cells;
    overall recall = cells carrying their GT class among their seeds / valid cells;
  - density_c   = cells carrying a class-c seed / valid cells;
  - coverage    = cells carrying any seed / valid cells;
  - conflict    = cells carrying two or more classes / valid cells.

Foreground aggregates pool every class but background (precision over all foreground seeds, recall
over all foreground GT cells).
"""
from pathlib import Path

import numpy as np

from dsrg.cues import dense_cues, image_cue_entry
from dsrg.evaluation import ConfusionMatrix, format_score, nanmean, percent, resolve_class_names, safe_divide
from dsrg.fileio import read_label_png
from dsrg.resize import aligned_corner_indices
from dsrg.voc import IGNORE_LABEL


def sample_labels_on_grid(labels, grid_height, grid_width):
    """An H×W label map sampled at the h×w grid cells by aligned-corners nearest sampling."""
    labels = np.asarray(labels)
    rows = aligned_corner_indices(labels.shape[0], grid_height)
    cols = aligned_corner_indices(labels.shape[1], grid_width)
    return labels[np.ix_(rows, cols)]


def labels_to_seed_masks(label_map, num_classes, unlabelled=IGNORE_LABEL, source=None):
    """A h×w seed label map (`unlabelled` = no seed) as a boolean C×h×w seed map."""
    label_map = np.asarray(label_map)
    seeded = label_map != unlabelled
    values = label_map[seeded]
    if values.size and (values.min() < 0 or values.max() >= num_classes):
        raise ValueError(f"{source or 'seed map'}: seed label {int(values.max())} outside 0..{num_classes - 1} "
                         f"(or {unlabelled} = no seed)")
    masks = np.zeros((num_classes,) + label_map.shape, dtype=bool)
    rows, cols = np.nonzero(seeded)
    masks[values.astype(np.int64), rows, cols] = True
    return masks


def load_seed_map(path, num_classes):
    """Grown seeds from a file: .npy C×h×w (non-zero = seeded) or h×w label map; .png label map.

    Label maps use 255 for "no seed". Returns a boolean C×h×w array.
    """
    path = Path(path)
    if path.suffix.lower() == ".png":
        return labels_to_seed_masks(read_label_png(path), num_classes, source=path)
    if path.suffix.lower() != ".npy":
        raise ValueError(f"{path}: unknown seed file type; expected <id>.npy (C×h×w or h×w) or <id>.png")
    array = np.load(path, allow_pickle=False)
    if array.ndim == 3:
        if array.shape[0] != num_classes:
            raise ValueError(f"{path}: seed map has {array.shape[0]} channels, expected {num_classes} (C×h×w)")
        return array != 0
    if array.ndim == 2:
        return labels_to_seed_masks(array, num_classes, source=path)
    raise ValueError(f"{path}: seed map must be C×h×w or h×w, got shape {array.shape}")


def read_ground_truth(path):
    """A ground-truth label PNG as an H×W uint8 array; a missing file is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ground truth is missing (expected a label PNG)")
    return read_label_png(path)


def find_seed_file(seed_dir, image_name):
    """The grown-seed file of an image in `seed_dir`: <id>.npy, else <id>.png."""
    for suffix in (".npy", ".png"):
        candidate = Path(seed_dir) / f"{image_name}{suffix}"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{seed_dir}: no grown seeds for image id {image_name} "
                            f"(expected {image_name}.npy or {image_name}.png)")


def cue_seed_masks(cue_mapping, cue_index, num_classes, grid_size, source="cue file"):
    """Boolean C×g×g seeds of one image of an official cue mapping."""
    _, cue_rows = image_cue_entry(cue_mapping, cue_index, num_classes, source)
    try:
        return dense_cues(cue_rows, num_classes, grid_size, grid_size) > 0
    except ValueError as error:
        raise ValueError(f"{source}: image {cue_index} ({grid_size}×{grid_size} grid): {error}") from None


class SeedQuality:
    """Accumulates seed statistics over images; see the module doc for the definitions."""

    def __init__(self, num_classes, ignore_label=IGNORE_LABEL):
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        # rows: GT class of the cell, columns: class of the seed, one count per (cell, class) seed
        self.seed_confusion = ConfusionMatrix(num_classes, ignore_label)
        self.gt_cells = np.zeros(num_classes, dtype=np.int64)
        self.seeded_cells_per_class = np.zeros(num_classes, dtype=np.int64)
        self.valid_cells = 0
        self.seeded_cells = 0
        self.correct_cells = 0
        self.conflict_cells = 0
        self.images = 0

    def add(self, seeds, gt_grid, source=None):
        """Count one image: `seeds` boolean C×h×w, `gt_grid` h×w labels already on the seed grid."""
        seeds = np.asarray(seeds, dtype=bool)
        gt_grid = np.asarray(gt_grid)
        where = f"{source}: " if source is not None else ""
        if seeds.ndim != 3 or seeds.shape[0] != self.num_classes or seeds.shape[1:] != gt_grid.shape:
            raise ValueError(f"{where}seeds must be {self.num_classes}×{gt_grid.shape[0]}×{gt_grid.shape[1]} "
                             f"to match the ground truth grid, got {seeds.shape}")
        valid = gt_grid != self.ignore_label
        gt_valid = gt_grid[valid].astype(np.int64)
        if gt_valid.size and gt_valid.max() >= self.num_classes:
            raise ValueError(f"{where}ground-truth label {int(gt_valid.max())} outside 0..{self.num_classes - 1}")
        seeds_valid = seeds[:, valid]  # C × N
        seed_classes, cell_indices = np.nonzero(seeds_valid)
        self.seed_confusion.add(seed_classes, gt_valid[cell_indices], source=source)
        self.gt_cells += np.bincount(gt_valid, minlength=self.num_classes)
        self.seeded_cells_per_class += seeds_valid.sum(axis=1)
        classes_per_cell = seeds_valid.sum(axis=0)
        self.valid_cells += int(valid.sum())
        self.seeded_cells += int((classes_per_cell > 0).sum())
        self.conflict_cells += int((classes_per_cell > 1).sum())
        self.correct_cells += int(seeds_valid[gt_valid, np.arange(gt_valid.size)].sum())
        self.images += 1
        return self

    def precision(self):
        return self.seed_confusion.precision()

    def recall(self):
        return safe_divide(self.seed_confusion.true_positives, self.gt_cells.astype(np.float64))

    def foreground_precision(self):
        """Foreground seeds on a cell of their own GT class / all foreground seeds (NaN without any)."""
        matrix = self.seed_confusion.matrix
        seeds = matrix[:, 1:].sum()
        return float((np.trace(matrix) - matrix[0, 0]) / seeds) if seeds else float("nan")

    def summary(self, class_names=None):
        """A JSON-ready dict: overall, foreground and per-class figures (percent)."""
        names = resolve_class_names(class_names, self.num_classes)
        confusion = self.seed_confusion
        seeds_total = confusion.matrix.sum()
        correct_seeds = np.trace(confusion.matrix)
        fg_correct = np.trace(confusion.matrix) - confusion.matrix[0, 0]
        fg_gt_cells = self.gt_cells[1:].sum()
        precision, recall = self.precision(), self.recall()
        valid = max(self.valid_cells, 1)
        return {
            "images": self.images,
            "valid_cells": int(self.valid_cells),
            "seeds": int(seeds_total),
            "precision": percent(correct_seeds / seeds_total if seeds_total else np.nan),
            "recall": percent(self.correct_cells / valid if self.valid_cells else np.nan),
            "coverage": percent(self.seeded_cells / valid if self.valid_cells else np.nan),
            "conflict": percent(self.conflict_cells / valid if self.valid_cells else np.nan),
            "mean_class_precision": percent(nanmean(precision)),
            "mean_class_recall": percent(nanmean(recall)),
            "foreground": {
                "precision": percent(self.foreground_precision()),
                "recall": percent(fg_correct / fg_gt_cells if fg_gt_cells else np.nan),
                "density": percent(self.seeded_cells_per_class[1:].sum() / valid if self.valid_cells else np.nan),
            },
            "per_class": [
                {
                    "class": index,
                    "name": names[index],
                    "seeds": int(self.seeded_cells_per_class[index]),
                    "precision": percent(precision[index]),
                    "recall": percent(recall[index]),
                    "density": percent(self.seeded_cells_per_class[index] / valid if self.valid_cells else np.nan),
                    "gt_cells": int(self.gt_cells[index]),
                }
                for index in range(self.num_classes)
            ],
            "seed_confusion": confusion.matrix.tolist(),
        }


def format_seed_table(summary, title="seeds"):
    """A readable per-class table and the overall figures, one line each."""
    width = max(12, max(len(row["name"]) for row in summary["per_class"]) + 2)
    lines = [f"{title}: {summary['images']} images, {summary['valid_cells']} valid cells, {summary['seeds']} seeds",
             f"{'class':<{width}}{'prec':>8}{'recall':>8}{'density':>9}{'seeds':>10}{'GT cells':>10}"]
    for row in summary["per_class"]:
        lines.append(f"{row['name']:<{width}}{format_score(row['precision'])}{format_score(row['recall'])}"
                     f"{format_score(row['density'], 9)}{row['seeds']:>10d}{row['gt_cells']:>10d}")
    fg = summary["foreground"]
    lines.append(f"foreground: precision {format_score(fg['precision']).strip()}  "
                 f"recall {format_score(fg['recall']).strip()}  density {format_score(fg['density']).strip()}")
    lines.append(f"overall: precision {format_score(summary['precision']).strip()}  "
                 f"recall {format_score(summary['recall']).strip()}  "
                 f"coverage {format_score(summary['coverage']).strip()}  "
                 f"conflict {format_score(summary['conflict']).strip()}")
    return "\n".join(lines)


def format_seed_markdown(summaries):
    """Markdown tables for {title: summary}: one overall table and one per-class table (percent)."""
    titles = list(summaries)
    lines = ["| seeds | images | precision | recall | coverage | conflict | fg precision | fg recall |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for title in titles:
        summary = summaries[title]
        fg = summary["foreground"]
        lines.append(f"| {title} | {summary['images']} | {_md(summary['precision'])} | {_md(summary['recall'])} | "
                     f"{_md(summary['coverage'])} | {_md(summary['conflict'])} | {_md(fg['precision'])} | "
                     f"{_md(fg['recall'])} |")
    lines += ["", "| class | " + " | ".join(f"{title} precision | {title} recall | {title} density" for title in titles)
              + " |", "|---|" + "---:|---:|---:|" * len(titles)]
    first = summaries[titles[0]]["per_class"]
    for position, row in enumerate(first):
        cells = []
        for title in titles:
            entry = summaries[title]["per_class"][position]
            cells += [_md(entry["precision"]), _md(entry["recall"]), _md(entry["density"])]
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _md(value):
    return "–" if value is None else f"{value:.1f}"
