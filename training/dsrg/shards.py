"""Shards of an image list and the check that a sharded output folder is complete.

A shard is written K/N: N shards numbered 0 to N-1 (0-based), shard K taking every N-th id of the list
starting with the K-th (ids[K::N], round robin, so that each shard gets a like mix of the list's images
wherever their sizes cluster). The N shards together take every id exactly once, and which shard takes an
id depends only on its position in the list, so the shards of one call need no coordination: each writes
its own images into the shared output folder (atomically, skipping finished ones, as one process would).

:func:`output_problems` is the merge check run after the shards have finished: every id has its label
map, the PNG decodes and has its image's size (and, with probabilities, its .npy loads). Whether the
folder's outputs were made with the same settings is the caller's half (tools/infer.py --check-complete
compares the folder's settings record with its own).
"""
import argparse
import re
from pathlib import Path

import numpy as np

from dsrg.fileio import open_image, read_label_png

SHARD = re.compile(r"(\d+)/(\d+)")


def parse_shard(text):
    """'K/N' -> (K, N), 0 ≤ K < N; otherwise an argparse usage error saying what is expected."""
    match = SHARD.fullmatch(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"expected K/N (shard K of N, 0-based: 0/2 and 1/2), got {text!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or index >= count:
        raise argparse.ArgumentTypeError(f"shard {text!r}: expected 0 ≤ K < N (shards are numbered 0 to N-1)")
    return index, count


def shard_ids(ids, index, count):
    """Shard `index` of `count` of the list `ids`: every count-th id, starting at position `index`."""
    if not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: expected 0 ≤ K < N")
    return list(ids[index::count])


def format_shard(shard):
    return f"{shard[0]}/{shard[1]}"


def output_problems(out, ids, images=None, image_ext=".jpg", probs_dir=None):
    """One line per id whose output in `out` is missing or broken: <id>.png must exist, decode as a
    palette or grey label map, and (with `images`) have the size of <images>/<id><image_ext>; with
    `probs_dir`, <id>.npy must exist and load as a C×H×W array of that size too."""
    out = Path(out)
    problems = []
    for name in ids:
        path = out / f"{name}.png"
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        try:
            label = read_label_png(path)
        except (OSError, ValueError) as error:
            problems.append(f"{path}: does not decode ({error})")
            continue
        size = None
        if images is not None:
            try:
                with open_image(Path(images) / f"{name}{image_ext}") as image:
                    size = image.size[::-1]
            except (OSError, ValueError) as error:
                problems.append(f"{path}: its image cannot be read to check the size ({error})")
                continue
            if label.shape != size:
                problems.append(f"{path}: {label.shape[1]}×{label.shape[0]} pixels, its image "
                                f"{size[1]}×{size[0]}")
                continue
        if probs_dir is not None:
            problems.extend(_probs_problems(Path(probs_dir) / f"{name}.npy", label.shape))
    return problems


def _probs_problems(path, shape):
    if not path.is_file():
        return [f"{path}: missing"]
    try:
        probs = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as error:
        return [f"{path}: does not load ({error})"]
    if probs.ndim != 3 or probs.shape[1:] != shape:
        return [f"{path}: shape {probs.shape}, expected C×{shape[0]}×{shape[1]}"]
    return []
