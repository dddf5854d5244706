"""Aligned-corners resizing: bilinear (CRF refinement, multi-scale inference, CAM heatmaps) and nearest
sampling (ground truth, cues and seeds on a score grid).

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


def aligned_corner_indices(source_size, grid_size):
    """Source index of each of `grid_size` positions, aligned-corners nearest sampling (round half up).

    Position j reads source index round(j·(source_size − 1)/(grid_size − 1)); a grid of one position
    reads index 0. Cell j of a 21×21 cue grid, for example, takes cell 2j of the 41×41 one.
    """
    if grid_size == 1:
        return np.zeros(1, dtype=np.int64)
    positions = np.arange(grid_size, dtype=np.float64) * (source_size - 1) / (grid_size - 1)
    return np.floor(positions + 0.5).astype(np.int64)


def bilinear_resize(images, height, width, dtype=None):
    """Aligned-corners bilinear resize of the last two axes of `images` (N×K×H×W or C×H×W) to
    height×width, the arithmetic in float64.

    `dtype` is the precision of the values in and out: None resizes the values as given and returns the
    float64 result (the CRF's images); np.float32 first rounds the input to float32 and returns float32
    (network inputs, score maps and CAM heatmaps, at the network's precision).
    """
    images = np.asarray(images, dtype=dtype)
    if images.ndim not in (3, 4):
        raise ValueError(f"bilinear_resize: expected an N×K×H×W or C×H×W array, got shape {images.shape}")
    if height < 1 or width < 1:
        raise ValueError(f"bilinear_resize: output size must be positive, got {height}×{width}")
    top, bottom, row_weight = _aligned_corner_taps(images.shape[-2], height)
    left, right, col_weight = _aligned_corner_taps(images.shape[-1], width)
    row_weight, col_weight = row_weight[:, None], col_weight[None, :]

    def corner(rows, cols):
        return images[..., rows[:, None], cols[None, :]].astype(np.float64)

    upper = corner(top, left) * (1.0 - col_weight) + corner(top, right) * col_weight
    lower = corner(bottom, left) * (1.0 - col_weight) + corner(bottom, right) * col_weight
    resized = upper * (1.0 - row_weight) + lower * row_weight
    return resized if dtype is None else resized.astype(dtype)
