"""Cues from image labels: CAM heatmaps (dsrg.cam, tools/extract_cams.py), the image-label file and
layer, the cue combination (dsrg.cuegen) and the cue file tool (tools/make_cues.py).

numpy tier: heatmaps, thresholds and the conflict precedence on hand-made maps; Caffe tier: a tiny
CAM net with hand-set weights through tools/extract_cams.py against a hand-computed heatmap,
ImageLabelLayer in an inline net, the generated cue file through AnnotationLayer and
tools/seed_quality.py; bad input: a clear error naming the file and no cue file written.
"""
import json

import numpy as np
import pytest
from PIL import Image

from dsrg.cam import class_heatmaps, foreground_mask, foreground_masks, heatmaps_on_grid
from dsrg.cuegen import cue_columns, cue_entry, cue_label_map
from dsrg.cues import load_cues
from dsrg.imagelabels import format_image_labels, labels_from_label_map, read_image_labels, write_image_labels
from tests.caffe_helpers import input_layer, load_tool, make_net, python_layer

NO_CUE = 255


def test_class_heatmaps_apply_each_classifier_row_at_every_cell():
    features = np.array([[[1.0, 2.0], [0.0, 3.0]],
                         [[4.0, 0.0], [1.0, 1.0]]])           # K=2 × 2×2
    weights = np.array([[1.0, 0.5], [-1.0, 2.0], [0.0, 0.0]])  # C'=3 × K
    heatmaps = class_heatmaps(features, weights)
    np.testing.assert_allclose(heatmaps[0], [[3.0, 2.0], [0.5, 3.5]])
    np.testing.assert_allclose(heatmaps[1], [[7.0, -2.0], [2.0, -1.0]])
    np.testing.assert_allclose(heatmaps[2], np.zeros((2, 2)))
    # the class score after global average pooling is the heatmap's mean
    np.testing.assert_allclose(heatmaps.mean(axis=(1, 2)), weights @ features.mean(axis=(1, 2)), rtol=1e-6)
    with pytest.raises(ValueError, match="K = 2 feature channels"):
        class_heatmaps(features, np.ones((3, 4)))


def test_foreground_threshold_is_relative_to_each_maximum():
    heatmap = np.array([[10.0, 2.0, 2.1], [-5.0, 0.0, 9.0]])
    np.testing.assert_array_equal(foreground_mask(heatmap), [[True, False, True], [False, False, True]])
    np.testing.assert_array_equal(foreground_mask(heatmap, threshold=0.95), [[True, False, False],
                                                                            [False, False, False]])
    assert not foreground_mask(np.full((2, 2), -1.0)).any()          # no positive evidence: no cue
    negative = np.array([[-10.0, -1.0], [-2.0, -3.0]])                # range rule: -10 + 0.8 · 9 = -2.8
    assert not foreground_mask(negative).any()
    np.testing.assert_array_equal(foreground_mask(negative, 0.8, rule="range"), [[False, True], [True, False]])
    np.testing.assert_array_equal(foreground_mask(heatmap - heatmap.min(), 0.2, rule="range"),
                                  foreground_mask(heatmap - heatmap.min(), 0.2))
    masks = foreground_masks(np.stack([heatmap, -heatmap]), labels=[2])
    assert list(masks) == [2]
    np.testing.assert_array_equal(masks[2], [[False, False, False], [True, False, False]])
    with pytest.raises(ValueError, match="label 3 has no heatmap"):
        foreground_masks(np.stack([heatmap, heatmap]), labels=[3])


def test_heatmaps_on_grid_aligned_corners():
    heatmap = np.array([[[0.0, 2.0], [4.0, 6.0]]])
    grid = heatmaps_on_grid(heatmap, 3)
    np.testing.assert_allclose(grid[0], [[0, 1, 2], [2, 3, 4], [4, 5, 6]])
    fine = heatmaps_on_grid(np.random.default_rng(0).normal(size=(2, 21, 21)), 41)
    np.testing.assert_allclose(fine[:, ::2, ::2], heatmaps_on_grid(fine, 41)[:, ::2, ::2])


def test_precedence_background_first_then_larger_foreground_then_smaller():
    background = np.zeros((4, 4), bool)
    background[:, 0] = True
    background[0, :] = True                                           # 7 cells
    large = np.zeros((4, 4), bool)
    large[:3, :3] = True                                              # 9 cells, overlaps background
    small = np.zeros((4, 4), bool)
    small[2:, 2:] = True                                              # 4 cells, overlaps large at (2, 2)
    label_map = cue_label_map(background, {3: small, 5: large})
    expected = np.array([[5, 5, 5, 0],
                         [5, 5, 5, NO_CUE],
                         [5, 5, 3, 3],
                         [0, NO_CUE, 3, 3]])
    np.testing.assert_array_equal(label_map, expected)
    # equal areas: the lower class is written first, the higher one wins
    one, other = np.zeros((2, 2), bool), np.zeros((2, 2), bool)
    one[0], other[:, 0] = True, True
    np.testing.assert_array_equal(cue_label_map(np.zeros((2, 2), bool), {4: other, 2: one}),
                                  [[4, 2], [4, NO_CUE]])
    columns = cue_columns(expected)
    assert columns.shape == (3, 14) and columns.dtype == np.int64
    np.testing.assert_array_equal(columns[:, :4], [[5, 5, 5, 0], [0, 0, 0, 0], [0, 1, 2, 3]])
    entry = cue_entry(7, [3, 5], expected)
    assert sorted(entry) == ["7_cues", "7_labels"] and entry["7_labels"].tolist() == [3, 5]


def test_image_label_file_round_trip_and_errors(tmp_path):
    labels = {"b": np.array([3, 1]), "a": np.array([], dtype=np.int64), "c": np.array([20])}
    write_image_labels(tmp_path / "labels.txt", labels)
    assert (tmp_path / "labels.txt").read_text() == "b 1 3\na\nc 20\n"
    read = read_image_labels(tmp_path / "labels.txt", 21)
    assert {key: value.tolist() for key, value in read.items()} == {"b": [1, 3], "a": [], "c": [20]}
    assert labels_from_label_map(np.array([[0, 255], [7, 7]]), 21).tolist() == [7]
    for text, message in (("x 0 2\n", r"labels.txt:1: image x: labels \[0\] outside 1..20"),
                          ("x 21\n", r"labels \[21\] outside 1..20"),
                          ("x one\n", "integer classes"),
                          ("x 1\nx 2\n", "labels.txt:2: image x is listed twice")):
        (tmp_path / "labels.txt").write_text(text)
        with pytest.raises(ValueError, match=message):
            read_image_labels(tmp_path / "labels.txt", 21)
    assert format_image_labels({"z": [2, 2]}) == "z 2\n"


TINY_CAM_DEPLOY = (input_layer("images", (1, 3, 3, 3)) + """
layer { name: "fc7_CAM" type: "Convolution" bottom: "images" top: "fc7_CAM"
        convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "relu7_CAM" type: "ReLU" bottom: "fc7_CAM" top: "fc7_CAM" }
layer { name: "pool8_CAM" type: "Pooling" bottom: "fc7_CAM" top: "pool8_CAM"
        pooling_param { pool: AVE global_pooling: true } }
layer { name: "fc8_CAM" type: "InnerProduct" bottom: "pool8_CAM" top: "fc8_CAM"
        inner_product_param { num_output: 2 bias_term: false } }
""")


def test_extract_cams_on_a_tiny_net_with_hand_set_weights(tmp_path):
    caffe = pytest.importorskip("caffe")
    deploy = tmp_path / "cam_deploy.prototxt"
    deploy.write_text(TINY_CAM_DEPLOY)
    net = caffe.Net(str(deploy), caffe.TEST)
    conv = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 1.0]], dtype=np.float32)  # over B, G, R (mean-subtracted)
    net.params["fc7_CAM"][0].data[...] = conv[:, :, None, None]
    net.params["fc7_CAM"][1].data[...] = [0.5, 0.0]
    classifier = np.array([[2.0, 1.0], [0.0, -1.0]], dtype=np.float32)
    net.params["fc8_CAM"][0].data[...] = classifier
    net.save(str(tmp_path / "cam.caffemodel"))

    rgb = np.random.default_rng(1).integers(0, 256, size=(3, 3, 3)).astype(np.uint8)
    (tmp_path / "images").mkdir()
    Image.fromarray(rgb).save(tmp_path / "images" / "img.png")
    (tmp_path / "ids.txt").write_text("img\n")
    extract = load_tool("extract_cams")
    args = ["--deploy", str(deploy), "--weights", str(tmp_path / "cam.caffemodel"), "--images",
            str(tmp_path / "images"), "--image-ext", ".png", "--ids", str(tmp_path / "ids.txt"),
            "--out", str(tmp_path / "cams"), "--no-progress"]
    assert extract.main(args) == 0

    bgr = rgb[:, :, ::-1].astype(np.float64) - np.array([104.008, 116.669, 122.675])
    first = np.maximum(bgr[:, :, 0] + 0.5, 0.0)
    second = np.maximum(-bgr[:, :, 1] + bgr[:, :, 2], 0.0)
    expected = np.stack([2.0 * first + second, -second])
    heatmaps = np.load(tmp_path / "cams" / "img.npy")
    assert heatmaps.shape == (2, 3, 3) and heatmaps.dtype == np.float32
    np.testing.assert_allclose(heatmaps, expected, rtol=1e-5, atol=1e-3)
    before = (tmp_path / "cams" / "img.npy").stat().st_mtime_ns
    assert extract.main(args) == 0                                   # rerun: skipped
    assert (tmp_path / "cams" / "img.npy").stat().st_mtime_ns == before


def test_image_label_layer_gives_multi_hot_foreground_targets(tmp_path):
    caffe = pytest.importorskip("caffe")
    (tmp_path / "labels.txt").write_text("a 2\nb 1 3\nc\n")
    (tmp_path / "list.txt").write_text("c.jpg 0\na.jpg 5\nb.jpg 9\n")
    param = str({"labels": str(tmp_path / "labels.txt"), "input_list": str(tmp_path / "list.txt"), "num_classes": 4})
    net = make_net(caffe, input_layer("image_ids", (3,))
                   + python_layer("labels", "ImageLabelLayer", ["image_ids"], ["labels"], param_str=param))
    net.blobs["image_ids"].data[...] = [9, 0, 5]
    net.forward()
    np.testing.assert_array_equal(net.blobs["labels"].data, [[1, 0, 1], [0, 0, 0], [0, 1, 0]])
    (tmp_path / "labels.txt").write_text("a 2\nb 1 3\n")
    with pytest.raises(Exception, match="image c of .*list.txt has no line in the label file"):
        make_net(caffe, input_layer("image_ids", (3,))
                 + python_layer("labels", "ImageLabelLayer", ["image_ids"], ["labels"], param_str=param))


def write_cue_inputs(root, grid=6, num_classes=4):
    """Two images with hand-made heatmaps (net grid 3×3) and saliency PNGs, their labels and list."""
    (root / "cams").mkdir()
    (root / "saliency").mkdir()
    heatmaps = np.zeros((num_classes - 1, 3, 3), np.float32)
    heatmaps[0] = [[0, 0, 0], [0, 1, 0], [0, 0, 0]]                  # class 1: the centre
    heatmaps[2] = [[0, 0, 0], [0, 1, 1], [0, 1, 1]]                  # class 3: the lower right block
    np.save(root / "cams" / "one.npy", heatmaps)
    np.save(root / "cams" / "two.npy", heatmaps[::-1].copy())
    saliency = np.full((60, 60), 255, np.uint8)
    saliency[:, :10] = 0                                            # left sixth: not salient
    for name in ("one", "two"):
        Image.fromarray(saliency).save(root / "saliency" / f"{name}.png")
    (root / "labels.txt").write_text("one 1 3\ntwo 1\n")
    (root / "list.txt").write_text("one.jpg 0\ntwo.jpg 1\n")
    return ["--input-list", str(root / "list.txt"), "--labels", str(root / "labels.txt"),
            "--cams", str(root / "cams"), "--saliency", str(root / "saliency"),
            "--num-classes", str(num_classes), "--cue-size", str(grid), "--no-progress"]


def test_make_cues_writes_the_official_format_that_annotation_layer_reads(tmp_path):
    caffe = pytest.importorskip("caffe")
    make_cues = load_tool("make_cues")
    out = tmp_path / "cues" / "localization_cues.pickle"
    args = write_cue_inputs(tmp_path) + ["--out", str(out)]
    assert make_cues.main(args) == 0
    mapping = load_cues(out)
    assert sorted(mapping) == ["0_cues", "0_labels", "1_cues", "1_labels"]
    assert mapping["0_labels"].tolist() == [1, 3] and mapping["1_labels"].tolist() == [1]

    # the same map by hand: heatmaps 3×3 → 6×6 (aligned corners), > 0.2 × max; background the left column
    expected = np.full((6, 6), NO_CUE)
    expected[:, 0] = 0
    centre = heatmaps_on_grid(np.load(tmp_path / "cams" / "one.npy"), 6)
    large, small = centre[2] > 0.2 * centre[2].max(), centre[0] > 0.2 * centre[0].max()
    assert large.sum() > small.sum()
    expected[large] = 3
    expected[small] = 1                                              # the smaller region wins
    grid = np.full((6, 6), NO_CUE)
    grid[mapping["0_cues"][1], mapping["0_cues"][2]] = mapping["0_cues"][0]
    np.testing.assert_array_equal(grid, expected)
    assert mapping["1_cues"].shape[0] == 3 and set(mapping["1_cues"][0].tolist()) == {0, 1}

    param = str({"cues": str(out), "num_classes": 4, "cue_size": 6})
    net = make_net(caffe, input_layer("image_ids", (2,)) + input_layer("images_origin", (2, 3, 8, 8))
                   + python_layer("annotation", "AnnotationLayer", ["image_ids", "images_origin"],
                                  ["labels", "cues", "images"], param_str=param))
    net.blobs["image_ids"].data[...] = [0, 1]
    net.forward()
    np.testing.assert_array_equal(net.blobs["labels"].data[:, 0, 0], [[1, 1, 0, 1], [1, 1, 0, 0]])
    for label in range(4):
        np.testing.assert_array_equal(net.blobs["cues"].data[0, label], expected == label)

    record = json.loads(out.with_name(out.name + ".json").read_text())
    assert record["settings"]["fg_threshold"] == 0.2 and record["settings"]["bg_threshold"] == 0.06
    before = out.stat().st_mtime_ns
    assert make_cues.main(args) == 0                                 # rerun: up to date, skipped
    assert out.stat().st_mtime_ns == before


def test_seed_quality_reads_the_generated_cue_file(tmp_path):
    make_cues = load_tool("make_cues")
    out = tmp_path / "cues.pickle.gz"
    assert make_cues.main(write_cue_inputs(tmp_path) + ["--out", str(out)]) == 0
    (tmp_path / "gt").mkdir()
    gt = np.zeros((60, 60), np.uint8)
    gt[20:50, 20:50] = 1
    for name in ("one", "two"):
        Image.fromarray(gt).save(tmp_path / "gt" / f"{name}.png")
    seed_quality = load_tool("seed_quality")
    seed_quality.main(["--cues", str(out), "--gt", str(tmp_path / "gt"), "--input-list", str(tmp_path / "list.txt"),
                       "--cue-size", "6", "--num-classes", "4", "--quiet", "--out", str(tmp_path / "quality.json")])
    summary = json.loads((tmp_path / "quality.json").read_text())
    figures = next(value for value in summary.values() if isinstance(value, dict) and "precision" in value)
    assert 0.0 < figures["coverage"] <= 100.0 and 0.0 < figures["precision"] <= 100.0


@pytest.mark.parametrize("spoil, error, message", [
    (lambda root: (root / "saliency" / "two.png").unlink(), FileNotFoundError, r"saliency map not found: .*two\.png"),
    (lambda root: (root / "labels.txt").write_text("one 1 3\n"), KeyError,
     r"image two \(line 'two.jpg 1' of .*list\.txt\) has no line in the label file .*labels\.txt"),
    (lambda root: (root / "labels.txt").write_text("one 1 3\ntwo 4\n"), ValueError,
     r"labels\.txt:2: image two: labels \[4\] outside 1\.\.3"),
    (lambda root: (root / "cams" / "two.npy").unlink(), FileNotFoundError, r"no heatmaps for image two: .*two\.npy"),
])
def test_bad_input_names_the_file_and_writes_no_cue_file(tmp_path, spoil, error, message):
    make_cues = load_tool("make_cues")
    out = tmp_path / "cues.pickle"
    args = write_cue_inputs(tmp_path) + ["--out", str(out)]
    spoil(tmp_path)
    with pytest.raises(error, match=message):
        make_cues.main(args)
    assert not out.exists() and not out.with_name(out.name + ".json").exists()
    assert not [path.name for path in tmp_path.iterdir() if path.name.startswith(".cues")]
