"""Seed growth over training: the batch figures of dsrg.seedgrowth by hand, and the DSRG layer stack
in an inline-prototxt net exposing them to pylayers.seedgrowth (mirrored images flipped back)."""
import math
import os

import numpy as np
import pytest

from caffe_helpers import input_layer, make_net, python_layer
from dsrg.cues import save_cues
from dsrg.fileio import atomic_save_label_png
from dsrg.seedgrowth import seed_densities, seed_precisions
from dsrg.seeds import SeedQuality

os.environ.setdefault("GLOG_minloglevel", "2")
import caffe  # noqa: E402  (after GLOG_minloglevel is set)
caffe.set_mode_cpu()

from pylayers.layers import AnnotationLayer, DSRGLayer  # noqa: E402
from pylayers.seedgrowth import SeedGrowthReader, seed_growth_figures  # noqa: E402

NUM_CLASSES, GRID = 3, 4


def hand_batch():
    """Two images' seeds on a 4×4 grid (classes: 0 background, 1, 2) in the images' own frame.

    a: foreground (class 1) at column 0, rows 0-2, and at (0, 2); background at (0, 3), (1, 3).
    b: background along row 3 and at (0, 2); class 2 at (0, 1).
    """
    seeds = np.zeros((2, NUM_CLASSES, GRID, GRID), dtype=np.float32)
    seeds[0, 1, 0:3, 0] = seeds[0, 1, 0, 2] = 1
    seeds[0, 0, 0:2, 3] = 1
    seeds[1, 0, 3, :] = seeds[1, 0, 0, 2] = 1
    seeds[1, 2, 0, 1] = 1
    return seeds


def write_ground_truth(folder):
    """8×8 GT: a's left half class 1 (grid columns 0-1 sample GT columns 0 and 2), the rest background;
    b's top half class 2, bottom half background, pixel (7, 7) ignored (grid cell (3, 3))."""
    a = np.zeros((8, 8), dtype=np.uint8)
    a[:, :4] = 1
    b = np.zeros((8, 8), dtype=np.uint8)
    b[:4] = 2
    b[7, 7] = 255
    atomic_save_label_png(folder / "a.png", a)
    atomic_save_label_png(folder / "b.png", b)


# By hand: 32 cells; background seeds on 7 (a 2, b 5), foreground on 5 (a 4, b 1). Against GT: background
# seeds on valid cells 6 (b's (3, 3) is ignored), 5 right (b's (0, 2) lies on class 2); foreground 5, 4
# right (a's (0, 2) lies on background).
EXPECTED = {"seed_bg_density": 7 / 32, "seed_fg_density": 5 / 32, "seed_bg_precision": 5 / 6,
            "seed_fg_precision": 4 / 5}


def test_densities_by_hand():
    assert seed_densities(hand_batch()) == pytest.approx({k: EXPECTED[k] for k in ("seed_bg_density",
                                                                                   "seed_fg_density")})
    # a cell with two foreground classes counts once; a background seed under it counts for background too
    seeds = np.zeros((1, 3, 1, 2), dtype=np.float32)
    seeds[0, :, 0, 0] = 1
    assert seed_densities(seeds) == {"seed_bg_density": 0.5, "seed_fg_density": 0.5}


def test_precisions_by_hand_and_the_cache(tmp_path):
    write_ground_truth(tmp_path)
    cache = {}
    figures = seed_precisions(hand_batch(), ["a", "b"], tmp_path, cache)
    assert figures == pytest.approx({k: EXPECTED[k] for k in ("seed_bg_precision", "seed_fg_precision")})
    assert sorted(cache) == [("a", GRID, GRID), ("b", GRID, GRID)]
    (tmp_path / "a.png").unlink()
    assert seed_precisions(hand_batch(), ["a", "b"], tmp_path, cache) == figures   # read once per run
    with pytest.raises(FileNotFoundError, match=r"a\.png: ground truth is missing"):
        seed_precisions(hand_batch(), ["a", "b"], tmp_path)


def test_precision_without_seeds_of_a_group_is_nan(tmp_path):
    write_ground_truth(tmp_path)
    seeds = np.zeros((1, NUM_CLASSES, GRID, GRID), dtype=np.float32)
    seeds[0, 0, 0, 3] = 1
    figures = seed_precisions(seeds, ["a"], tmp_path)
    assert figures["seed_bg_precision"] == 1.0 and math.isnan(figures["seed_fg_precision"])
    assert math.isnan(SeedQuality(3).foreground_precision())


def test_malformed_batches_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"N×C×h×w with C >= 2.*\(3, 4, 4\)"):
        seed_densities(np.zeros((3, 4, 4)))
    with pytest.raises(ValueError, match="1 image ids for a batch of 2"):
        seed_precisions(hand_batch(), ["a"], tmp_path)


# ---- the layer stack in a net -----------------------------------------------------------------------

def stack_net(cue_path, with_dsrg=True):
    """ids, images, probs -> AnnotationLayer (mirroring, seed 0) -> DSRGLayer -> grown."""
    annotation = f"{{'cues': '{cue_path}', 'mirror': True, 'num_classes': {NUM_CLASSES}, 'cue_size': {GRID}, 'seed': 0}}"
    layers = [python_layer("annotation", "AnnotationLayer", ["ids", "images"], ["labels", "cues", "images_out"],
                           param_str=annotation, propagate_down=[0, 0])]
    if with_dsrg:
        layers.append(python_layer("dsrg", "DSRGLayer", ["labels", "probs", "cues", "images_out"], ["grown"],
                                   param_str="{'th1': 0.99, 'th2': 0.85}", propagate_down=[0, 0, 0, 0]))
    inputs = {"ids": (2,), "images": (2, 3, 9, 9), "probs": (2, NUM_CLASSES, GRID, GRID)}
    return make_net(caffe, "".join(input_layer(name, shape) for name, shape in inputs.items()) + "".join(layers))


def cue_entry(seeds):
    classes, rows, cols = np.nonzero(seeds > 0.5)
    return np.stack([classes, rows, cols])


@pytest.fixture
def stage1_case(tmp_path, crf_backend):
    seeds = hand_batch()
    save_cues(tmp_path / "cues.npz", {"0_labels": np.array([1]), "0_cues": cue_entry(seeds[0]),
                                      "1_labels": np.array([2]), "1_cues": cue_entry(seeds[1])})
    (tmp_path / "input_list.txt").write_text("a.jpg 0\nb.jpg 1\n")
    write_ground_truth(tmp_path)
    net = stack_net(tmp_path / "cues.npz")
    net.blobs["ids"].data[...] = [0, 1]
    net.blobs["images"].data[...] = np.random.default_rng(0).uniform(-100, 100, net.blobs["images"].data.shape)
    # uniform probabilities: no class is confident, so the seeds grow no further than the cues
    net.blobs["probs"].data[...] = 1.0 / NUM_CLASSES
    return tmp_path, net


def test_the_dsrg_layer_exposes_its_figures_through_pycaffe(stage1_case):
    _, net = stage1_case
    position = list(net._layer_names).index("dsrg")
    layer = net.layers[position]
    assert isinstance(layer, DSRGLayer) and layer is net.layer_dict["dsrg"]   # the Python object itself
    assert layer.grown_seeds is None and layer.growth_figures == {}
    net.forward()
    np.testing.assert_array_equal(layer.grown_seeds, net.blobs["grown"].data)
    np.testing.assert_array_equal(net.blobs["grown"].data, net.blobs["cues"].data)   # nothing confident to grow
    assert layer.growth_figures == pytest.approx({k: EXPECTED[k] for k in ("seed_bg_density", "seed_fg_density")})
    annotation = net.layer_dict["annotation"]
    assert isinstance(annotation, AnnotationLayer) and annotation.batch_image_indices == [0, 1]


def test_the_reader_finds_the_layers_and_flips_mirrored_seeds_back(stage1_case):
    folder, net = stage1_case
    reader = SeedGrowthReader(net, gt_dir=folder, input_list=folder / "input_list.txt")
    assert reader.columns == ["seed_bg_density", "seed_fg_density", "seed_bg_precision", "seed_fg_precision"]
    with pytest.raises(RuntimeError, match="'dsrg' has no figures before the net's first forward"):
        reader.figures()
    mirrored_a = set()
    for _ in range(6):
        net.forward()
        mirrored_a.add(bool(net.layer_dict["annotation"].batch_mirrored[0]))
        figures = reader.figures()
        assert list(figures) == reader.columns
        assert figures == pytest.approx(EXPECTED)
    assert mirrored_a == {True, False}   # a's seeds were compared in both frames
    densities = seed_growth_figures(net)
    assert densities == pytest.approx({k: EXPECTED[k] for k in ("seed_bg_density", "seed_fg_density")})


def test_the_reader_without_a_dsrg_layer_and_with_half_the_ground_truth(stage1_case):
    folder, _ = stage1_case
    net = stack_net(folder / "cues.npz", with_dsrg=False)
    reader = SeedGrowthReader(net, gt_dir=folder, input_list=folder / "input_list.txt")
    assert reader.columns == [] and reader.figures() == {}
    with pytest.raises(ValueError, match="needs both a ground-truth folder and the input list"):
        SeedGrowthReader(net, gt_dir=folder)


def test_an_image_outside_the_input_list_is_named(stage1_case):
    folder, net = stage1_case
    (folder / "short_list.txt").write_text("a.jpg 0\n")
    net.forward()
    with pytest.raises(ValueError, match=r"image index 1 of the batch is not in the input list .*short_list\.txt"):
        SeedGrowthReader(net, gt_dir=folder, input_list=folder / "short_list.txt").figures()
