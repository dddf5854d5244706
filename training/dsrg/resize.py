"""Bilinear resizing with aligned corners, shared by the CRF refinement and multi-scale inference.

Corner samples map onto corner samples: target position t reads source position
t·(in − 1)/(out − 1), the convention of the deeplab Interp layer and of ``scipy.ndimage.zoom``
(order 1). A side of length 1 is broadcast.
"""
import numpy as np


def _aligned_corner_taps(source_size, target_size):
    """For each target position: lower and upper source index and the weight of the upper one."""
    if target_size == 1 or source_size == 1:
        positions = np.zeros(target_size)
    else:
        positions = np.arange(target_size) * ((source_size - 1) / (target_size - 1))
    lower = np.minimum(np.floor(positions).astype(np.int64), source_size - 1)
    upper = np.minimum(lower + 1, source_size - 1)
    return lower, upper, positions - lower


def bilinear_resize(images, height, width):
    """Aligned-corners bilinear resize of (N, K, H, W) to (N, K, height, width), float64 arithmetic."""
    top, bottom, row_weight = _aligned_corner_taps(images.shape[2], height)
    left, right, col_weight = _aligned_corner_taps(images.shape[3], width)
    row_weight, col_weight = row_weight[:, None], col_weight[None, :]

    def corner(rows, cols):
        return images[:, :, rows[:, None], cols[None, :]].astype(np.float64)

    upper = corner(top, left) * (1.0 - col_weight) + corner(top, right) * col_weight
    lower = corner(bottom, left) * (1.0 - col_weight) + corner(bottom, right) * col_weight
    return upper * (1.0 - row_weight) + lower * row_weight
