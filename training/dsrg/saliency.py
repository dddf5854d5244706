"""Saliency maps for the background cues: built-in methods that need no trained weights, saliency PNGs.

DSRG takes its background cues from DRFI saliency: a cue cell is background where the saliency,
normalised to [0, 1] per image, is below 0.06. DRFI needs a trained regressor that is not available
here, so this module offers detectors without learned weights and a reader for user-supplied maps:

  - ``mbplus`` (the default): MB+ of Zhang et al., "Minimum Barrier Salient Object Detection at 80
    FPS", ICCV 2015. The minimum barrier distance (MBD) of every pixel to the image border, per Lab
    channel (median-filtered, 5×5), summed over channels; plus the border-contrast "backgroundness"
    map (whitened RGB distance to each of the four 10 % border strips, the four maps summed minus
    their maximum); times a centre prior; then morphological smoothing (opening then closing by
    reconstruction, square width max(3, ⌊50·√mean⌋)) and a sigmoid contrast stretch (slope 10).
    The MBD is approximated by directional sweeps (top→bottom, left→right, bottom→top,
    right→left, repeated `passes` times), each a numpy loop over rows or columns vectorised along
    the other axis, instead of the paper's two-neighbour raster scan. Like the raster scan, every
    value is the barrier of a real path to the border, so an upper bound on the exact MBD; with
    three rounds it equals the exact MBD on 99.98 % of the pixels of random 10×10 test images.
  - ``rbd``: robust background detection of Zhu et al., "Saliency Optimization from Robust
    Background Detection", CVPR 2014, on SLIC superpixels (about one per 600 pixels of the original
    photo): boundary connectivity from geodesic Lab distances (border superpixels linked to each
    other, edge weights clipped by the mean nearest-neighbour distance), background probability
    1 − exp(−BndCon²/2), background-weighted contrast (spatial σ 0.4, Otsu-cleaned) as foreground
    weight, and the least-squares optimisation of their equation 9 (background weight ×5, very
    confident background fixed at 1000, smoothness σ 10 over two-ring neighbours, μ = 0.1).
  - ``border``: a trivial geometric baseline, saliency = distance to the nearest image edge.

Every method works on a copy of the photo whose longer side is at most `max_side` pixels (area
resampling; 200 by default: the MB+ paper works at 300, and 200 gives the same background
precision at equal coverage on the VOC photos for 2.3× less CPU time, see docs/cues.md), resizes its
map back to the photo's size (bilinear) and returns it min-max normalised per image, like DRFI's
maps that the 0.06 rule was set on.

On the cue grid a cell's saliency is the mean over the pixels nearest to its aligned-corners centre
(pixel row i belongs to grid row round(i·(g−1)/(H−1))), the same centres at which
:func:`dsrg.seeds.sample_labels_on_grid` samples the ground truth: an area average, so a cell is
called background only when its whole neighbourhood is non-salient, not just its centre pixel.
"""
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy import ndimage
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra
from skimage.color import rgb2lab
from skimage.filters import threshold_otsu
from skimage.filters.rank import median
from skimage.morphology import reconstruction
from skimage.segmentation import slic

from dsrg.resize import aligned_corner_indices

SALIENCY_METHODS = ("mbplus", "rbd", "border")
DEFAULT_BACKGROUND_THRESHOLD = 0.06
WORK_MAX_SIDE = 200


def compute_saliency(rgb, method=SALIENCY_METHODS[0], max_side=WORK_MAX_SIDE):
    """Saliency of an H×W×3 uint8 RGB photo: float32 H×W in [0, 1], min-max normalised per image."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"saliency: expected an H×W×3 uint8 RGB image, got shape {rgb.shape} dtype {rgb.dtype}")
    if method not in SALIENCY_METHODS:
        raise ValueError(f"saliency: unknown method {method!r}; expected one of {', '.join(SALIENCY_METHODS)}")
    height, width = rgb.shape[:2]
    if min(height, width) < 3:
        raise ValueError(f"saliency: the image must be at least 3×3 pixels, got {height}×{width}")
    work = _downscale(rgb, max_side)
    if method == "mbplus":
        saliency = mbplus_saliency(work)
    elif method == "rbd":
        saliency = rbd_saliency(work, segments=max(16, round(height * width / 600)))
    else:
        saliency = border_distance_saliency(work.shape[:2])
    return normalise_min_max(_resize_float(saliency, height, width))


def normalise_min_max(values):
    """`values` mapped linearly onto [0, 1] (float32); a constant map becomes all zeros."""
    values = np.asarray(values, dtype=np.float64)
    low, high = values.min(), values.max()
    if high - low <= 1e-12:
        return np.zeros(values.shape, dtype=np.float32)
    return ((values - low) / (high - low)).astype(np.float32)


def _downscale(rgb, max_side):
    height, width = rgb.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1:
        return rgb
    size = (max(3, round(width * scale)), max(3, round(height * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.BOX), dtype=np.uint8)


def _resize_float(values, height, width):
    if values.shape == (height, width):
        return values
    image = Image.fromarray(np.asarray(values, dtype=np.float32), mode="F")
    return np.asarray(image.resize((width, height), Image.BILINEAR), dtype=np.float32)


# ----------------------------------------------------------------------------------------------
# MB+ (Zhang et al. 2015)

def median_filter_8bit(channels, size=5):
    """Per-channel size×size median of H×W×C values in 0..255, quantised to 8 bits (as OpenCV's Lab)."""
    levels = np.clip(np.round(channels), 0, 255).astype(np.uint8)
    footprint = np.ones((size, size), dtype=bool)
    return np.stack([median(levels[..., k], footprint) for k in range(levels.shape[2])], axis=2)


def minimum_barrier_distance(features, passes=3):
    """Approximate minimum barrier distance of every pixel to the image border, per channel.

    `features`: H×W×C. The border pixels are the seeds (distance 0). A path's barrier is the
    highest minus the lowest value along it; each sweep lets every pixel take the path of its
    predecessor in the sweep direction when that lowers its barrier, keeping the running maximum
    and minimum of the chosen path. Distances only decrease from sweep to sweep, and each is the
    barrier of a real path to the border. Returns H×W×C float32.
    """
    features = np.asarray(features, dtype=np.float32)
    distance = np.full(features.shape, np.inf, dtype=np.float32)
    distance[0], distance[-1], distance[:, 0], distance[:, -1] = 0, 0, 0, 0
    upper, lower = features.copy(), features.copy()
    directions = (lambda a: a, lambda a: a.transpose(1, 0, 2), lambda a: a[::-1], lambda a: a.transpose(1, 0, 2)[::-1])
    for _ in range(passes):
        for view in directions:
            _sweep(view(features), view(distance), view(upper), view(lower))
    return distance


def _sweep(features, distance, upper, lower):
    """One sweep along axis 0 of (views of) the MBD state, in place; preallocated row buffers."""
    path_upper, path_lower, barrier = (np.empty(features.shape[1:], np.float32) for _ in range(3))
    better = np.empty(features.shape[1:], bool)
    for row in range(1, features.shape[0] - 1):
        value = features[row]
        np.maximum(upper[row - 1], value, out=path_upper)
        np.minimum(lower[row - 1], value, out=path_lower)
        np.subtract(path_upper, path_lower, out=barrier)
        np.less(barrier, distance[row], out=better)
        np.copyto(distance[row], barrier, where=better)
        np.copyto(upper[row], path_upper, where=better)
        np.copyto(lower[row], path_lower, where=better)


def border_contrast_map(rgb, margin_ratio=0.1, covariance_regulariser=50.0):
    """MB+'s backgroundness map: whitened L1 colour distance to each border strip, summed minus the max."""
    image = np.asarray(rgb, dtype=np.float64)
    height, width = image.shape[:2]
    rows, cols = max(1, round(margin_ratio * height)), max(1, round(margin_ratio * width))
    pixels = image.reshape(-1, 3)
    strips = (image[:rows], image[-rows:], image[:, :cols], image[:, -cols:])
    maps = []
    for strip in strips:
        samples = strip.reshape(-1, 3)
        covariance = np.cov(samples, rowvar=False) + covariance_regulariser * np.eye(3)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        whitening = eigenvectors / np.sqrt(eigenvalues)
        whitened = np.einsum("nk,kj->nj", pixels - samples.mean(axis=0), whitening)  # no BLAS threads
        maps.append(normalise_min_max(np.abs(whitened).sum(axis=1)))
    maps = np.stack(maps, axis=1)
    return normalise_min_max(maps.sum(axis=1) - maps.max(axis=1)).reshape(height, width)


def centre_prior(height, width):
    """1 at the image centre, 0 at the corners: 1 − distance in half-size units / √2."""
    rows = (np.arange(height) + 0.5) / height - 0.5
    cols = (np.arange(width) + 0.5) / width - 0.5
    return 1 - np.sqrt(rows[:, None] ** 2 + cols[None, :] ** 2) / np.sqrt(0.5)


def morphological_smoothing(values, width):
    """Opening by reconstruction followed by closing by reconstruction, square structuring element.

    `values` in [0, 1] are quantised to 8 bits first (as the MB+ code does; it is also 4× faster).
    """
    levels = np.round(np.clip(values, 0, 1) * 255).astype(np.uint8)
    eroded = ndimage.grey_erosion(levels, size=(width, width))
    opened = reconstruction(eroded, levels, method="dilation").astype(np.uint8)
    dilated = ndimage.grey_dilation(opened, size=(width, width))
    closed = 255 - reconstruction(255 - dilated, 255 - opened, method="dilation")
    return closed.astype(np.float64) / 255


def enhance_contrast(values, slope=10.0):
    """MB+'s sigmoid stretch around the midpoint of the means above and below half the maximum."""
    split = 0.5 * values.max()
    high, low = values[values >= split], values[values < split]
    centre = 0.5 * (high.mean() + (low.mean() if low.size else 0.0))
    return 1 / (1 + np.exp(-slope * (values - centre)))


def mbplus_saliency(rgb, passes=3, smooth_alpha=50.0, contrast_slope=10.0):
    """MB+ saliency of an H×W×3 uint8 image at its own size (no resizing), in [0, 1]."""
    lab = rgb2lab(rgb)
    channels = np.stack([lab[..., 0] * 255 / 100, lab[..., 1] + 128, lab[..., 2] + 128], axis=2)
    channels = median_filter_8bit(channels)
    barrier = normalise_min_max(minimum_barrier_distance(channels, passes).sum(axis=2))
    saliency = barrier + border_contrast_map(rgb)
    saliency = normalise_min_max(saliency * centre_prior(*saliency.shape)).astype(np.float64)
    width = max(3, int(np.floor(smooth_alpha * np.sqrt(saliency.mean()))))
    saliency = morphological_smoothing(saliency, width)
    return normalise_min_max(enhance_contrast(saliency, contrast_slope))


# ----------------------------------------------------------------------------------------------
# RBD (Zhu et al. 2014)

def superpixel_graph(labels):
    """Adjacency (bool N×N, 4-neighbour contact) and border superpixel ids of a label image 0..N−1."""
    count = int(labels.max()) + 1
    pairs = [np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()]),
             np.stack([labels[:-1].ravel(), labels[1:].ravel()])]
    pairs = np.concatenate(pairs, axis=1)
    pairs = pairs[:, pairs[0] != pairs[1]]
    adjacency = np.zeros((count, count), dtype=bool)
    adjacency[pairs[0], pairs[1]] = True
    adjacency |= adjacency.T
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return adjacency, border


def boundary_connectivity(colour_distance, adjacency, border, geodesic_sigma=7.0):
    """BndCon = soft boundary length / √soft area, from geodesic distances on the superpixel graph."""
    linked = adjacency.copy()
    linked[np.ix_(border, border)] = True
    np.fill_diagonal(linked, False)
    neighbour_distance = np.where(adjacency, colour_distance, np.inf).min(axis=1)
    clip = float(np.mean(neighbour_distance[np.isfinite(neighbour_distance)])) if adjacency.any() else 0.0
    rows, cols = np.nonzero(linked)
    weights = np.maximum(colour_distance[rows, cols] - clip, 0) + 1e-6  # explicit zeros would drop edges
    geodesic = dijkstra(csr_matrix((weights, (rows, cols)), shape=linked.shape), directed=False)
    similarity = np.exp(-geodesic ** 2 / (2 * geodesic_sigma ** 2))
    return similarity[:, border].sum(axis=1) / np.sqrt(similarity.sum(axis=1))


def rbd_saliency(rgb, segments=300, compactness=10.0, background_lambda=5.0, spatial_sigma=0.4,
                 smooth_sigma=10.0, regulariser=0.1):
    """RBD saliency of an H×W×3 uint8 image at its own size: optimised superpixel scores, about 0..1."""
    height, width = rgb.shape[:2]
    raw = slic(rgb, n_segments=segments, compactness=compactness, start_label=0)
    _, labels = np.unique(raw, return_inverse=True)
    labels = labels.reshape(height, width)
    count = int(labels.max()) + 1
    if count < 2:
        return np.zeros((height, width), dtype=np.float32)
    sizes = np.bincount(labels.ravel(), minlength=count).astype(np.float64)
    lab = rgb2lab(rgb).reshape(-1, 3)
    mean_colour = np.stack([np.bincount(labels.ravel(), lab[:, k], count) for k in range(3)], axis=1) / sizes[:, None]
    grid_rows, grid_cols = np.mgrid[0:height, 0:width]
    mean_position = np.stack([np.bincount(labels.ravel(), grid_rows.ravel() / height, count),
                              np.bincount(labels.ravel(), grid_cols.ravel() / width, count)], axis=1) / sizes[:, None]
    colour_distance = np.linalg.norm(mean_colour[:, None] - mean_colour[None], axis=2)
    position_distance = np.linalg.norm(mean_position[:, None] - mean_position[None], axis=2)
    adjacency, border = superpixel_graph(labels)

    connectivity = boundary_connectivity(colour_distance, adjacency, border)
    background_probability = 1 - np.exp(-connectivity ** 2 / 2)
    contrast = (colour_distance * np.exp(-position_distance ** 2 / (2 * spatial_sigma ** 2))) @ background_probability
    contrast = normalise_min_max(contrast).astype(np.float64)
    if np.ptp(contrast) > 0:
        contrast[contrast < threshold_otsu(contrast)] = 0
    background_weight = background_lambda * background_probability
    background_weight[connectivity > 3] = 1000.0

    two_ring = (adjacency.astype(np.int64) @ adjacency.astype(np.int64) > 0) | adjacency
    two_ring[np.ix_(border, border)] = True
    np.fill_diagonal(two_ring, False)
    smoothness = np.where(two_ring, np.exp(-colour_distance ** 2 / (2 * smooth_sigma ** 2)), 0.0)
    smoothness += regulariser * adjacency
    system = np.diag(smoothness.sum(axis=1) + background_weight + contrast) - smoothness
    scores = np.linalg.solve(system, contrast)
    return scores[labels].astype(np.float32)


# ----------------------------------------------------------------------------------------------
# baseline, file input, grid

def border_distance_saliency(shape):
    """The geometric border prior: distance (pixels) to the nearest image edge."""
    height, width = shape
    rows = np.minimum(np.arange(height), np.arange(height)[::-1])
    cols = np.minimum(np.arange(width), np.arange(width)[::-1])
    return np.minimum(rows[:, None], cols[None, :]).astype(np.float32)


def saliency_levels(saliency):
    """A saliency map in [0, 1] as the 8-bit grey levels of its PNG: round(255·s)."""
    return np.round(np.clip(saliency, 0, 1) * 255).astype(np.uint8)


def read_saliency_png(path):
    """A saliency PNG as float32 H×W in [0, 1]: grey 8- or 16-bit, or the first channel of RGB(A),
    divided by the maximum of its bit depth (255 or 65535); values are not re-normalised per image.

    A missing file is a FileNotFoundError, an undecodable one or an unsupported mode a ValueError,
    both naming the path.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"saliency map not found: {path}")
    try:
        with Image.open(path) as image:
            mode = image.mode
            array = np.asarray(image.convert("RGB") if mode in ("P", "PA") else image)
    except (OSError, UnidentifiedImageError, SyntaxError) as error:
        raise ValueError(f"{path}: cannot read saliency PNG ({error})") from error
    if array.ndim == 3:
        array = array[..., 0]
    if mode == "1":
        return array.astype(np.float32)
    if array.dtype == np.uint8:
        scale = 255.0
    elif mode.startswith("I"):
        scale = 65535.0
    else:
        raise ValueError(f"{path}: unsupported saliency PNG mode {mode} (expected 8-/16-bit grey or RGB)")
    values = array.astype(np.float64) / scale
    if values.size == 0 or values.min() < 0 or values.max() > 1:
        raise ValueError(f"{path}: saliency values must lie in 0..{scale:.0f}")
    return values.astype(np.float32)


def saliency_on_grid(saliency, grid):
    """Area average of an H×W saliency map on a grid×grid cue grid (float32).

    Pixel (i, j) belongs to the cell whose aligned-corners centre is nearest: row
    round(i·(grid−1)/(H−1)), column round(j·(grid−1)/(W−1)) (a one-cell grid takes every pixel).
    A cell that gets no pixel (a map smaller than the grid) takes the pixel at its centre.
    """
    saliency = np.asarray(saliency, dtype=np.float64)
    if saliency.ndim != 2:
        raise ValueError(f"saliency_on_grid: expected an H×W map, got shape {saliency.shape}")
    if grid < 1:
        raise ValueError(f"saliency_on_grid: the grid must have at least one cell, got {grid}")
    height, width = saliency.shape
    row_cells = _nearest_cells(height, grid)
    col_cells = _nearest_cells(width, grid)
    cells = (row_cells[:, None] * grid + col_cells[None, :]).ravel()
    totals = np.bincount(cells, saliency.ravel(), grid * grid)
    counts = np.bincount(cells, minlength=grid * grid)
    centre = saliency[np.ix_(aligned_corner_indices(height, grid), aligned_corner_indices(width, grid))].ravel()
    means = np.where(counts > 0, totals / np.maximum(counts, 1), centre)
    return means.reshape(grid, grid).astype(np.float32)


def _nearest_cells(size, grid):
    if grid == 1 or size == 1:
        return np.zeros(size, dtype=np.int64)
    return np.floor(np.arange(size) * (grid - 1) / (size - 1) + 0.5).astype(np.int64)


def background_cells(saliency_grid, threshold=DEFAULT_BACKGROUND_THRESHOLD):
    """Cells whose saliency is below `threshold` (DSRG's rule: < 0.06 on DRFI maps in [0, 1])."""
    return np.asarray(saliency_grid) < threshold
