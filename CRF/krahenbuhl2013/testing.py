"""Inputs and the reference implementation shared by the tests and the benchmark.

``natural_scene`` and ``random_scene`` make reproducible (image, unary) pairs;
``reference_crf`` runs Krähenbühl's own DenseCRF2D through pydensecrf (a test-only
dependency: ``pip install pydensecrf2``) configured exactly as ``krahenbuhl2013.CRF``.
"""
import numpy as np

from . import BILATERAL_SXY, BILATERAL_WEIGHT, GAUSSIAN_SXY, GAUSSIAN_WEIGHT


def _box_blur(array, radius, axis):
    """Mean over a window of 2*radius+1 along axis (edge-padded)."""
    if radius < 1:
        return array
    pad = [(0, 0)] * array.ndim
    pad[axis] = (radius + 1, radius)
    cumulative = np.cumsum(np.pad(array, pad, mode="edge"), axis=axis)
    size = array.shape[axis]
    upper = np.take(cumulative, np.arange(2 * radius + 1, 2 * radius + 1 + size), axis=axis)
    lower = np.take(cumulative, np.arange(0, size), axis=axis)
    return (upper - lower) / (2 * radius + 1)


def natural_scene(height, width, n_labels, rng, peak=4.0):
    """A smooth textured image with objects and a peaked, noisy unary that follows them.

    The image is a colour gradient background with fine texture and n_labels-1 ellipses and
    rectangles of distinct colours (soft edges). The unary is log-probability-like: each
    pixel's true label gets +peak, plus smooth noise so that the CRF has work to do.
    Returns (image H x W x 3 uint8, unary H x W x C float32, labels H x W int).
    """
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    ys /= max(height - 1, 1)
    xs /= max(width - 1, 1)
    image = np.empty((height, width, 3))
    base = rng.uniform(40, 200, size=3)
    slope = rng.uniform(-40, 40, size=(2, 3))
    image[:] = base + ys[..., None] * slope[0] + xs[..., None] * slope[1]
    labels = np.zeros((height, width), dtype=np.int64)
    for label in range(1, n_labels):
        cy, cx = rng.uniform(0.1, 0.9, size=2)
        ry, rx = rng.uniform(0.05, 0.3, size=2)
        if label % 2:
            inside = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1.0
        else:
            inside = (np.abs(ys - cy) <= ry) & (np.abs(xs - cx) <= rx)
        labels[inside] = label
        image[inside] = rng.uniform(0, 255, size=3)
    radius = max(1, min(height, width) // 100)
    image = _box_blur(_box_blur(image, radius, 0), radius, 1)
    image += rng.normal(0.0, 6.0, size=image.shape)  # texture
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)

    noise = rng.normal(0.0, 1.0, size=(height, width, n_labels))
    smooth_radius = max(1, min(height, width) // 20)
    noise = _box_blur(_box_blur(noise, smooth_radius, 0), smooth_radius, 1)
    noise *= 2.5 / max(noise.std(), 1e-12)
    unary = noise + rng.normal(0.0, 0.5, size=noise.shape)
    np.put_along_axis(unary, labels[..., None], np.take_along_axis(unary, labels[..., None], axis=2) + peak, axis=2)
    return image, unary.astype(np.float32), labels


def random_scene(height, width, n_labels, rng):
    """Uniform random image and unary in [0, 1) (probability-like scores): the hard case."""
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    unary = rng.random((height, width, n_labels), dtype=np.float32)
    return image, unary


def probabilities(unary):
    """Softmax over the last axis (float32): turns log-probability-like scores into probabilities."""
    shifted = np.exp(unary - unary.max(axis=-1, keepdims=True))
    return (shifted / shifted.sum(axis=-1, keepdims=True)).astype(np.float32)


def reference_crf(image, unary, maxiter=10, scale_factor=1.0, color_factor=13):
    """Krähenbühl's DenseCRF2D via pydensecrf, set up as SEC/DSRG's krahenbuhl2013 wrapper.

    Unary energy -unary (C x HW float32), Gaussian term sxy 3/scale_factor compat 3,
    bilateral term sxy 80/scale_factor srgb color_factor compat 10, default DIAG_KERNEL and
    NORMALIZE_SYMMETRIC; returns H x W x C float32 marginals after maxiter iterations.
    """
    import pydensecrf.densecrf as dcrf

    height, width, n_labels = unary.shape
    crf = dcrf.DenseCRF2D(width, height, n_labels)
    energy = -np.asarray(unary, dtype=np.float32).reshape(height * width, n_labels).T
    crf.setUnaryEnergy(np.ascontiguousarray(energy))
    crf.addPairwiseGaussian(sxy=GAUSSIAN_SXY / scale_factor, compat=GAUSSIAN_WEIGHT)
    crf.addPairwiseBilateral(sxy=BILATERAL_SXY / scale_factor, srgb=color_factor,
                             rgbim=np.ascontiguousarray(image, dtype=np.uint8), compat=BILATERAL_WEIGHT)
    q = np.array(crf.inference(maxiter), dtype=np.float32)
    return np.ascontiguousarray(q.T.reshape(height, width, n_labels))
