"""SEC / DSRG losses with analytic gradients (numpy, any float dtype).

Shapes: probs P (N, C, h, w) (softmax output, floored at 1e-4); cues (N, C, h, w) 0/1 seed maps;
image labels (N, 1, 1, C) or (N, C) with [0] = background. Every ``*_forward`` returns the scalar
loss, every ``*_backward`` the gradient of that loss (multiply by the top diff for loss_weight).
"""
import numpy as np

COUNT_FLOOR = 1e-4
Q_FOREGROUND = 0.996
Q_BACKGROUND = 0.999
CLIP_LOW, CLIP_HIGH = 0.05, 20.0


# ---- seeding loss (SEC Eq. 2; DSRG Eq. 3) -------------------------------------------------------

def seed_loss_forward(probs, cues):
    """L = mean_n [ −Σ_{c,u} S·log P / Σ_{c,u} S ].

    An image without any cue contributes 0 (the published layer would give NaN there).
    """
    count = np.maximum(cues.sum(axis=(1, 2, 3)), COUNT_FLOOR)
    return float(np.mean(-(cues * np.log(probs)).sum(axis=(1, 2, 3)) / count))


def seed_loss_backward(probs, cues):
    count = np.maximum(cues.sum(axis=(1, 2, 3), keepdims=True), COUNT_FLOOR)
    return -cues / (probs * count * probs.shape[0])


def balanced_seed_loss_forward(probs, cues):
    """DSRG's balanced seeding loss: background (channel 0) and foreground (channels 1..C-1) terms
    L = mean_n [ −Σ_u S₀ log P₀ / max(Σ S₀, 1e-4) ] + mean_n [ −Σ_{c≥1,u} S log P / max(Σ S_{c≥1}, 1e-4) ].
    """
    log_probs = np.log(probs)
    background_count = np.maximum(cues[:, 0].sum(axis=(1, 2)), COUNT_FLOOR)
    foreground_count = np.maximum(cues[:, 1:].sum(axis=(1, 2, 3)), COUNT_FLOOR)
    background = -(cues[:, 0] * log_probs[:, 0]).sum(axis=(1, 2)) / background_count
    foreground = -(cues[:, 1:] * log_probs[:, 1:]).sum(axis=(1, 2, 3)) / foreground_count
    return float(np.mean(background) + np.mean(foreground))


def balanced_seed_loss_backward(probs, cues):
    num_images = probs.shape[0]
    background_count = np.maximum(cues[:, :1].sum(axis=(1, 2, 3), keepdims=True), COUNT_FLOOR)
    foreground_count = np.maximum(cues[:, 1:].sum(axis=(1, 2, 3), keepdims=True), COUNT_FLOOR)
    count = np.concatenate([np.broadcast_to(background_count, (num_images, 1, 1, 1)),
                            np.broadcast_to(foreground_count, (num_images, probs.shape[1] - 1, 1, 1))], axis=1)
    return -cues / (probs * count * num_images)


# ---- constrain-to-boundary loss (SEC Eq. 4) -----------------------------------------------------

def constrain_loss_terms(probs, log_q):
    """Loss and gradients (L, dL/dP, dL/dlog_q) of the constrain-to-boundary loss in one pass.

    L = mean_{n,u} Σ_c Q·log(clip(Q/P, 0.05, 20)), Q = exp(log_q) (the CRF output). The clip passes
    gradient only where 0.05 ≤ Q/P ≤ 20 (Theano's rule), so dL/dP = −[inside]·Q/P / M and
    dL/dlog_q = Q·(log clip(Q/P) + [inside]) / M, M = N·h·w.
    """
    q = np.exp(log_q)
    ratio = q / probs
    clipped = np.clip(ratio, CLIP_LOW, CLIP_HIGH)
    log_clipped = np.log(clipped)
    loss = float(np.mean((q * log_clipped).sum(axis=1)))
    inside = clipped == ratio
    scale = 1.0 / (probs.shape[0] * probs.shape[2] * probs.shape[3])
    grad_probs = np.where(inside, ratio, 0) * -scale
    grad_log_q = q * (log_clipped + inside) * scale
    return loss, grad_probs.astype(probs.dtype, copy=False), grad_log_q.astype(log_q.dtype, copy=False)


def constrain_loss_forward(probs, log_q):
    return constrain_loss_terms(probs, log_q)[0]


def constrain_loss_backward(probs, log_q):
    """Gradients (dL/dP, dL/dlog_q), see :func:`constrain_loss_terms`."""
    return constrain_loss_terms(probs, log_q)[1:]


# ---- expansion loss: global weighted rank pooling (SEC Eq. 3) ------------------------------------

def _rank_weights(count, decay, dtype):
    """Weights q^(K-1-i) for ascending ranks i = 0..K-1 (the largest value gets weight 1), and their sum."""
    weights = decay ** np.arange(count - 1, -1, -1, dtype=np.float64)
    return weights.astype(dtype), float(weights.sum())


def _weighted_rank_pool(values, decay, order=None):
    """Pool (M, K) rows: Σ_i sorted_i·w_i / Z with ascending sort (by `order` when given), returns (M,)."""
    weights, total = _rank_weights(values.shape[1], decay, values.dtype)
    ranked = np.sort(values, axis=1) if order is None else np.take_along_axis(values, order, axis=1)
    return ranked @ weights / total


def _pool_gradient(pooled_grad, order, decay, dtype):
    weights, total = _rank_weights(order.shape[1], decay, dtype)
    grad = np.empty(order.shape, dtype=dtype)
    np.put_along_axis(grad, order, pooled_grad[:, None] * (weights / total)[None, :], axis=1)
    return grad


def _image_class_flags(labels, num_images, num_classes):
    labels = np.asarray(labels).reshape(num_images, -1)
    if labels.shape[1] != num_classes:
        raise ValueError(f"image labels must have C = {num_classes} entries per image, got {labels.shape[1]}")
    return labels[:, 1:] > 0.5


def expand_loss_forward(probs, labels):
    """SEC's expansion loss with global weighted rank pooling, for any C and h×w.

    For present foreground classes: −mean_n Σ_c log G_c / #present, G_c pooled with q_fg = 0.996;
    for absent classes: −mean_n Σ_c log(1 − max_u P_c) / #absent; background: −mean_n log G_0 with
    q_bg = 0.999. An empty class set contributes 0.
    """
    num_images, num_classes, height, width = probs.shape
    present = _image_class_flags(labels, num_images, num_classes)
    flat = probs.reshape(num_images, num_classes, height * width)
    foreground_pooled = _weighted_rank_pool(flat[:, 1:].reshape(-1, height * width), Q_FOREGROUND)
    foreground_pooled = foreground_pooled.reshape(num_images, num_classes - 1)
    background_pooled = _weighted_rank_pool(flat[:, 0], Q_BACKGROUND)
    foreground_max = flat[:, 1:].max(axis=2)
    present_count = np.maximum(present.sum(axis=1), 1)
    absent_count = np.maximum((~present).sum(axis=1), 1)
    loss_present = -np.mean((present * np.log(foreground_pooled)).sum(axis=1) / present_count)
    loss_absent = -np.mean((~present * np.log(1.0 - foreground_max)).sum(axis=1) / absent_count)
    loss_background = -np.mean(np.log(background_pooled))
    return float(loss_present + loss_absent + loss_background)


def expand_loss_backward(probs, labels):
    """Gradient of :func:`expand_loss_forward`; the max passes its gradient to every tied maximum (as Theano)."""
    num_images, num_classes, height, width = probs.shape
    present = _image_class_flags(labels, num_images, num_classes)
    flat = probs.reshape(num_images, num_classes, height * width)
    foreground_rows = flat[:, 1:].reshape(-1, height * width)
    foreground_order = np.argsort(foreground_rows, axis=1)
    background_order = np.argsort(flat[:, 0], axis=1)
    foreground_pooled = _weighted_rank_pool(foreground_rows, Q_FOREGROUND, foreground_order)
    background_pooled = _weighted_rank_pool(flat[:, 0], Q_BACKGROUND, background_order)
    present_count = np.maximum(present.sum(axis=1, keepdims=True), 1)
    absent_count = np.maximum((~present).sum(axis=1, keepdims=True), 1)

    pooled_grad = -(present / present_count).reshape(-1) / (foreground_pooled * num_images)
    grad_foreground = _pool_gradient(pooled_grad, foreground_order, Q_FOREGROUND, probs.dtype)
    grad_foreground = grad_foreground.reshape(num_images, num_classes - 1, height * width)

    foreground_max = flat[:, 1:].max(axis=2, keepdims=True)
    max_grad = (~present / absent_count)[:, :, None] / ((1.0 - foreground_max) * num_images)
    grad_foreground = grad_foreground + (flat[:, 1:] == foreground_max) * max_grad

    background_grad = -1.0 / (background_pooled * num_images)
    grad_background = _pool_gradient(background_grad, background_order, Q_BACKGROUND, probs.dtype)

    grad = np.concatenate([grad_background[:, None], grad_foreground], axis=1)
    return grad.reshape(probs.shape).astype(probs.dtype, copy=False)
