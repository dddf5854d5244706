"""Fully connected CRF (Krähenbühl & Koltun 2011) with the call used by SEC and DSRG.

``CRF(image, unary)`` runs mean-field inference in the dense CRF with

* unary energy ``-unary`` (``unary``: H x W x C scores, probabilities or log-probabilities),
* a Gaussian (smoothness) Potts term: spatial std ``3 / scale_factor``, weight 3,
* a bilateral (appearance) Potts term: spatial std ``80 / scale_factor``, colour std
  ``color_factor``, weight 10,

both symmetrically normalised and evaluated with the permutohedral lattice, and returns the
marginals Q (H x W x C float32, each pixel sums to 1). The result equals Krähenbühl's
DenseCRF2D (as wrapped by pydensecrf) configured the same way, up to float rounding.

``CRF_batch`` does the same for N images of one size in parallel native threads with the GIL
released; ``CRF_map`` returns the MAP labelling (argmax of Q).
"""
import numbers
import os

import numpy as np

from ._native import mean_field

__all__ = ["CRF", "CRF_batch", "CRF_map"]

GAUSSIAN_SXY = 3.0
GAUSSIAN_WEIGHT = 3.0
BILATERAL_SXY = 80.0
BILATERAL_WEIGHT = 10.0

# Lattice coordinates must stay exactly representable: feature values (pixel position /
# spatial std, intensity / colour std) above this are refused (the C++ side checks too).
_MAX_FEATURE = 2.0 ** 18
# Pixels are indexed with int32 across the d+1 = 6 lattice vertices of the bilateral term.
_MAX_PIXELS = (2 ** 31 - 1) // 6


def _check_positive_real(name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError("krahenbuhl2013: %s must be a real number > 0, got %r" % (name, value))
    value = float(value)
    if not (np.isfinite(value) and value > 0.0):
        raise ValueError("krahenbuhl2013: %s must be finite and > 0, got %r" % (name, value))
    return value


def _check_maxiter(maxiter):
    if isinstance(maxiter, (bool, np.bool_)) or not isinstance(maxiter, numbers.Integral):
        raise ValueError("krahenbuhl2013: maxiter must be an integer >= 0, got %r" % (maxiter,))
    maxiter = int(maxiter)
    if maxiter < 0 or maxiter > 2 ** 31 - 1:
        raise ValueError("krahenbuhl2013: maxiter must be an integer >= 0, got %d" % maxiter)
    return maxiter


def _check_num_threads(num_threads):
    if num_threads is None:
        return os.cpu_count() or 1
    if isinstance(num_threads, (bool, np.bool_)) or not isinstance(num_threads, numbers.Integral) or num_threads < 1:
        raise ValueError("krahenbuhl2013: num_threads must be None or an integer >= 1, got %r" % (num_threads,))
    return int(min(num_threads, 1024))


def _as_uint8_images(images, ndim, what):
    """images (ndim-dimensional, last axis 3) as C-contiguous uint8, or ValueError."""
    array = np.asarray(images)
    if array.ndim != ndim or array.shape[-1] != 3:
        expected = "H x W x 3" if ndim == 3 else "N x H x W x 3"
        raise ValueError("krahenbuhl2013: %s must be %s, got shape %s" % (what, expected, array.shape))
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if array.dtype.kind not in "buif":
        raise ValueError("krahenbuhl2013: %s must be uint8 (or whole numbers in [0, 255]), got dtype %s"
                         % (what, array.dtype))
    if array.size:
        as_float = array.astype(np.float64)
        if not np.all(np.isfinite(as_float)):
            raise ValueError("krahenbuhl2013: %s must be uint8-convertible, got NaN or Inf values" % what)
        low, high = float(as_float.min()), float(as_float.max())
        if low < 0.0 or high > 255.0:
            raise ValueError("krahenbuhl2013: %s values must lie in [0, 255] to convert to uint8, got range [%g, %g]"
                             % (what, low, high))
        if np.any(as_float != np.round(as_float)):
            raise ValueError("krahenbuhl2013: %s values must be whole numbers to convert to uint8, got fractional "
                             "values (dtype %s)" % (what, array.dtype))
    return np.ascontiguousarray(array, dtype=np.uint8)


def _as_float32_unaries(unaries, ndim, what):
    """unaries (ndim-dimensional) as C-contiguous finite float32, or ValueError."""
    array = np.asarray(unaries)
    if array.ndim != ndim:
        expected = "H x W x C" if ndim == 3 else "N x H x W x C"
        raise ValueError("krahenbuhl2013: %s must be %s (%d dimensions), got shape %s"
                         % (what, expected, ndim, array.shape))
    if array.dtype.kind not in "buif":
        raise ValueError("krahenbuhl2013: %s must be real numbers, got dtype %s" % (what, array.dtype))
    if array.shape[-1] < 1:
        raise ValueError("krahenbuhl2013: %s needs at least 1 label, got shape %s" % (what, array.shape))
    if array.dtype.kind == "f" and array.dtype != np.float32 and array.size:
        if not np.all(np.isfinite(array)):
            raise ValueError("krahenbuhl2013: %s must be finite, got NaN or Inf" % what)
        largest = float(np.abs(array).max())
        if largest > float(np.finfo(np.float32).max):
            raise ValueError("krahenbuhl2013: %s values must fit float32 (|u| <= %g), got |u| up to %g"
                             % (what, np.finfo(np.float32).max, largest))
    converted = np.ascontiguousarray(array, dtype=np.float32)
    if converted.size and not np.all(np.isfinite(converted)):
        raise ValueError("krahenbuhl2013: %s must be finite, got NaN or Inf" % what)
    return converted


def _check_geometry(images, unaries, scale_factor, color_factor):
    height, width = images.shape[-3], images.shape[-2]
    if unaries.shape[-3:-1] != images.shape[-3:-1]:
        raise ValueError("krahenbuhl2013: image is %d x %d but unary is %d x %d (H x W must match)"
                         % (height, width, unaries.shape[-3], unaries.shape[-2]))
    if height < 1 or width < 1:
        raise ValueError("krahenbuhl2013: image must be at least 1 x 1, got %d x %d" % (height, width))
    if height * width > _MAX_PIXELS:
        raise ValueError("krahenbuhl2013: image has %d pixels, at most %d supported" % (height * width, _MAX_PIXELS))
    largest_feature = max(max(height, width) * scale_factor / min(GAUSSIAN_SXY, BILATERAL_SXY),
                          255.0 / color_factor)
    if largest_feature > _MAX_FEATURE:
        raise ValueError("krahenbuhl2013: kernel features up to %g exceed the lattice range %g: image %d x %d with "
                         "scale_factor %g and color_factor %g (expected position * scale_factor / 3 and "
                         "255 / color_factor <= %g)" % (largest_feature, _MAX_FEATURE, height, width, scale_factor,
                                                        color_factor, _MAX_FEATURE))


def _run(images, unaries, maxiter, scale_factor, color_factor, num_threads):
    q = np.empty(unaries.shape, dtype=np.float32)
    if q.shape[0]:
        mean_field(images, unaries, q, maxiter, GAUSSIAN_SXY / scale_factor, GAUSSIAN_WEIGHT,
                   BILATERAL_SXY / scale_factor, color_factor, BILATERAL_WEIGHT, num_threads)
    return q


def _check_options(maxiter, scale_factor, color_factor, num_threads):
    """The validated (maxiter, scale_factor, color_factor, num_threads) of a CRF call."""
    return (_check_maxiter(maxiter), _check_positive_real("scale_factor", scale_factor),
            _check_positive_real("color_factor", color_factor), _check_num_threads(num_threads))


def CRF(image, unary, maxiter=10, scale_factor=1.0, color_factor=13, num_threads=None):
    """Dense-CRF marginals of one image.

    image: H x W x 3 uint8 (or whole numbers in [0, 255]); unary: H x W x C scores, energy
    = -unary (float64, non-contiguous inputs are converted). maxiter: mean-field iterations
    (0 gives softmax(unary)). scale_factor divides both spatial stds (3 and 80 pixels),
    color_factor is the colour std. num_threads: threads used inside this image (None = all
    cores; small images use one). Returns H x W x C float32 Q. Raises ValueError on bad input.
    """
    maxiter, scale_factor, color_factor, num_threads = _check_options(
        maxiter, scale_factor, color_factor, num_threads)
    image = _as_uint8_images(image, 3, "image")
    unary = _as_float32_unaries(unary, 3, "unary")
    _check_geometry(image, unary, scale_factor, color_factor)
    return _run(image[np.newaxis], unary[np.newaxis], maxiter, scale_factor, color_factor, num_threads)[0]


def CRF_batch(images, unaries, maxiter=10, scale_factor=1.0, color_factor=13, num_threads=None):
    """Dense-CRF marginals of N same-size images, computed in parallel native threads.

    images: N x H x W x 3, unaries: N x H x W x C; otherwise as CRF. Equal to stacking
    CRF(images[i], unaries[i]). num_threads: None = os.cpu_count(). Returns N x H x W x C float32.
    """
    maxiter, scale_factor, color_factor, num_threads = _check_options(
        maxiter, scale_factor, color_factor, num_threads)
    images = _as_uint8_images(images, 4, "images")
    unaries = _as_float32_unaries(unaries, 4, "unaries")
    if images.shape[0] != unaries.shape[0]:
        raise ValueError("krahenbuhl2013: %d images but %d unaries (batch sizes must match)"
                         % (images.shape[0], unaries.shape[0]))
    _check_geometry(images, unaries, scale_factor, color_factor)
    return _run(images, unaries, maxiter, scale_factor, color_factor, num_threads)


def CRF_map(image, unary, maxiter=10, scale_factor=1.0, color_factor=13, num_threads=None):
    """MAP labelling of one image: H x W int64 argmax over labels of CRF(...)."""
    return np.argmax(CRF(image, unary, maxiter, scale_factor, color_factor, num_threads), axis=2)
