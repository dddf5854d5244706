"""dsrg.plots: each picture is a PNG of a sensible size for a normal log, for a single logged row, and
refuses malformed input in one line naming the file; tools/compare_evals.py --all-background --plot."""
import json

import numpy as np
import pytest
from PIL import Image

from caffe_helpers import load_tool
from dsrg.evaluation import all_background_confusion
from dsrg.plots import plot_class_iou, plot_loss_curve, plot_seed_growth

STAGE1_HEADER = ["iteration", "loss-Constrain", "loss-Seed", "seed_bg_density", "seed_bg_precision",
                 "seed_fg_density", "seed_fg_precision"]
STAGE2_HEADER = ["iteration", "accuracy[0]", "accuracy[1]", "accuracy[2]", "loss"]


def stage1_rows(count):
    return [[20 * (k + 1), 0.9 / (k + 1), 3.7 / (k + 1), 0.3 + 0.01 * k, 0.95, 0.1 + 0.02 * k, float("nan") if k == 1
             else 0.7] for k in range(count)]


def stage2_rows(count):
    return [[20 * (k + 1), 0.87 + 0.01 * k, 0.66, 0.51, 0.36 / (k + 1)] for k in range(count)]


def assert_png(path, min_size=(500, 300)):
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= min_size[0] and image.height >= min_size[1]
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 5   # something is drawn
    return pixels


def coloured_pixels(path):
    """How many pixels are clearly coloured (lines and markers, not the black/grey/white frame)."""
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB")).astype(int)
    return int(((rgb.max(axis=2) - rgb.min(axis=2)) > 60).sum())


@pytest.mark.parametrize("header, rows", [(STAGE1_HEADER, stage1_rows(5)), (STAGE2_HEADER, stage2_rows(5))])
def test_loss_curve_of_both_stages(tmp_path, header, rows):
    plot_loss_curve(tmp_path / "curve.png", header, rows, "stage")
    assert_png(tmp_path / "curve.png")


def test_a_single_logged_row_still_shows_its_points(tmp_path):
    plot_loss_curve(tmp_path / "empty.png", STAGE2_HEADER, [], "stage2")
    plot_loss_curve(tmp_path / "one.png", STAGE2_HEADER, stage2_rows(1), "stage2")
    plot_seed_growth(tmp_path / "seeds.png", STAGE1_HEADER, stage1_rows(1))
    assert_png(tmp_path / "one.png")
    assert_png(tmp_path / "seeds.png")
    # the markers of the one row (four outputs, coloured) are on the picture, beyond the legend's
    assert coloured_pixels(tmp_path / "one.png") > coloured_pixels(tmp_path / "empty.png") + 40


def test_seed_growth_of_a_log(tmp_path):
    plot_seed_growth(tmp_path / "seed_growth.png", STAGE1_HEADER, stage1_rows(6))
    assert_png(tmp_path / "seed_growth.png")


@pytest.mark.parametrize("header, rows, message", [
    (["step", "loss"], [[1, 2.0]], "a training log header is 'iteration'"),
    (["iteration"], [], "a training log header is 'iteration' and at least one column"),
    (["iteration", "loss", "loss"], [], "repeats a column name"),
    (["iteration", "loss"], [[20, 1.0, 2.0]], "row 0 has 3 values, the header 2"),
    (["iteration", "loss"], [[20, "x"]], "row 0 is not all numbers"),
    (["iteration", "loss"], [[float("nan"), 1.0]], "non-finite iteration"),
])
def test_malformed_logs_are_refused_naming_the_file(tmp_path, header, rows, message):
    for plot in (lambda path: plot_loss_curve(path, header, rows, "t"), lambda path: plot_seed_growth(path, header, rows)):
        path = tmp_path / "bad.png"
        with pytest.raises(ValueError, match=message) as error:
            plot(path)
        assert str(error.value).startswith(f"{path}: ") and "\n" not in str(error.value)
        assert not path.exists()


def test_seed_growth_needs_seed_columns(tmp_path):
    with pytest.raises(ValueError, match=r"bad\.png: the training log has no seed-growth columns"):
        plot_seed_growth(tmp_path / "bad.png", STAGE2_HEADER, stage2_rows(2))


def evaluation(miou, ious, matrix=None):
    names = ("background", "cat", "dog")
    summary = {"miou": miou, "per_class": [{"name": name, "iou": iou} for name, iou in zip(names, ious)]}
    if matrix is not None:
        summary["confusion_matrix"] = matrix
    return summary


def test_class_iou_bars(tmp_path):
    matrix = [[6, 2, 0], [1, 1, 0], [0, 0, 0]]
    baseline = all_background_confusion(matrix).summary(["background", "cat", "dog"])
    assert baseline["miou"] == pytest.approx(40.0)   # background 8 of 10 pixels, over 2 present classes
    assert [entry["iou"] for entry in baseline["per_class"]] == [80.0, 0.0, None]
    evaluations = {"stage 1": evaluation(40.0, [80.0, 20.5, None]), "stage 2": evaluation(35.0, [70.0, 0.0, None]),
                   "all background": baseline}
    plot_class_iou(tmp_path / "eval_classes.png", evaluations, ["background", "cat", "dog"])
    assert_png(tmp_path / "eval_classes.png")
    plot_class_iou(tmp_path / "one.png", {"only": evaluation(10.0, [10.0, 5.0, 2.0])}, ["bg", "a", "b"])
    assert_png(tmp_path / "one.png")


@pytest.mark.parametrize("evaluations, names, message", [
    ({}, ["bg"], "give at least one evaluation"),
    ({"s": evaluation(1.0, [1.0, 2.0, 3.0])}, [], "no class names"),
    ({"s": evaluation(1.0, [1.0, 2.0])}, ["bg", "a", "b"], "evaluation 's' must be a tools/evaluate.py summary with 3"),
    ({"s": {"miou": 3}}, ["bg", "a", "b"], "evaluation 's' must be a tools/evaluate.py summary"),
    ({"s": evaluation(1.0, [1.0, "x", 2.0])}, ["bg", "a", "b"], "not a number: 'x'"),
])
def test_malformed_evaluations_are_refused_naming_the_file(tmp_path, evaluations, names, message):
    path = tmp_path / "bad.png"
    with pytest.raises(ValueError, match=message) as error:
        plot_class_iou(path, evaluations, names)
    assert str(error.value).startswith(f"{path}: ") and not path.exists()


def test_compare_evals_adds_the_all_background_column_and_draws_the_bars(tmp_path, capsys):
    compare = load_tool("compare_evals")
    matrix = [[6, 2, 0], [1, 1, 0], [0, 0, 0]]
    first, second = tmp_path / "s1.json", tmp_path / "s2.json"
    for path, miou, ious in ((first, 40.0, [80.0, 20.5, None]), (second, 35.25, [70.0, 0.0, None])):
        summary = evaluation(miou, ious, matrix)
        for entry, pixels in zip(summary["per_class"], (8, 2, 0)):
            entry["gt_pixels"] = pixels
        path.write_text(json.dumps(summary))
    assert compare.main(["--eval", f"stage 1={first}", "--eval", f"stage 2={second}", "--all-background",
                         "--plot", str(tmp_path / "eval_classes.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| | stage 1 | stage 2 | all background |"
    assert lines[2:] == ["| **val mIoU** | **40.00** | **35.25** | **40.00** |", "| background | 80.0 | 70.0 | 80.0 |",
                         "| cat | 20.5 | 0.0 | 0.0 |"]
    assert_png(tmp_path / "eval_classes.png")
    without_matrix = json.loads(second.read_text())
    del without_matrix["confusion_matrix"]
    second.write_text(json.dumps(without_matrix))
    with pytest.raises(ValueError, match="--all-background needs the confusion matrix of the last evaluation"):
        compare.main(["--eval", f"stage 1={first}", "--eval", f"stage 2={second}", "--all-background"])
