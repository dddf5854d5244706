"""Localization cues from image labels: CAM foreground + saliency background, in the official format.

Per image, on the g×g cue grid: a background mask (cells the saliency map calls non-salient) and
one foreground mask per labelled class (dsrg.cam's rule on that class's heatmap). Each cell gets at
most one label, with the published precedence (SEC's cue maker, which DSRG's cues follow):
background is written first, then the foreground classes in decreasing order of their mask's area,
each overwriting what was there, so in a conflict the smaller region wins (ties: the lower class
index is written first). The result is an h×w label map (255 = no cue) and the official entry
``"%i_labels"`` (the image's foreground classes) / ``"%i_cues"`` (3×K columns class, row, col).
"""
import numpy as np

from dsrg.voc import IGNORE_LABEL


def cue_label_map(background_mask, foreground_masks):
    """h×w int64 label map (IGNORE_LABEL = no cue) from a bool background mask and {class: bool mask}."""
    background_mask = np.asarray(background_mask, dtype=bool)
    label_map = np.full(background_mask.shape, IGNORE_LABEL, dtype=np.int64)
    label_map[background_mask] = 0
    areas = {label: int(np.count_nonzero(mask)) for label, mask in foreground_masks.items()}
    for label in sorted(areas, key=lambda value: (-areas[value], value)):
        mask = np.asarray(foreground_masks[label], dtype=bool)
        if mask.shape != background_mask.shape:
            raise ValueError(f"foreground mask of class {label} has shape {mask.shape}, the background mask "
                             f"{background_mask.shape}")
        label_map[mask] = label
    return label_map


def cue_columns(label_map):
    """The 3×K int64 (class, row, col) columns of the cued cells of a label map, in row-major order."""
    label_map = np.asarray(label_map)
    rows, cols = np.nonzero(label_map != IGNORE_LABEL)
    return np.stack([label_map[rows, cols], rows, cols]).astype(np.int64).reshape(3, -1)


def cue_entry(image_index, labels, label_map):
    """The official dict entries of one image: {"%i_labels": int64 labels, "%i_cues": 3×K int64}."""
    return {f"{image_index}_labels": np.asarray(labels, dtype=np.int64).reshape(-1),
            f"{image_index}_cues": cue_columns(label_map)}
