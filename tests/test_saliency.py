"""Built-in saliency (dsrg/saliency.py), tools/make_saliency.py and tools/bench_saliency.py."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from caffe_helpers import load_tool
from dsrg.fileio import read_label_png, read_rgb
from dsrg.saliency import (SALIENCY_METHODS, background_cells, border_contrast_map, compute_saliency,
                           minimum_barrier_distance, normalise_min_max, read_saliency_png, saliency_levels,
                           saliency_on_grid)
from dsrg.seeds import sample_labels_on_grid
from dsrg.synthetic import render_sample, sample_rng

REPO = Path(__file__).resolve().parents[1]
VOC = REPO / ".." / "shared" / "data" / "voc12"
make_saliency_tool = load_tool("make_saliency")
bench_tool = load_tool("bench_saliency")


def salient_object_image(rng, height=120, width=160):
    """A muted, smoothly varying, noisy background with one saturated elliptic object inside the frame."""
    rows, cols = np.mgrid[0:height, 0:width]
    image = (rng.uniform(0.3, 0.6, 3) + rng.uniform(-0.15, 0.15, 3) * (cols / width)[..., None]
             + ndimage.gaussian_filter(rng.normal(0, 0.08, (height, width, 3)), (4, 4, 0)))
    centre_row, centre_col = rng.uniform(0.35, 0.65) * height, rng.uniform(0.35, 0.65) * width
    radius_row, radius_col = rng.uniform(0.15, 0.3) * height, rng.uniform(0.15, 0.3) * width
    mask = ((rows - centre_row) / radius_row) ** 2 + ((cols - centre_col) / radius_col) ** 2 <= 1
    colour = rng.permutation([rng.uniform(0.85, 1.0), rng.uniform(0.0, 0.15), rng.uniform(0.0, 0.5)])
    image[mask] = colour + 0.05 * np.sin(cols[mask] / 3.0)[:, None]
    image = image + rng.normal(0, 0.02, image.shape)
    return np.clip(np.round(image * 255), 0, 255).astype(np.uint8), mask


def background_figures(pairs, grid, threshold=0.06):
    """(precision, coverage) of `saliency < threshold` cells over (saliency, GT label map) pairs, GT 255 skipped."""
    correct = called = valid = 0
    for saliency, ground_truth in pairs:
        cells = background_cells(saliency_on_grid(saliency, grid), threshold)
        gt_grid = sample_labels_on_grid(ground_truth, grid, grid)
        usable = gt_grid != 255
        correct += int((cells & usable & (gt_grid == 0)).sum())
        called += int((cells & usable).sum())
        valid += int(usable.sum())
    return correct / max(called, 1), called / valid


def exact_minimum_barrier(image):
    """Exact MBD to the border of a small integer image: the smallest hi − lo such that the pixel is
    4-connected to the border through pixels with values in [lo, hi]."""
    values = np.unique(image)
    best = np.full(image.shape, np.inf)
    border = np.zeros(image.shape, dtype=bool)
    border[0] = border[-1] = border[:, 0] = border[:, -1] = True
    for low in values:
        for high in values[values >= low]:
            components, _ = ndimage.label((image >= low) & (image <= high))
            reached = np.isin(components, np.unique(components[border & (components > 0)])) & (components > 0)
            best[reached] = np.minimum(best[reached], high - low)
    return best


# ---------------------------------------------------------------- hand examples

def test_grid_average_by_hand():
    values = np.arange(16, dtype=np.float32).reshape(4, 4)
    # 4 pixels onto 2 cells: pixel rows 0,1 -> cell 0 (1/3 rounds to 0), rows 2,3 -> cell 1
    np.testing.assert_allclose(saliency_on_grid(values, 2), [[2.5, 4.5], [10.5, 12.5]])
    # 5 pixels onto 3 cells, round half up: {0}, {1, 2}, {3, 4}
    values = np.arange(25, dtype=np.float32).reshape(5, 5)
    expected = [[0.0, 1.5, 3.5], [7.5, 9.0, 11.0], [17.5, 19.0, 21.0]]
    np.testing.assert_allclose(saliency_on_grid(values, 3), expected)
    np.testing.assert_allclose(saliency_on_grid(values, 1), [[12.0]])
    # a map smaller than the grid: the empty middle cell takes the pixel at its centre
    np.testing.assert_allclose(saliency_on_grid(np.array([[0.0, 1.0], [2.0, 3.0]]), 3),
                               [[0, 1, 1], [2, 3, 3], [2, 3, 3]])
    assert saliency_on_grid(np.zeros((7, 9)), 41).dtype == np.float32


def test_background_cells_threshold_is_a_parameter():
    grid = np.array([[0.0, 0.05, 0.06], [0.2, 0.5, 1.0]])
    np.testing.assert_array_equal(background_cells(grid), [[True, True, False], [False, False, False]])
    np.testing.assert_array_equal(background_cells(grid, threshold=0.3), [[True, True, True], [True, False, False]])


def test_min_max_normalisation():
    np.testing.assert_allclose(normalise_min_max([[2.0, 4.0], [3.0, 6.0]]), [[0, 0.5], [0.25, 1]])
    assert not normalise_min_max(np.full((3, 3), 7.0)).any()


def test_barrier_of_an_enclosed_valley_and_a_bright_block():
    image = np.zeros((7, 7))
    image[1:6, 1:6] = 5.0   # a bright ring ...
    image[2:5, 2:5] = 2.0   # ... around a darker core
    distance = minimum_barrier_distance(image[..., None])[..., 0]
    expected = np.zeros((7, 7))
    expected[1:6, 1:6] = 5.0  # any path from the border climbs 0 -> 5
    np.testing.assert_allclose(distance, expected)
    assert minimum_barrier_distance(np.zeros((6, 5, 2))).max() == 0


def test_barrier_sweeps_are_an_upper_bound_that_reaches_the_exact_distance():
    rng = np.random.default_rng(0)
    equal = total = 0
    for _ in range(40):
        image = ndimage.gaussian_filter(rng.integers(0, 5, (10, 10)).astype(float), 0.7).round()
        exact = exact_minimum_barrier(image)
        approximate = minimum_barrier_distance(image[..., None])[..., 0]
        assert (approximate >= exact - 1e-6).all()  # each value is the barrier of a real path
        equal += int((np.abs(approximate - exact) < 1e-6).sum())
        total += image.size
    assert equal / total >= 0.99


def test_border_contrast_marks_what_the_border_lacks():
    rgb = np.full((40, 50, 3), 90, dtype=np.uint8)
    rgb[15:25, 20:30] = (250, 20, 20)
    contrast = border_contrast_map(rgb)
    assert contrast[15:25, 20:30].min() == pytest.approx(1.0) and contrast[:10].max() == pytest.approx(0.0)


def test_saliency_is_a_normalised_map_of_the_image_size():
    rgb, _ = salient_object_image(np.random.default_rng(3), 75, 130)
    for method in SALIENCY_METHODS:
        saliency = compute_saliency(rgb, method)
        assert saliency.shape == (75, 130) and saliency.dtype == np.float32
        assert saliency.min() == 0.0 and saliency.max() == pytest.approx(1.0)
    large = np.ascontiguousarray(np.kron(rgb, np.ones((5, 5, 1), dtype=np.uint8)))  # 375 × 650, worked on at 200 × 108
    assert compute_saliency(large).shape == (375, 650)


def test_bad_image_input_is_refused():
    with pytest.raises(ValueError, match="H×W×3 uint8"):
        compute_saliency(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(ValueError, match="H×W×3 uint8"):
        compute_saliency(np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="unknown method 'drfi'"):
        compute_saliency(np.zeros((10, 10, 3), dtype=np.uint8), "drfi")
    with pytest.raises(ValueError, match="at least 3×3"):
        compute_saliency(np.zeros((2, 10, 3), dtype=np.uint8))


# ---------------------------------------------------------------- synthetic images with a known object

@pytest.mark.parametrize("method", ["mbplus", "rbd"])
def test_one_salient_object_background_is_precise_and_wide(method):
    pairs = []
    for seed in range(10):
        rgb, mask = salient_object_image(np.random.default_rng(seed))
        pairs.append((compute_saliency(rgb, method), mask.astype(np.uint8)))
    precision, coverage = background_figures(pairs, 41)
    # measured 100.0 % / 83-84 % on these images
    assert precision >= 0.99 and coverage >= 0.7


def test_demo_images_mbplus_beats_the_border_prior():
    """The cluttered demo images (decoys, several objects): measured on these 12 at 21×21, MB+
    96.8 % precision at 30.5 % coverage, RBD 88.8 % at 65.5 %, the border prior 85.9 % at 18.5 %."""
    samples = [render_sample(sample_rng(0, "train", index), 161)[:2] for index in range(12)]
    figures = {method: background_figures([(compute_saliency(rgb, method), gt) for rgb, gt in samples], 21)
               for method in SALIENCY_METHODS}
    assert figures["mbplus"][0] >= 0.95 and figures["mbplus"][1] >= 0.25
    assert figures["mbplus"][0] > figures["border"][0] + 0.05
    assert figures["rbd"][0] >= 0.85 and figures["rbd"][1] >= 0.5


# ---------------------------------------------------------------- saliency PNGs

def test_png_round_trip_8_bit_16_bit_and_rgb(tmp_path):
    saliency = np.linspace(0, 1, 30 * 40, dtype=np.float32).reshape(30, 40)
    levels = saliency_levels(saliency)
    Image.fromarray(levels, mode="L").save(tmp_path / "grey.png")
    np.testing.assert_allclose(read_saliency_png(tmp_path / "grey.png"), saliency, atol=0.5 / 255 + 1e-6)
    deep = np.round(saliency * 65535).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    np.testing.assert_allclose(read_saliency_png(tmp_path / "deep.png"), saliency, atol=1e-4)
    rgb = np.stack([levels, 255 - levels, np.zeros_like(levels)], axis=2)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_allclose(read_saliency_png(tmp_path / "rgb.png"), levels / 255.0, atol=1e-6)
    assert read_saliency_png(tmp_path / "grey.png").dtype == np.float32


def test_missing_or_unreadable_png_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.png"):
        read_saliency_png(tmp_path / "absent.png")
    (tmp_path / "garbage.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match="garbage.png"):
        read_saliency_png(tmp_path / "garbage.png")


# ---------------------------------------------------------------- tools

def write_photos(folder, count=3):
    folder.mkdir(parents=True, exist_ok=True)
    masks = {}
    for index in range(count):
        rgb, mask = salient_object_image(np.random.default_rng(100 + index), 90, 120)
        Image.fromarray(rgb).save(folder / f"photo_{index}.png")
        masks[f"photo_{index}"] = (rgb, mask)
    return masks


def test_make_saliency_writes_pngs_and_a_rerun_skips_them(tmp_path, capsys):
    photos = write_photos(tmp_path / "images")
    (tmp_path / "ids.txt").write_bytes(b"photo_0\r\nphoto_1\r\nphoto_2\r\n")
    argv = ["--images", str(tmp_path / "images"), "--ids", str(tmp_path / "ids.txt"),
            "--out", str(tmp_path / "saliency"), "--image-ext", ".png", "--method", "mbplus"]
    assert make_saliency_tool.main(argv)["written"] == 3
    for name, (rgb, _) in photos.items():
        stored = read_label_png(tmp_path / "saliency" / f"{name}.png")
        np.testing.assert_array_equal(stored, saliency_levels(compute_saliency(rgb)))
    before = {path.name: path.stat().st_mtime_ns for path in (tmp_path / "saliency").iterdir()}
    (tmp_path / "images" / "photo_1.png").unlink()  # would fail if it were read again
    rerun = make_saliency_tool.main(argv)
    assert (rerun["written"], rerun["skipped"]) == (0, 3)
    assert {path.name: path.stat().st_mtime_ns for path in (tmp_path / "saliency").iterdir()} == before
    assert "0 written, 3 already there" in capsys.readouterr().out


def test_make_saliency_missing_photo_is_named_and_nothing_half_written(tmp_path):
    write_photos(tmp_path / "images", count=1)
    (tmp_path / "ids.txt").write_text("photo_0\nphoto_9\n")
    argv = ["--images", str(tmp_path / "images"), "--ids", str(tmp_path / "ids.txt"),
            "--out", str(tmp_path / "saliency"), "--image-ext", ".png", "--quiet"]
    with pytest.raises(FileNotFoundError, match="photo_9.png"):
        make_saliency_tool.main(argv)
    assert sorted(path.name for path in (tmp_path / "saliency").iterdir()) == ["photo_0.png"]


def test_make_saliency_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        make_saliency_tool.main(["--help"])
    assert exit_info.value.code == 0 and "--method" in capsys.readouterr().out


def test_bench_figures_agree_with_a_direct_count(tmp_path):
    photos = write_photos(tmp_path / "images")
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    for name, (_, mask) in photos.items():
        Image.fromarray(mask.astype(np.uint8), mode="L").save(gt_dir / f"{name}.png")
    (tmp_path / "ids.txt").write_text("\n".join(photos) + "\n")
    rows = bench_tool.main(["--images", str(tmp_path / "images"), "--gt", str(gt_dir), "--ids",
                            str(tmp_path / "ids.txt"), "--image-ext", ".png", "--methods", "border,mbplus",
                            "--thresholds", "0.06,0.2", "--cue-size", "21", "--no-progress",
                            "--out", str(tmp_path / "b.json")])
    by_rule = {(row["method"], row["rule"]): row for row in rows}
    for method in ("border", "mbplus"):
        for threshold in (0.06, 0.2):
            precision, coverage = background_figures(
                [(saliency_levels(compute_saliency(rgb, method)) / 255.0, mask.astype(np.uint8))
                 for rgb, mask in photos.values()], 21, threshold)
            row = by_rule[method, f"< {threshold:g}"]
            assert row["precision"] == pytest.approx(100 * precision, abs=1e-3)  # summaries keep 4 decimals
            assert row["coverage"] == pytest.approx(100 * coverage, abs=1e-3)
        assert by_rule[method, "lowest 10 %"]["coverage"] == pytest.approx(100 * round(0.1 * 441) / 441, abs=1e-3)
    assert json.loads((tmp_path / "b.json").read_text())["images"] == 3


@pytest.mark.skipif(not (VOC / "JPEGImages").is_dir(), reason="shared VOC12 photos not present (../shared)")
def test_real_photos_mbplus_background_is_precise():
    ids = (VOC / "lists" / "train_aug_photos_id.txt").read_text().split()[:6]
    pairs = []
    for image_id in ids:
        rgb = read_rgb(VOC / "JPEGImages" / f"{image_id}.jpg")
        pairs.append((compute_saliency(rgb), read_label_png(VOC / "SegmentationClassAug" / f"{image_id}.png")))
    precision, coverage = background_figures(pairs, 41)
    assert precision >= 0.85 and coverage >= 0.15
