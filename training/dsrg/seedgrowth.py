"""Seed growth over training, DSRG's central quantity: how much of the seed grid the grown seeds of a
batch cover, and, with ground truth, how many of them are right.

Grown seeds are a batch N×C×h×w (a value > 0.5 is a seed; class 0 is the background). Per batch:

  seed_bg_density   = grid cells carrying a background seed / grid cells
  seed_fg_density   = grid cells carrying a foreground seed (any class 1..C-1) / grid cells
  seed_bg_precision = background seeds on GT-background cells / background seeds
  seed_fg_precision = foreground seeds on a cell of their own GT class / foreground seeds

The densities count every cell of the batch; the precisions follow dsrg.seeds (the ground truth
sampled onto the seed grid by aligned-corners nearest sampling, GT-255 cells skipped) and are NaN
when the batch has no seed of the group on a valid cell. All four are fractions (0..1).
"""
from pathlib import Path

import numpy as np

from dsrg.seeds import SeedQuality, read_ground_truth, sample_labels_on_grid

DENSITY_COLUMNS = ("seed_bg_density", "seed_fg_density")
PRECISION_COLUMNS = ("seed_bg_precision", "seed_fg_precision")
SEED_COLUMN_PREFIX = "seed_"


def seed_batch(grown_seeds):
    """The grown seeds as a boolean N×C×h×w array; any other shape is an error naming it."""
    seeds = np.asarray(grown_seeds)
    if seeds.ndim != 4 or seeds.shape[1] < 2:
        raise ValueError(f"grown seeds must be N×C×h×w with C >= 2 (background and a class), got shape {seeds.shape}")
    return seeds > 0.5


def seed_densities(grown_seeds):
    """{seed_bg_density, seed_fg_density} of a batch of grown seeds (fractions of its grid cells)."""
    seeds = seed_batch(grown_seeds)
    return {"seed_bg_density": float(seeds[:, 0].mean()),
            "seed_fg_density": float(seeds[:, 1:].any(axis=1).mean())}


def seed_precisions(grown_seeds, image_ids, gt_dir, gt_cache=None):
    """{seed_bg_precision, seed_fg_precision} of a batch of grown seeds against ground truth.

    grown_seeds: N×C×h×w in the frame of the original images (a mirrored image's seeds flipped
    back); image_ids: the N ids, whose ground truth is gt_dir/<id>.png; gt_cache: an optional dict
    kept between calls, {(id, h, w): GT on the grid}, so that each PNG is read once per run.
    """
    seeds = seed_batch(grown_seeds)
    image_ids = list(image_ids)
    if len(image_ids) != seeds.shape[0]:
        raise ValueError(f"{len(image_ids)} image ids for a batch of {seeds.shape[0]} grown seed maps")
    height, width = seeds.shape[2:]
    quality = SeedQuality(seeds.shape[1])
    cache = {} if gt_cache is None else gt_cache
    for image_seeds, name in zip(seeds, image_ids):
        key = (name, height, width)
        if key not in cache:
            cache[key] = sample_labels_on_grid(read_ground_truth(Path(gt_dir) / f"{name}.png"), height, width)
        quality.add(image_seeds, cache[key], source=f"grown seeds of {name}")
    return {"seed_bg_precision": float(quality.precision()[0]),
            "seed_fg_precision": quality.foreground_precision()}
