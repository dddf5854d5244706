"""Softmax and the SEC/DSRG losses: hand-computed values and float64 central-difference gradients."""
import numpy as np
import pytest

from caffe_helpers import numeric_gradient, random_probs
from dsrg import losses
from dsrg.softmax import MIN_PROB, softmax_backward, softmax_forward


def test_softmax_hand_values():
    scores = np.array([0.0, np.log(3.0)]).reshape(1, 2, 1, 1)
    expected = (np.array([0.25, 0.75]) + 1e-4) / (1.0 + 2e-4)
    np.testing.assert_allclose(softmax_forward(scores).reshape(-1), expected, rtol=1e-12)


def test_softmax_is_shift_invariant_and_floored():
    scores = np.array([1000.0, 0.0, -1000.0]).reshape(1, 3, 1, 1)
    probs = softmax_forward(scores)
    assert np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)
    assert probs.min() == pytest.approx(MIN_PROB / (1 + 3 * MIN_PROB), rel=1e-9)


def test_softmax_gradient_float64():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(2, 4, 3, 2)) * 3
    top_diff = rng.normal(size=scores.shape)
    numeric = numeric_gradient(lambda: float((softmax_forward(scores) * top_diff).sum()), scores)
    np.testing.assert_allclose(softmax_backward(scores, top_diff), numeric, rtol=1e-6, atol=1e-9)


def test_seed_loss_hand_values():
    probs = np.array([[[[0.5, 0.2]], [[0.5, 0.8]]],
                      [[[0.9, 0.4]], [[0.1, 0.6]]]])
    cues = np.array([[[[1, 0]], [[0, 1]]],
                     [[[0, 0]], [[0, 1]]]], dtype=np.float64)
    image0 = -(np.log(0.5) + np.log(0.8)) / 2
    image1 = -np.log(0.6) / 1
    assert losses.seed_loss_forward(probs, cues) == pytest.approx((image0 + image1) / 2, rel=1e-12)


def test_seed_loss_image_without_cues_contributes_zero():
    probs = np.full((2, 2, 1, 1), 0.5)
    cues = np.zeros_like(probs)
    cues[0, 1] = 1
    assert losses.seed_loss_forward(probs, cues) == pytest.approx(-np.log(0.5) / 2, rel=1e-12)
    assert np.all(losses.seed_loss_backward(probs, cues)[1] == 0)


def test_balanced_seed_loss_hand_values():
    # image 0: 1 background seed, 3 foreground seeds; image 1: no background seed (count floored).
    probs = np.array([[[[0.6, 0.2, 0.1]], [[0.3, 0.5, 0.7]], [[0.1, 0.3, 0.2]]],
                      [[[0.2, 0.3, 0.4]], [[0.5, 0.5, 0.5]], [[0.3, 0.2, 0.1]]]])
    cues = np.zeros_like(probs)
    cues[0, 0, 0, 0] = 1
    cues[0, 1, 0, 1] = cues[0, 1, 0, 2] = cues[0, 2, 0, 1] = 1
    cues[1, 2, 0, 0] = 1
    background = (-np.log(0.6) / 1 + 0.0) / 2
    foreground = (-(np.log(0.5) + np.log(0.7) + np.log(0.3)) / 3 - np.log(0.3) / 1) / 2
    assert losses.balanced_seed_loss_forward(probs, cues) == pytest.approx(background + foreground, rel=1e-12)


def test_constrain_loss_hand_values():
    probs = np.array([0.5, 0.3, 0.2]).reshape(1, 3, 1, 1)
    q = np.array([0.7, 0.29, 0.01]).reshape(1, 3, 1, 1)
    # ratios 1.4, 0.9667, 0.05 (0.01/0.2 = 0.05 sits on the lower clip bound)
    expected = 0.7 * np.log(1.4) + 0.29 * np.log(0.29 / 0.3) + 0.01 * np.log(0.05)
    assert losses.constrain_loss_forward(probs, np.log(q)) == pytest.approx(expected, rel=1e-12)


def test_constrain_loss_clips_the_ratio():
    probs = np.array([0.98, 0.01, 0.01]).reshape(1, 3, 1, 1)
    q = np.array([0.01, 0.5, 0.49]).reshape(1, 3, 1, 1)   # ratios 0.0102 (clipped to 0.05), 50, 49 (clipped to 20)
    expected = 0.01 * np.log(0.05) + 0.5 * np.log(20) + 0.49 * np.log(20)
    assert losses.constrain_loss_forward(probs, np.log(q)) == pytest.approx(expected, rel=1e-12)
    grad_probs, grad_log_q = losses.constrain_loss_backward(probs, np.log(q))
    assert np.all(grad_probs == 0)   # every ratio is outside the clip range
    np.testing.assert_allclose(grad_log_q.reshape(-1), q.reshape(-1) * np.log([0.05, 20, 20]), rtol=1e-12)


def test_expand_loss_hand_values():
    # 1 image, 3 classes (background, class 1 present, class 2 absent) on a 1×2 grid.
    probs = np.array([[[[0.6, 0.1]], [[0.3, 0.2]], [[0.1, 0.7]]]])
    labels = np.array([1.0, 1.0, 0.0]).reshape(1, 1, 1, 3)
    q_fg, q_bg = losses.Q_FOREGROUND, losses.Q_BACKGROUND
    pooled_class1 = (0.2 * q_fg + 0.3) / (q_fg + 1)
    pooled_background = (0.1 * q_bg + 0.6) / (q_bg + 1)
    expected = -np.log(pooled_class1) - np.log(1 - 0.7) - np.log(pooled_background)
    assert losses.expand_loss_forward(probs, labels) == pytest.approx(expected, rel=1e-12)


def _check_gradient(loss, gradient, *arrays, wrt=0, rtol=1e-5, atol=1e-8, step=1e-6):
    numeric = numeric_gradient(lambda: loss(*arrays), arrays[wrt], step)
    np.testing.assert_allclose(gradient, numeric, rtol=rtol, atol=atol)


@pytest.fixture
def batch():
    rng = np.random.default_rng(7)
    probs = random_probs(rng, (3, 5, 4, 3))
    cues = (rng.random(probs.shape) < 0.3).astype(np.float64)
    cues[2] = 0           # an image without cues
    cues[1, 0] = 0        # an image without background cues
    return rng, probs, cues


def test_seed_loss_gradient(batch):
    _, probs, cues = batch
    _check_gradient(losses.seed_loss_forward, losses.seed_loss_backward(probs, cues), probs, cues)


def test_balanced_seed_loss_gradient(batch):
    _, probs, cues = batch
    _check_gradient(losses.balanced_seed_loss_forward, losses.balanced_seed_loss_backward(probs, cues), probs, cues)


def test_constrain_loss_gradients(batch):
    rng, probs, _ = batch
    q = random_probs(rng, probs.shape, spread=4.0)
    ratio = q / probs
    # keep every ratio away from the clip bounds, where the loss has a kink
    assert np.all((np.abs(ratio - 0.05) > 1e-4) & (np.abs(ratio - 20) > 1e-3))
    assert np.any(ratio < 0.05) or np.any(ratio > 20)
    log_q = np.log(q)
    grad_probs, grad_log_q = losses.constrain_loss_backward(probs, log_q)
    _check_gradient(losses.constrain_loss_forward, grad_probs, probs, log_q, wrt=0)
    _check_gradient(losses.constrain_loss_forward, grad_log_q, probs, log_q, wrt=1)


@pytest.mark.parametrize("shape", [(2, 4, 3, 5), (1, 21, 6, 6)])
def test_expand_loss_gradient(shape):
    rng = np.random.default_rng(3)
    probs = random_probs(rng, shape)
    labels = np.zeros((shape[0], 1, 1, shape[1]))
    labels[..., 0] = 1
    labels[0, 0, 0, 1:3] = 1
    labels[-1, 0, 0, -1] = 1
    # rank pooling has kinks where two values swap ranks: the step must not cross one
    step = 1e-8
    gaps = np.diff(np.sort(probs.reshape(shape[0], shape[1], -1), axis=2), axis=2)
    assert gaps.min() > 4 * step
    _check_gradient(losses.expand_loss_forward, losses.expand_loss_backward(probs, labels), probs, labels,
                    step=step, rtol=1e-4)


def test_expand_loss_matches_published_41x41_weights():
    """The published layer hard-coded 41×41×20; ours must give the same value for that shape."""
    rng = np.random.default_rng(5)
    probs = random_probs(rng, (2, 21, 41, 41))
    labels = np.zeros((2, 1, 1, 21))
    labels[..., 0] = 1
    labels[0, 0, 0, [3, 15]] = 1
    labels[1, 0, 0, 7] = 1
    weights_fg = np.array([0.996 ** i for i in range(41 * 41 - 1, -1, -1)])
    weights_bg = np.array([0.999 ** i for i in range(41 * 41 - 1, -1, -1)])
    sorted_fg = np.sort(probs[:, 1:].reshape(2, 20, -1), axis=2)
    sorted_bg = np.sort(probs[:, 0].reshape(2, -1), axis=1)
    pooled_fg = (sorted_fg * weights_fg).sum(axis=2) / weights_fg.sum()
    pooled_bg = (sorted_bg * weights_bg).sum(axis=1) / weights_bg.sum()
    present = labels[:, 0, 0, 1:] > 0.5
    maxima = probs[:, 1:].max(axis=(2, 3))
    expected = (-np.mean((present * np.log(pooled_fg)).sum(1) / present.sum(1))
                - np.mean((~present * np.log(1 - maxima)).sum(1) / (~present).sum(1))
                - np.mean(np.log(pooled_bg)))
    assert losses.expand_loss_forward(probs, labels) == pytest.approx(expected, rel=1e-10)


def test_losses_keep_float32():
    rng = np.random.default_rng(2)
    probs = random_probs(rng, (2, 3, 4, 4)).astype(np.float32)
    cues = (rng.random(probs.shape) < 0.3).astype(np.float32)
    assert losses.balanced_seed_loss_backward(probs, cues).dtype == np.float32
    assert all(g.dtype == np.float32 for g in losses.constrain_loss_backward(probs, np.log(probs)))
    labels = np.ones((2, 1, 1, 3), dtype=np.float32)
    assert losses.expand_loss_backward(probs, labels).dtype == np.float32
