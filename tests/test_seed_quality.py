"""Seed quality on a hand-made grid, GT sampling, seed-file loading and tools/seed_quality.py."""
import json
from pathlib import Path

import numpy as np
import pytest

from caffe_helpers import load_tool
from dsrg.cues import save_cues
from dsrg.fileio import atomic_save_label_png, atomic_save_npy
from dsrg.seeds import (SeedQuality, aligned_corner_indices, format_seed_markdown, labels_to_seed_masks, load_seed_map,
                        sample_labels_on_grid)

REPO = Path(__file__).resolve().parents[1]
VOC = REPO / ".." / "shared" / "data" / "voc12"
seed_quality_tool = load_tool("seed_quality")

GT_GRID = np.array([[0, 0, 1],
                    [0, 1, 1],
                    [255, 2, 2]])
# (class, row, col): (0,1) carries background and class 1; (2,0) lies on an ignored cell
SEED_COLUMNS = np.array([[0, 0, 1, 1, 2, 1, 2, 0],
                         [0, 0, 0, 0, 1, 2, 2, 2],
                         [0, 1, 1, 2, 1, 0, 1, 2]])


def hand_seeds():
    seeds = np.zeros((3, 3, 3), dtype=bool)
    seeds[SEED_COLUMNS[0], SEED_COLUMNS[1], SEED_COLUMNS[2]] = True
    return seeds


def check_hand_summary(summary):
    assert summary["valid_cells"] == 8 and summary["seeds"] == 7
    assert summary["precision"] == pytest.approx(100 * 4 / 7, abs=1e-3)
    assert summary["recall"] == pytest.approx(50.0)
    assert summary["coverage"] == pytest.approx(75.0)
    assert summary["conflict"] == pytest.approx(12.5)
    assert summary["foreground"]["precision"] == pytest.approx(50.0)
    assert summary["foreground"]["recall"] == pytest.approx(40.0)
    per_class = summary["per_class"]
    assert [row["precision"] for row in per_class] == pytest.approx([100 * 2 / 3, 50.0, 50.0], abs=1e-3)
    assert [row["recall"] for row in per_class] == pytest.approx([100 * 2 / 3, 100 / 3, 50.0], abs=1e-3)
    assert [row["density"] for row in per_class] == pytest.approx([37.5, 25.0, 25.0])
    assert [row["gt_cells"] for row in per_class] == [3, 3, 2]


def test_hand_made_grid():
    summary = SeedQuality(3).add(hand_seeds(), GT_GRID).summary(["bg", "a", "b"])
    check_hand_summary(summary)
    assert summary["per_class"][1]["name"] == "a"


def test_markdown_has_overall_and_per_class_rows():
    summary = SeedQuality(3).add(hand_seeds(), GT_GRID).summary(["bg", "a", "b"])
    text = format_seed_markdown({"cues": summary})
    assert "| cues | 1 | 57.1 | 50.0 | 75.0 | 12.5 | 50.0 | 40.0 |" in text
    assert "| a | 50.0 | 33.3 | 25.0 |" in text


def test_aligned_corner_sampling():
    np.testing.assert_array_equal(aligned_corner_indices(5, 3), [0, 2, 4])
    np.testing.assert_array_equal(aligned_corner_indices(4, 3), [0, 2, 3])  # 1.5 rounds half up
    np.testing.assert_array_equal(aligned_corner_indices(161, 21), np.arange(21) * 8)
    np.testing.assert_array_equal(aligned_corner_indices(7, 1), [0])
    labels = np.arange(20).reshape(4, 5)
    np.testing.assert_array_equal(sample_labels_on_grid(labels, 2, 3), [[0, 2, 4], [15, 17, 19]])


def test_seed_maps_from_files(tmp_path):
    seeds = hand_seeds()
    atomic_save_npy(tmp_path / "dense.npy", seeds.astype(np.float32))
    np.testing.assert_array_equal(load_seed_map(tmp_path / "dense.npy", 3), seeds)
    label_map = np.array([[0, 255], [2, 1]], dtype=np.uint8)
    expected = labels_to_seed_masks(label_map, 3)
    assert expected.sum() == 3 and expected[2, 1, 0] and not expected[:, 0, 1].any()
    atomic_save_label_png(tmp_path / "labels.png", label_map)
    np.testing.assert_array_equal(load_seed_map(tmp_path / "labels.png", 3), expected)
    atomic_save_npy(tmp_path / "labels.npy", label_map.astype(np.int64))
    np.testing.assert_array_equal(load_seed_map(tmp_path / "labels.npy", 3), expected)
    with pytest.raises(ValueError, match=r"dense.npy: seed map has 3 channels, expected 21"):
        load_seed_map(tmp_path / "dense.npy", 21)
    with pytest.raises(ValueError, match=r"seed label 2 outside 0..1"):
        labels_to_seed_masks(label_map, 2)


def _full_resolution_gt(grid):
    """A 5×5 GT whose aligned-corners samples at rows/cols 0, 2, 4 give `grid`; other pixels are noise."""
    gt = np.full((5, 5), 1, dtype=np.uint8)
    gt[np.ix_([0, 2, 4], [0, 2, 4])] = grid
    return gt


def test_tool_on_cue_file_and_seed_dir(tmp_path):
    gt_dir = tmp_path / "gt"
    atomic_save_label_png(gt_dir / "img_a.png", _full_resolution_gt(GT_GRID))
    atomic_save_label_png(gt_dir / "img_b.png", np.zeros((5, 5), dtype=np.uint8))
    # img_b is index 0 with one (wrong) image label and a single background seed; img_a is index 1
    save_cues(tmp_path / "cues.pickle.gz", {"0_labels": np.array([2]),
                                            "0_cues": np.array([[0], [1], [1]]),
                                            "1_labels": np.array([1, 2]), "1_cues": SEED_COLUMNS})
    (tmp_path / "input_list.txt").write_text("img_b.jpg 0\nimg_a.jpg 1\n")
    seed_dir = tmp_path / "grown"
    atomic_save_npy(seed_dir / "img_a.npy", hand_seeds().astype(np.float32))
    atomic_save_label_png(seed_dir / "img_b.png", np.zeros((5, 5), dtype=np.uint8))  # all background, full size
    out, markdown = tmp_path / "quality.json", tmp_path / "quality.md"
    summaries = seed_quality_tool.main([
        "--cues", str(tmp_path / "cues.pickle.gz"), "--grown-seeds", str(seed_dir), "--gt", str(gt_dir),
        "--input-list", str(tmp_path / "input_list.txt"), "--cue-size", "3", "--num-classes", "3",
        "--out", str(out), "--markdown", str(markdown), "--quiet"])
    cues = summaries["cues"]
    assert cues["images"] == 2 and cues["valid_cells"] == 8 + 9 and cues["seeds"] == 7 + 1
    assert cues["precision"] == pytest.approx(100 * 5 / 8)
    grown = summaries["grown_seeds"]
    assert grown["valid_cells"] == 8 + 25 and grown["seeds"] == 7 + 25
    assert grown["precision"] == pytest.approx(100 * 29 / 32)
    saved = json.loads(out.read_text())
    assert saved["cues"]["precision"] == cues["precision"] and saved["grown_seeds"]["seeds"] == 32
    assert "grown_seeds" in markdown.read_text()


def test_tool_reports_a_missing_seed_file(tmp_path):
    atomic_save_label_png(tmp_path / "gt" / "x.png", np.zeros((4, 4), dtype=np.uint8))
    (tmp_path / "ids.txt").write_text("x\n")
    with pytest.raises(FileNotFoundError, match=r"no grown seeds for image id x \(expected x.npy or x.png\)"):
        seed_quality_tool.main(["--grown-seeds", str(tmp_path / "none"), "--gt", str(tmp_path / "gt"),
                                "--input-list", str(tmp_path / "ids.txt"), "--quiet"])


@pytest.mark.skipif(not (VOC / "localization_cues-sec.pickle.gz").is_file(), reason="../shared VOC data absent")
def test_real_sec_cues_on_the_first_images():
    summaries = seed_quality_tool.main([
        "--cues", str(VOC / "localization_cues-sec.pickle.gz"), "--gt", str(VOC / "SegmentationClassAug"),
        "--input-list", str(VOC / "lists" / "input_list.txt"), "--limit", "300", "--quiet"])
    cues = summaries["cues"]
    # SEC keeps the 10 % least salient cells as background; its cells carry one class each
    assert cues["per_class"][0]["density"] == pytest.approx(10.0, abs=1.0)
    assert cues["conflict"] == 0.0
    assert 85 < cues["per_class"][0]["precision"] < 98
    assert 55 < cues["foreground"]["precision"] < 80
