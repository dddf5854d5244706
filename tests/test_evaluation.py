"""ConfusionMatrix scores on hand-made examples and tools/evaluate.py end to end."""
import json
from pathlib import Path

import numpy as np
import pytest

from caffe_helpers import load_tool
from dsrg.evaluation import ConfusionMatrix, format_table
from dsrg.fileio import atomic_save_label_png

REPO = Path(__file__).resolve().parents[1]
evaluate_tool = load_tool("evaluate")

# ground truth / prediction of six pixels, the last one ignored:
#   gt 0 -> pred 0, gt 0 -> pred 1, gt 1 -> pred 1 (twice), gt 2 -> pred 0, gt 255 -> pred 2
GT = np.array([[0, 0, 1], [1, 2, 255]], dtype=np.uint8)
PRED = np.array([[0, 1, 1], [1, 0, 2]], dtype=np.uint8)


def test_hand_example_matrix_and_scores():
    matrix = ConfusionMatrix(3).add(PRED, GT)
    np.testing.assert_array_equal(matrix.matrix, [[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    # IoU_0 = 1 / (2 + 2 - 1), IoU_1 = 2 / (2 + 3 - 2), IoU_2 = 0 / (1 + 0 - 0)
    np.testing.assert_allclose(matrix.iou(), [1 / 3, 2 / 3, 0.0])
    assert matrix.miou() == pytest.approx(1 / 3)
    assert matrix.pixel_accuracy() == pytest.approx(3 / 5)
    np.testing.assert_allclose(matrix.class_accuracy(), [0.5, 1.0, 0.0])
    assert matrix.mean_class_accuracy() == pytest.approx(0.5)
    np.testing.assert_allclose(matrix.precision(), [0.5, 2 / 3, np.nan])


def test_nonzero_mode_drops_classes_without_hits():
    matrix = ConfusionMatrix(3).add(PRED, GT)
    assert matrix.miou("nonzero") == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert matrix.miou("standard") == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="unknown mIoU mode"):
        matrix.miou("mean")


def test_class_absent_everywhere_has_no_iou_and_is_left_out():
    matrix = ConfusionMatrix(4).add(PRED, GT)
    assert np.isnan(matrix.iou()[3])
    assert matrix.miou() == pytest.approx(1 / 3)
    summary = matrix.summary()
    assert summary["per_class"][3]["iou"] is None
    assert summary["per_class"][3]["name"] == "bird"
    assert summary["miou"] == pytest.approx(100 / 3, abs=1e-4)


def test_ignore_label_pixels_are_not_counted_even_with_any_prediction():
    gt = np.full((4, 4), 255, dtype=np.uint8)
    gt[0, 0] = 1
    pred = np.full((4, 4), 7, dtype=np.uint8)  # out of range, but only where the GT is ignored
    pred[0, 0] = 1
    matrix = ConfusionMatrix(2).add(pred, gt)
    assert matrix.matrix.sum() == 1 and matrix.matrix[1, 1] == 1


def test_accumulating_images_equals_one_concatenated_image():
    rng = np.random.default_rng(3)
    gts = [rng.integers(0, 5, (7, 9)) for _ in range(3)]
    preds = [rng.integers(0, 5, (7, 9)) for _ in range(3)]
    accumulated = ConfusionMatrix(5)
    for pred, gt in zip(preds, gts):
        accumulated.add(pred, gt)
    whole = ConfusionMatrix(5).add(np.concatenate(preds), np.concatenate(gts))
    np.testing.assert_array_equal(accumulated.matrix, whole.matrix)
    rest = ConfusionMatrix(5).add(np.concatenate(preds[1:]), np.concatenate(gts[1:]))
    merged = ConfusionMatrix(5).add(preds[0], gts[0]).merge(rest)
    np.testing.assert_array_equal(merged.matrix, whole.matrix)


def test_bad_inputs_name_the_source_and_the_values():
    matrix = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=r"a.png: prediction shape \(2, 2\) differs from ground-truth shape \(2, 3\)"):
        matrix.add(np.zeros((2, 2)), np.zeros((2, 3)), source="a.png")
    with pytest.raises(ValueError, match=r"b.png: predicted label 5 outside the expected range 0..2"):
        matrix.add(np.array([5]), np.array([0]), source="b.png")
    with pytest.raises(ValueError, match=r"ground-truth label 4 outside"):
        matrix.add(np.array([0]), np.array([4]))


def test_table_ends_with_the_miou_line():
    table = format_table(ConfusionMatrix(3).add(PRED, GT).summary(["bg", "a", "b"]))
    assert table.splitlines()[-1] == "mIoU: 33.33"
    assert "a" in table and "66.67" in table


def _write_case(root, pred_sizes=None):
    gt_dir, pred_dir = root / "gt", root / "pred"
    atomic_save_label_png(gt_dir / "a.png", GT)
    atomic_save_label_png(pred_dir / "a.png", PRED)
    atomic_save_label_png(gt_dir / "b.png", np.array([[0, 2]], dtype=np.uint8))
    atomic_save_label_png(pred_dir / "b.png", np.array([[0, 2]], dtype=np.uint8))
    (root / "ids.txt").write_text("a\nb\n")
    return gt_dir, pred_dir


def test_tool_with_the_original_flags(tmp_path, capsys):
    gt_dir, pred_dir = _write_case(tmp_path)
    out = tmp_path / "summary.json"
    summary = evaluate_tool.main(["--pred", str(pred_dir), "--gt", str(gt_dir), "--test_ids", str(tmp_path / "ids.txt"),
                                  "--save_path", str(out), "--class_num", "3", "--quiet"])
    # totals: M = [[2,1,0],[0,2,0],[1,0,1]]: IoU = 2/4, 2/3, 1/2
    expected = 100 * (0.5 + 2 / 3 + 0.5) / 3
    assert summary["miou"] == pytest.approx(expected, abs=1e-4)
    saved = json.loads(out.read_text())
    assert saved["miou"] == summary["miou"] and saved["images"] == 2
    assert saved["confusion_matrix"] == [[2, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"mIoU: {expected:.2f}"


def test_tool_nonzero_mode_and_class_file(tmp_path):
    gt_dir, pred_dir = _write_case(tmp_path)
    atomic_save_label_png(pred_dir / "b.png", np.array([[0, 0]], dtype=np.uint8))  # class 2 never hit
    (tmp_path / "classes.txt").write_text("background\nred\nblue\n")
    args = ["--pred", str(pred_dir), "--gt", str(gt_dir), "--ids", str(tmp_path / "ids.txt"),
            "--classes", str(tmp_path / "classes.txt"), "--quiet"]
    standard = evaluate_tool.main(args)
    nonzero = evaluate_tool.main(args + ["--miou-mode", "nonzero"])
    assert standard["per_class"][2]["iou"] == 0.0 and standard["per_class"][2]["name"] == "blue"
    assert nonzero["miou"] == pytest.approx(standard["miou"] * 3 / 2, abs=1e-3)


def test_tool_errors_name_the_file_and_the_sizes(tmp_path):
    gt_dir, pred_dir = _write_case(tmp_path)
    args = ["--pred", str(pred_dir), "--gt", str(gt_dir), "--ids", str(tmp_path / "ids.txt"), "--quiet"]
    atomic_save_label_png(pred_dir / "b.png", np.zeros((3, 2), dtype=np.uint8))
    expected = r"b.png: prediction size 2x3 \(WxH\) differs from the ground truth .*b.png size 2x1"
    with pytest.raises(ValueError, match=expected):
        evaluate_tool.main(args)
    (pred_dir / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"pred/b.png: prediction for image id b is missing"):
        evaluate_tool.main(args)


def test_tool_refuses_an_id_listed_twice(tmp_path):
    gt_dir, pred_dir = _write_case(tmp_path)
    (tmp_path / "ids.txt").write_text("a\nb\na\na\n")
    args = ["--pred", str(pred_dir), "--gt", str(gt_dir), "--ids", str(tmp_path / "ids.txt"), "--quiet"]
    with pytest.raises(ValueError, match=r"ids\.txt: image id a is listed twice \(lines 1 and 3\)"):
        evaluate_tool.main(args)
    assert not list(tmp_path.glob("*.json"))
