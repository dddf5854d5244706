"""Multi-scale inference core: numpy only, knows nothing of Caffe.

A segmentation network is seen through a `forward` callable that maps one preprocessed image
(1×3×h×w, mean-subtracted BGR float32) to its class scores (C×h'×w'). Prediction runs the network
at several input sizes, resizes the score maps to the image (bilinear, aligned corners) and fuses
them: by default as the release's test-ms.py and test-ms-f.py do (scores summed, one softmax), or by averaging
per-scale probabilities. It optionally refines the result with a dense CRF on log-probabilities
and restricts the labelling to a set of allowed classes (the image-level labels plus background).
"""
import numpy as np

from dsrg.resize import bilinear_resize
from dsrg.softmax import plain_softmax
from dsrg.voc import MEAN_BGR

SCALE_MODES = ("warp", "relative")
# The scales of each mode when none are given: the stage-1 model on square warps, the final model
# relative to the image size (the release's test-ms.py).
DEFAULT_SCALES = {"warp": (241, 321, 401), "relative": (0.75, 1, 1.25)}
FUSE_MODES = ("probs", "scores")
# Probabilities are clamped below at this value before the logarithm handed to the CRF.
PROB_FLOOR = 1e-5


def preprocess(image_rgb, out_h, out_w, mean_bgr=MEAN_BGR):
    """H×W×3 uint8 RGB image -> 1×3×out_h×out_w float32 network input (BGR, mean subtracted)."""
    image = np.asarray(image_rgb)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"preprocess: expected an H×W×3 RGB image, got shape {image.shape}")
    bgr = image[:, :, ::-1].astype(np.float32).transpose(2, 0, 1)
    resized = bilinear_resize(bgr, out_h, out_w, dtype=np.float32)
    resized -= np.asarray(mean_bgr, dtype=np.float32)[:, None, None]
    return resized[None]


def input_sizes(image_h, image_w, scales, mode):
    """The network input sizes (h, w) for an image.

    mode 'warp': every scale is a side length; the image is warped to scale×scale (stage 1 tools,
    default 241, 321, 401). mode 'relative': every scale multiplies the image size (final model,
    default 0.75, 1, 1.25).
    """
    if mode not in SCALE_MODES:
        raise ValueError(f"input_sizes: scale mode must be one of {SCALE_MODES}, got {mode!r}")
    if not scales:
        raise ValueError("input_sizes: at least one scale is needed")
    sizes = []
    for scale in scales:
        if scale <= 0:
            raise ValueError(f"input_sizes: scales must be positive, got {scale}")
        if mode == "warp":
            if float(scale) != int(scale):
                raise ValueError(f"input_sizes: warp scales are side lengths in pixels, got {scale}")
            sizes.append((int(scale), int(scale)))
        else:
            sizes.append((max(1, int(round(image_h * scale))), max(1, int(round(image_w * scale)))))
    return sizes


def fuse_scales(score_maps, out_h, out_w, fuse="scores"):
    """Fuse per-scale score maps (each C×h×w, raw network scores) into C×out_h×out_w probabilities.

    fuse 'probs': the softmax of each scale is resized to the image and the results averaged.
    fuse 'scores': the raw scores are resized and summed, then one softmax is taken (what the
    published test script does). Probabilities are floored at PROB_FLOOR and renormalised.
    """
    if fuse not in FUSE_MODES:
        raise ValueError(f"fuse_scales: fuse must be one of {FUSE_MODES}, got {fuse!r}")
    if not score_maps:
        raise ValueError("fuse_scales: no score maps given")
    channels = {np.shape(scores)[0] for scores in score_maps}
    if len(channels) != 1:
        raise ValueError(f"fuse_scales: score maps disagree on the number of classes: {sorted(channels)}")
    total = None
    for scores in score_maps:
        scores = np.asarray(scores, dtype=np.float32)
        resized = bilinear_resize(plain_softmax(scores, axis=0) if fuse == "probs" else scores, out_h, out_w,
                                  dtype=np.float32)
        total = resized if total is None else total + resized
    probs = total / len(score_maps) if fuse == "probs" else plain_softmax(total, axis=0)
    probs = np.maximum(probs, PROB_FLOOR)
    return (probs / probs.sum(axis=0, keepdims=True)).astype(np.float32)


def restricted_argmax(probs, allowed_classes=None):
    """Per-pixel best class of C×H×W `probs`, chosen only among `allowed_classes` when given."""
    probs = np.asarray(probs)
    if allowed_classes is None:
        return probs.argmax(axis=0).astype(np.uint8)
    allowed = np.unique(np.asarray(allowed_classes, dtype=np.int64))
    if allowed.size == 0 or allowed.min() < 0 or allowed.max() >= probs.shape[0]:
        raise ValueError(
            f"restricted_argmax: allowed classes must lie in [0, {probs.shape[0] - 1}], got {allowed.tolist()}")
    return allowed[probs[allowed].argmax(axis=0)].astype(np.uint8)


def predict(forward, image_rgb, scales, scale_mode, fuse="scores", crf=None,
            allowed_classes=None, mean_bgr=MEAN_BGR):
    """Multi-scale prediction of one image.

    forward: callable, 1×3×h×w float32 input -> C×h'×w' raw scores.
    image_rgb: H×W×3 uint8.
    crf: None, or a callable (image H×W×3 uint8, unary H×W×C log-probabilities) -> H×W×C
        marginals, e.g. `functools.partial(krahenbuhl2013.CRF, scale_factor=1.0)`.
    allowed_classes: None, or the classes the labelling may use (image labels + background).
    Returns (label map H×W uint8, probabilities C×H×W float32 — after the CRF when one is used).
    """
    image = np.asarray(image_rgb)
    if image.dtype != np.uint8:
        raise ValueError(f"predict: expected a uint8 image, got {image.dtype}")
    image_h, image_w = image.shape[:2]
    score_maps = []
    for in_h, in_w in input_sizes(image_h, image_w, scales, scale_mode):
        scores = np.asarray(forward(preprocess(image, in_h, in_w, mean_bgr)))
        if scores.ndim != 3:
            raise ValueError(f"predict: the network must return C×h×w scores, got shape {scores.shape}")
        score_maps.append(scores)
    probs = fuse_scales(score_maps, image_h, image_w, fuse)
    if crf is not None:
        marginals = crf(np.ascontiguousarray(image), np.log(probs).transpose(1, 2, 0).copy())
        marginals = np.asarray(marginals, dtype=np.float32)
        if marginals.shape != (image_h, image_w, probs.shape[0]):
            raise ValueError(
                f"predict: the CRF returned shape {marginals.shape}, expected {(image_h, image_w, probs.shape[0])}")
        probs = marginals.transpose(2, 0, 1)
    return restricted_argmax(probs, allowed_classes), np.ascontiguousarray(probs)


def dense_crf(scale_factor=1.0):
    """predict's `crf`: our krahenbuhl2013.CRF (CRF/) at `scale_factor` (1: the test-time setting)."""
    import functools

    import krahenbuhl2013

    return functools.partial(krahenbuhl2013.CRF, scale_factor=scale_factor)
