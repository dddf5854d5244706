"""Class activation maps (CAM, Zhou et al. 2016) and SEC's foreground localisation rule.

A CAM net ends in features F (K×h×w, the last convolution after its ReLU), global average pooling
and a linear classifier W (C'×K, no bias) over the C' foreground classes. The heatmap of class c is
that classifier row applied at every cell, before the pooling:

    M_c(i, j) = Σ_k W[c, k] · F[k, i, j]

so that the class score is the average of M_c over the cells. SEC (Kolesnikov & Lampert 2016)
takes as the foreground cue of a labelled class c the cells where M_c > θ · max(M_c), θ = 0.2.
Heatmaps are computed on the net's grid and resampled to the cue grid by aligned-corners bilinear
interpolation (dsrg.resize) before the threshold.

The rule assumes a positive maximum, which a trained net gives its labelled classes (their score,
the heatmap's mean, is positive once the sigmoid says "present"). An undertrained bias-free
classifier can leave every cell of a labelled class negative; SEC's rule then selects nothing. The
option ``rule="range"`` thresholds relative to the heatmap's range instead, M_c > min + θ·(max − min),
which equals SEC's rule for a heatmap whose minimum is 0.
"""
import numpy as np

from dsrg.resize import bilinear_resize

FOREGROUND_THRESHOLD = 0.2
FOREGROUND_RULES = ("max", "range")


def class_heatmaps(features, classifier_weights):
    """Heatmaps C'×h×w (float32) of features K×h×w under classifier weights C'×K (rows = classes)."""
    features = np.asarray(features, dtype=np.float64)
    weights = np.asarray(classifier_weights, dtype=np.float64)
    if features.ndim != 3:
        raise ValueError(f"CAM features must be K×h×w, got shape {features.shape}")
    if weights.ndim != 2 or weights.shape[1] != features.shape[0]:
        raise ValueError(f"CAM classifier weights must be C'×K with K = {features.shape[0]} feature channels, "
                         f"got shape {weights.shape}")
    return np.tensordot(weights, features, axes=([1], [0])).astype(np.float32)


def heatmaps_on_grid(heatmaps, size):
    """Heatmaps C'×h×w resampled to C'×size×size (aligned-corners bilinear; unchanged at equal size)."""
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    if heatmaps.shape[-2:] == (size, size):
        return heatmaps
    return bilinear_resize(heatmaps, size, size, dtype=np.float32)


def foreground_mask(heatmap, threshold=FOREGROUND_THRESHOLD, rule="max"):
    """Foreground cells of one heatmap h×w. rule "max" (SEC's): above `threshold` × its maximum (none
    when the maximum is ≤ 0); rule "range": above min + `threshold` × (max − min) (none when flat)."""
    heatmap = np.asarray(heatmap)
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"foreground threshold must lie in [0, 1), got {threshold}")
    if rule not in FOREGROUND_RULES:
        raise ValueError(f"foreground rule must be one of {FOREGROUND_RULES}, got {rule!r}")
    peak, low = float(heatmap.max()), float(heatmap.min())
    if not np.isfinite(peak) or not np.isfinite(low):
        raise ValueError(f"heatmap has non-finite values (min {low}, max {peak})")
    if rule == "range":
        return heatmap > low + threshold * (peak - low) if peak > low else np.zeros(heatmap.shape, dtype=bool)
    if peak <= 0.0:
        return np.zeros(heatmap.shape, dtype=bool)
    return heatmap > threshold * peak


def foreground_masks(heatmaps, labels, threshold=FOREGROUND_THRESHOLD, rule="max"):
    """{class: h×w bool mask} for each labelled class c (1..C'), from heatmaps C'×h×w (row c-1 = class c)."""
    heatmaps = np.asarray(heatmaps)
    masks = {}
    for label in np.asarray(labels, dtype=np.int64).reshape(-1).tolist():
        if not 1 <= label <= heatmaps.shape[0]:
            raise ValueError(f"label {label} has no heatmap: the CAM net has {heatmaps.shape[0]} foreground "
                             f"classes (labels 1..{heatmaps.shape[0]})")
        masks[label] = foreground_mask(heatmaps[label - 1], threshold, rule)
    return masks
