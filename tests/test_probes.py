"""Linear probes (dsrg.probes, tools/probe_trunk.py): hand examples, float64 gradient checks, separable
data fitted exactly, and the tool on a few shared photos with a random trunk."""
import json

import numpy as np
import pytest

from caffe_helpers import REPO_ROOT, SHARED_VOC12, load_tool, numeric_gradient
from dsrg.probes import (average_precision, image_labels, image_probe, multilabel_logistic_loss,
                         pixel_probe, softmax_loss, standardise)


def test_image_labels_leave_out_the_ignore_label_and_refuse_unknown_classes():
    gt = np.array([[0, 0, 255], [3, 3, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(image_labels(gt, 5), [1, 0, 0, 1, 0])
    with pytest.raises(ValueError, match=r"class 7, expected 0\.\.4"):
        image_labels(np.array([[7]]), 5)


def test_average_precision_hand_example():
    # positives at ranks 1 and 3: precisions 1/1 and 2/3
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision([0.1, 0.9], [1, 0]) == pytest.approx(0.5)
    assert np.isnan(average_precision([0.3, 0.2], [0, 0]))


def test_standardise_uses_the_training_statistics():
    train = np.array([[1.0, 5.0], [3.0, 5.0]])
    scaled_train, scaled_other = standardise(train, np.array([[5.0, 6.0]]))
    np.testing.assert_allclose(scaled_train, [[-1, 0], [1, 0]])
    np.testing.assert_allclose(scaled_other, [[3, 1]])


def test_multilabel_logistic_gradient_float64():
    rng = np.random.default_rng(0)
    features, targets = rng.normal(size=(7, 4)), (rng.random((7, 3)) > 0.5).astype(np.float64)
    params = rng.normal(size=4 * 3 + 3)
    _, analytic = multilabel_logistic_loss(params, features, targets, 0.1)
    numeric = numeric_gradient(lambda: multilabel_logistic_loss(params, features, targets, 0.1)[0], params)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_softmax_gradient_float64():
    rng = np.random.default_rng(1)
    features, labels = rng.normal(size=(9, 4)), rng.integers(0, 5, size=9)
    params = rng.normal(size=4 * 5 + 5)
    _, analytic = softmax_loss(params, features, labels, 5, 0.1)
    numeric = numeric_gradient(lambda: softmax_loss(params, features, labels, 5, 0.1)[0], params)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def separable_grids(rng, count, classes=3, grid=4, dim=6):
    """Grid features whose channel c is high exactly where the label is c, plus noise."""
    labels = rng.integers(0, classes, size=(count, grid, grid))
    features = rng.normal(scale=0.1, size=(count, dim, grid, grid))
    for c in range(classes):
        features[:, c] += 3.0 * (labels == c)
    return features, labels


def test_pixel_probe_fits_separable_cells_and_reports_the_background_baseline():
    rng = np.random.default_rng(2)
    train_x, train_y = separable_grids(rng, 12)
    val_x, val_y = separable_grids(rng, 5)
    val_y[0, 0, 0] = 255  # ignored
    result = pixel_probe(train_x, train_y, val_x, val_y, num_classes=3, l2=1e-4)
    assert result["miou"] == pytest.approx(100.0)
    background = val_y[val_y != 255] == 0
    assert result["all_background_miou"] == pytest.approx(100 * background.mean() / 3)
    assert result["cells"] == 12 * 16
    assert pixel_probe(train_x, train_y, val_x, val_y, 3, max_train_cells=40)["cells"] == 40


def test_image_probe_ranks_informative_features_first_and_reports_the_prior():
    rng = np.random.default_rng(3)
    labels = np.zeros((40, 4))
    labels[:, 0] = 1
    labels[:, 1:] = rng.random((40, 3)) > 0.5
    features = np.concatenate([labels[:, 1:] * 2.0, rng.normal(size=(40, 5))], axis=1)
    features += rng.normal(scale=0.1, size=features.shape)
    result = image_probe(features[:30], labels[:30], features[30:], labels[30:], l2=1e-3)
    assert result["map"] == pytest.approx(100.0)
    assert result["prior_map"] == pytest.approx(100 * labels[30:, 1:].mean(axis=0).mean())
    assert sorted(result["ap"]) == [1, 2, 3]


def test_probe_trunk_tool_on_shared_photos_with_a_random_trunk(tmp_path, capsys):
    if not (SHARED_VOC12 / "JPEGImages").is_dir():
        pytest.skip("../shared/data/voc12/JPEGImages is absent")
    tool = load_tool("probe_trunk")
    lists = SHARED_VOC12 / "lists"
    argv = ["--deploy", str(REPO_ROOT / "experiment" / "voc12-vgg16" / "deploy.prototxt"), "--random-trunk",
            "--images", str(SHARED_VOC12 / "JPEGImages"), "--gt", str(SHARED_VOC12 / "SegmentationClassAug"),
            "--train-ids", str(lists / "train_aug_photos_id.txt"), "--val-ids", str(lists / "val_photos_id.txt"),
            "--train-limit", "8", "--val-limit", "4", "--size", "65", "--blobs", "pool3,pool5a",
            "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "probe.json"),
            "--markdown", str(tmp_path / "probe.md"), "--no-progress"]
    assert tool.main(argv) == 0
    result = json.loads((tmp_path / "probe.json").read_text())
    assert [(row["trunk"], row["blob"], row["grid"]) for row in result["rows"]] == [
        ("random", "pool3", 9), ("random", "pool5a", 9)]
    for row in result["rows"]:
        assert 0 <= row["pixel"]["miou"] <= 100 and 0 <= row["image"]["map"] <= 100
        assert row["image"]["prior_map"] > 0
    table = (tmp_path / "probe.md").read_text()
    assert "| random | pool5a |" in table and "| reference |" in table
    cached = sorted(path.name for path in (tmp_path / "cache").iterdir())
    assert "random_train_pool3.npy" in cached and "random_val.json" in cached
    capsys.readouterr()
    assert tool.main(argv) == 0
    assert "nothing to do" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no blob 'conv9'"):
        tool.main(argv[:-9] + ["--blobs", "conv9", "--cache-dir", str(tmp_path / "other"),
                               "--out", str(tmp_path / "other.json"), "--no-progress"])
