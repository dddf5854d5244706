"""Softmax over channels with the SEC/DSRG probability floor.

p = (softmax(x) + ε) / Σ_c (softmax(x) + ε), ε = 1e-4, over axis 1 of an (N, C, h, w) array,
so that log p stays finite in the losses.
"""
import numpy as np

MIN_PROB = 1e-4


def plain_softmax(scores, axis=1):
    """softmax(x) over `axis` (default: the channels of N×C×h×w; no floor), shifted by the maximum."""
    scores = np.asarray(scores)
    exp = np.exp(scores - scores.max(axis=axis, keepdims=True))
    return exp / exp.sum(axis=axis, keepdims=True)


def floor_probs(plain):
    """(s + ε) / Σ_c (s + ε) from a plain softmax s."""
    probs = plain + MIN_PROB
    return probs / probs.sum(axis=1, keepdims=True)


def softmax_forward(scores):
    """Floored softmax of (N, C, ...) scores over axis 1; keeps the input's float dtype."""
    return floor_probs(plain_softmax(scores))


def softmax_backward(scores, top_diff):
    """Gradient w.r.t. the scores of Σ top_diff · p(scores).

    With s = softmax(x) and S = Σ_c (s_c + ε) = 1 + Cε, ∂L/∂x = s ⊙ (g − Σ_c s_c g_c) / S, g = top_diff
    (the dependence of S on s cancels because Σ_c s_c = 1).
    """
    return softmax_backward_from_plain(plain_softmax(scores), top_diff)


def softmax_backward_from_plain(plain, top_diff):
    """:func:`softmax_backward` given the plain softmax s of the forward pass."""
    total = 1.0 + plain.shape[1] * MIN_PROB
    return plain * (top_diff - (plain * top_diff).sum(axis=1, keepdims=True)) / total
