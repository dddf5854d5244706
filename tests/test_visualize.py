"""Panel drawing and tools/visualize.py output."""
from pathlib import Path

import numpy as np
from PIL import Image

from caffe_helpers import load_tool
from dsrg.cues import save_cues
from dsrg.fileio import atomic_save_image, atomic_save_label_png, atomic_save_npy
from dsrg.visual import PALETTE_RGB, TEXT_HEIGHT, colorize, draw_cues, draw_grown_seeds, seeds_to_label_map

REPO = Path(__file__).resolve().parents[1]
visualize_tool = load_tool("visualize")


def test_colorize_uses_the_voc_palette():
    rgb = colorize(np.array([[0, 1], [15, 255]], dtype=np.uint8))
    np.testing.assert_array_equal(rgb[0, 0], [0, 0, 0])
    np.testing.assert_array_equal(rgb[0, 1], [128, 0, 0])
    np.testing.assert_array_equal(rgb[1, 0], [192, 128, 128])  # person
    np.testing.assert_array_equal(rgb[1, 1], [224, 224, 192])  # ignore


def test_seeds_to_label_map_marks_unseeded_cells():
    seeds = np.zeros((3, 2, 2), dtype=bool)
    seeds[2, 0, 0] = seeds[1, 1, 1] = True
    np.testing.assert_array_equal(seeds_to_label_map(seeds), [[2, 255], [255, 1]])


def test_cues_are_drawn_at_their_aligned_pixel():
    image = np.full((41, 41, 3), 200, dtype=np.uint8)
    seeds = np.full((6, 6), 255, dtype=np.uint8)
    seeds[5, 0] = 1  # bottom-left cell: pixel (40, 0)
    drawn = draw_cues(image, seeds)
    np.testing.assert_array_equal(drawn[40, 0], PALETTE_RGB[1])
    np.testing.assert_array_equal(drawn[0, 40], [90, 90, 90])  # unseeded: the image dimmed
    grown = draw_grown_seeds(image, seeds)
    assert grown[40, 0, 0] > grown[40, 0, 1] and grown.shape == image.shape


def _write_case(root):
    for name, seed in (("a", 0), ("b", 1)):
        rng = np.random.default_rng(seed)
        atomic_save_image(root / "img" / f"{name}.jpg", rng.integers(0, 255, (30, 40, 3), dtype=np.uint8))
        label = np.zeros((30, 40), dtype=np.uint8)
        label[5:20, 10:30] = 3
        atomic_save_label_png(root / "gt" / f"{name}.png", label)
        atomic_save_label_png(root / "pred" / f"{name}.png", np.where(label == 3, 15, 0).astype(np.uint8))
        atomic_save_npy(root / "seeds" / f"{name}.npy", np.eye(21, dtype=np.float32)[:, :5].reshape(21, 5, 1)
                        .repeat(5, axis=2))
    save_cues(root / "cues.pickle", {"0_labels": np.array([3]), "0_cues": np.array([[0, 3], [0, 2], [0, 2]])})
    (root / "input_list.txt").write_text("a.jpg 0\n")
    (root / "ids.txt").write_text("a\nb\n")


def test_tool_writes_panels_of_the_right_size(tmp_path):
    _write_case(tmp_path)
    size = 64
    args = ["--ids", str(tmp_path / "ids.txt"), "--images", str(tmp_path / "img"), "--gt", str(tmp_path / "gt"),
            "--pred", str(tmp_path / "pred"), "--cues", str(tmp_path / "cues.pickle"),
            "--input-list", str(tmp_path / "input_list.txt"), "--cue-size", "5",
            "--grown-seeds", str(tmp_path / "seeds"), "--panel-size", str(size), "--out", str(tmp_path / "panels"),
            "--grid", str(tmp_path / "grid.png")]
    visualize_tool.main(args)
    with Image.open(tmp_path / "panels" / "a.png") as panel:
        # five panels (image, ground truth, prediction, cues, grown seeds), 2-pixel gaps, legend below
        assert panel.mode == "RGB" and panel.width == 5 * size + 4 * 2
        assert panel.height > size + TEXT_HEIGHT + 2
        single_height = panel.height
        row = np.asarray(panel)
    # the ground-truth panel shows the bird colour where the object is
    middle = row[TEXT_HEIGHT + size // 2, size + 2 + size // 2]
    np.testing.assert_array_equal(middle, PALETTE_RGB[3])
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.width == 5 * size + 4 * 2 and grid.height == single_height + size + TEXT_HEIGHT + 2
    # a rerun leaves existing per-id panels alone
    stamp = (tmp_path / "panels" / "a.png").stat().st_mtime_ns
    visualize_tool.main(args[:-2])
    assert (tmp_path / "panels" / "a.png").stat().st_mtime_ns == stamp


def test_tool_without_images_draws_on_grey(tmp_path):
    _write_case(tmp_path)
    visualize_tool.main(["--id", "b", "--gt", str(tmp_path / "gt"), "--panel-size", "32",
                         "--out", str(tmp_path / "panels")])
    with Image.open(tmp_path / "panels" / "b.png") as panel:
        assert panel.width == 2 * 32 + 2
