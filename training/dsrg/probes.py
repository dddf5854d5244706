"""Linear probes: how much class information a frozen trunk's features carry.

Two probes, both linear and fitted by L-BFGS (scipy) on the features of the training images, both
scored on the val images:

* image probe: global-average-pooled features, one logistic regression per foreground class
  (multi-label; image labels are the classes present in the ground truth). Score: mean average
  precision over the foreground classes that have a val positive. A constant score reaches the
  class's share of positives, so the prior is the reference.

      L(W, b) = mean_n sum_k BCE(x_n · w_k + b_k, y_nk) + (λ / 2) ||W||²

* pixel probe: the feature vector of every cell of the score grid, softmax regression over all
  classes, fitted with the ground truth sampled on that grid (dsrg.seeds.sample_labels_on_grid), ignored
  cells left out. It is fully supervised, so it bounds what a linear head on these frozen features
  can learn from any seeds. Score: mIoU over the val cells (standard mode, dsrg.evaluation).

      L(W, b) = mean_cells CE(softmax(x · W + b), y) + (λ / 2) ||W||²

Features are standardised with the training set's per-channel mean and standard deviation first.
Nothing here knows Caffe: tools/probe_trunk.py extracts the features.
"""
import numpy as np
from scipy.optimize import minimize

from dsrg.evaluation import ConfusionMatrix
from dsrg.voc import IGNORE_LABEL


def image_labels(gt, num_classes, ignore_label=IGNORE_LABEL):
    """0/1 float vector (num_classes,) of the classes present in a label map (the ignore label left out)."""
    gt = np.asarray(gt)
    present = np.unique(gt[gt != ignore_label]).astype(np.int64)
    if present.size and (present.min() < 0 or present.max() >= num_classes):
        raise ValueError(f"label map holds class {int(present.max())}, expected 0..{num_classes - 1} "
                         f"or {ignore_label} = ignore")
    labels = np.zeros(num_classes, dtype=np.float64)
    labels[present] = 1.0
    return labels


def standardise(train, *others):
    """(train, *others) with train's per-column mean removed and divided by its standard deviation."""
    train = np.asarray(train, dtype=np.float64)
    mean = train.mean(axis=0)
    scale = train.std(axis=0)
    scale[scale == 0] = 1.0
    return tuple((np.asarray(array, dtype=np.float64) - mean) / scale for array in (train, *others))


def _split(params, dim, classes):
    weights = params[:dim * classes].reshape(dim, classes)
    return weights, params[dim * classes:]


def multilabel_logistic_loss(params, features, targets, l2):
    """Loss and gradient of the image probe (module doc) at flat params [W (D×K) row-major, b (K)]."""
    count, dim = features.shape
    weights, bias = _split(params, dim, targets.shape[1])
    logits = features @ weights + bias
    # BCE with logits, stable: max(z, 0) - z·y + log(1 + exp(-|z|))
    loss = (np.maximum(logits, 0) - logits * targets + np.log1p(np.exp(-np.abs(logits)))).sum() / count
    loss += 0.5 * l2 * np.sum(weights ** 2)
    residual = (1.0 / (1.0 + np.exp(-logits)) - targets) / count
    grad_w = features.T @ residual + l2 * weights
    return loss, np.concatenate([grad_w.ravel(), residual.sum(axis=0)])


def softmax_loss(params, features, labels, num_classes, l2):
    """Loss and gradient of the pixel probe (module doc); labels int (N,) in 0..num_classes-1."""
    count, dim = features.shape
    weights, bias = _split(params, dim, num_classes)
    logits = features @ weights + bias
    logits -= logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(logits).sum(axis=1))
    loss = (log_norm - logits[np.arange(count), labels]).mean() + 0.5 * l2 * np.sum(weights ** 2)
    residual = np.exp(logits - log_norm[:, None])
    residual[np.arange(count), labels] -= 1.0
    residual /= count
    grad_w = features.T @ residual + l2 * weights
    return loss, np.concatenate([grad_w.ravel(), residual.sum(axis=0)])


def _fit(loss, dim, classes, max_iter):
    start = np.zeros(dim * classes + classes)
    result = minimize(loss, start, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return _split(result.x, dim, classes)


def fit_multilabel_logistic(features, targets, l2=1e-3, max_iter=500):
    """(W (D×K), b (K)) of the image probe, fitted by L-BFGS from zero."""
    features = np.asarray(features, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    return _fit(lambda p: multilabel_logistic_loss(p, features, targets, l2), features.shape[1],
                targets.shape[1], max_iter)


def fit_softmax(features, labels, num_classes, l2=1e-3, max_iter=300):
    """(W (D×C), b (C)) of the pixel probe, fitted by L-BFGS from zero."""
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"pixel labels must lie in 0..{num_classes - 1}, got {int(labels.min())}..{int(labels.max())}")
    return _fit(lambda p: softmax_loss(p, features, labels, num_classes, l2), features.shape[1], num_classes,
                max_iter)


def average_precision(scores, positives):
    """Non-interpolated average precision: the mean precision at the rank of each positive.

    scores, positives: (N,) arrays; NaN when there is no positive. Ties are ranked by input order.
    """
    positives = np.asarray(positives, dtype=bool)
    if not positives.any():
        return float("nan")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    hits = positives[order]
    precision_at_rank = np.cumsum(hits) / np.arange(1, hits.size + 1)
    return float(precision_at_rank[hits].mean())


def image_probe(train_features, train_labels, val_features, val_labels, l2=1e-3, max_iter=500):
    """Fit the image probe on pooled features (N×D) and labels (N×C, column 0 = background, unused).

    Returns {"map": percent, "prior_map": percent, "ap": {class: percent}, "prior_ap": {...}} over
    the foreground classes with at least one val positive and one training positive.
    """
    train_x, val_x = standardise(train_features, val_features)
    train_y = np.asarray(train_labels, dtype=np.float64)[:, 1:]
    val_y = np.asarray(val_labels, dtype=np.float64)[:, 1:]
    weights, bias = fit_multilabel_logistic(train_x, train_y, l2, max_iter)
    scores = val_x @ weights + bias
    ap, prior = {}, {}
    for k in range(train_y.shape[1]):
        if val_y[:, k].any() and train_y[:, k].any():
            ap[k + 1] = 100 * average_precision(scores[:, k], val_y[:, k])
            prior[k + 1] = 100 * float(val_y[:, k].mean())
    return {"map": float(np.mean(list(ap.values()))) if ap else float("nan"),
            "prior_map": float(np.mean(list(prior.values()))) if prior else float("nan"),
            "ap": ap, "prior_ap": prior}


def pixel_probe(train_features, train_grid_labels, val_features, val_grid_labels, num_classes, l2=1e-3,
                max_iter=300, max_train_cells=200_000, seed=0, ignore_label=IGNORE_LABEL):
    """Fit the pixel probe on grid features (N×D×g×g) and grid labels (N×g×g); score it on val.

    At most `max_train_cells` labelled training cells are used (a fixed random subset). Returns
    {"miou": percent, "all_background_miou": percent, "iou": [percent or None per class], "cells": n}.
    """
    def cells(features, labels):
        features = np.asarray(features)
        return (features.transpose(0, 2, 3, 1).reshape(-1, features.shape[1]),
                np.asarray(labels, dtype=np.int64).reshape(-1))

    train_x, train_y = cells(train_features, train_grid_labels)
    val_x, val_y = cells(val_features, val_grid_labels)
    keep = np.flatnonzero(train_y != ignore_label)
    if keep.size > max_train_cells:
        keep = np.sort(np.random.default_rng(seed).choice(keep, max_train_cells, replace=False))
    train_x, val_x = standardise(train_x[keep], val_x)
    weights, bias = fit_softmax(train_x, train_y[keep], num_classes, l2, max_iter)
    prediction = np.argmax(val_x @ weights + bias, axis=1)
    scored = ConfusionMatrix(num_classes, ignore_label).add(prediction, val_y)
    baseline = ConfusionMatrix(num_classes, ignore_label).add(np.zeros_like(val_y), val_y)
    return {"miou": 100 * scored.miou(), "all_background_miou": 100 * baseline.miou(),
            "iou": [None if np.isnan(v) else 100 * float(v) for v in scored.iou()], "cells": int(keep.size)}
