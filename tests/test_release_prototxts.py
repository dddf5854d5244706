"""The DSRG release's own prototxts (speedinghzl/DSRG, training/experiment/seed_mc/) with our layers.

Covered here, in about ten seconds on two cores:

- every python_param the release's train-s.prototxt, train-f.prototxt and deploy.prototxt pass
  (verbatim copies below; deploy has none) parses through our layers' schemas, and so does the
  DSRGLayer key 'iters' that the release's layer accepts;
- the release's stage-1 data + DSRG section (ImageData 321×321 → Annotation → Softmax, CRF,
  update-seed, loss-Seed, loss-Constrain, names, bottoms and propagate_down as released) and its
  stage-2 data + loss section (ImageSegDataLayer batch 10, crop (321, 321) → label_shrink,
  SoftmaxWithLoss, SegAccuracy), each with the release's param strings and only the paths changed
  to generated JPEGs, label PNGs and a cue pickle written by dsrg.cues.save_cues, train two SGD
  steps. The VGG16/ASPP trunk between them is replaced by a shrink-8 Interp and a 1×1 convolution
  ("fc8-SEC", 41×41 scores as the trunk gives); the trunk at 321×321 takes minutes per step on a CPU;
- the stage-2 section with a rectangular crop (161, 241);
- with DSRG_RELEASE_DIR set to a checkout of the release: its three prototxts, with only the paths
  changed, build with our Caffe and layers (no forward: too slow here), and their param strings are
  the copies below.
"""
import ast
import os
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("GLOG_minloglevel", "2")
import caffe  # noqa: E402  (after GLOG_minloglevel is set)
caffe.set_mode_cpu()

from google.protobuf import text_format  # noqa: E402

from caffe.proto import caffe_pb2  # noqa: E402
from dsrg.cues import CueFileWarning, save_cues  # noqa: E402
from dsrg.fileio import atomic_save_label_png  # noqa: E402
from dsrg.params import parse_param_str  # noqa: E402
from pylayers.layer import ImageSegDataLayer  # noqa: E402
from pylayers.layers import (  # noqa: E402
    AnnotationLayer,
    BalancedSeedLossLayer,
    ConstrainLossLayer,
    CRFLayer,
    DSRGLayer,
    SoftmaxLayer,
)

# The release's python_param values, verbatim: (prototxt, layer name, python layer, param_str or None).
RELEASE_PYTHON_PARAMS = [
    ("train-s", "Annotation", "AnnotationLayer", "{'cues': 'localization_cues-sal.pickle', 'mirror': True}"),
    ("train-s", "Softmax", "SoftmaxLayer", None),
    ("train-s", "CRF", "CRFLayer", None),
    ("train-s", "update-seed", "DSRGLayer", "{'th1': 0.99, 'th2': 0.85}"),
    ("train-s", "loss-Seed", "BalancedSeedLossLayer", None),
    ("train-s", "loss-Constrain", "ConstrainLossLayer", None),
    ("train-f", "data", "ImageSegDataLayer",
     "{'batch_size':10 ,'root_folder': '/workspace/hzl/data/VOCdevkit/voc12' ,'mean': (104.0, 117.0, 123.0), "
     "'source': 'list/train.txt', 'mirror': True, 'crop_size': (321, 321)}"),
]
RELEASE_PATHS = {
    "cues": "'localization_cues-sal.pickle'",
    "stage2_root": "'/workspace/hzl/data/VOCdevkit/voc12'",
    "stage2_list": "'list/train.txt'",
    "stage1_images": "/workspace/hzl/data/VOCdevkit/VOC2012/JPEGImages/",
    "stage1_list": "list/input_list.txt",
}
LAYER_CLASSES = {cls.__name__: cls for cls in (AnnotationLayer, SoftmaxLayer, CRFLayer, DSRGLayer,
                                                 BalancedSeedLossLayer, ConstrainLossLayer, ImageSegDataLayer)}


def release_param(layer):
    return next(param for _, _, name, param in RELEASE_PYTHON_PARAMS if name == layer)


def with_paths(param_str, replacements):
    """The release's param_str with quoted path literals replaced (the only edit made to it)."""
    for release_literal, path in replacements.items():
        assert param_str.count(release_literal) == 1
        param_str = param_str.replace(release_literal, repr(str(path)))
    return param_str


@pytest.mark.parametrize("prototxt, name, layer, param_str", RELEASE_PYTHON_PARAMS)
def test_release_param_strings_parse_through_our_schemas(prototxt, name, layer, param_str):
    cls = LAYER_CLASSES[layer]
    parsed = parse_param_str(layer, param_str, cls.param_schema)
    if param_str:
        for key, value in ast.literal_eval(param_str).items():
            assert parsed[key] == value, (prototxt, name, key)


def test_release_dsrg_layer_keys_including_the_unused_iters():
    parsed = parse_param_str("DSRGLayer", "{'th1': 0.99, 'th2': 0.85, 'iters': 8000}", DSRGLayer.param_schema)
    assert parsed == {"th1": 0.99, "th2": 0.85, "iters": 8000}
    assert parse_param_str("DSRGLayer", release_param("DSRGLayer"), DSRGLayer.param_schema)["iters"] == -1


# ---- tiny generated data ---------------------------------------------------------------------------

def write_jpeg(path, height, width, seed):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = np.linspace(0, 255, height)[:, None, None]
    cols = np.linspace(0, 255, width)[None, :, None]
    rgb = (0.5 * rows + 0.5 * cols + rng.normal(0, 20, (height, width, 3))).clip(0, 255).astype(np.uint8)
    Image.fromarray(rgb).save(path, quality=90)


def stage1_data(root):
    """JPEGs, an input list "<name>.jpg <index>" and the cue file, with data the release trains on:
    image 1 lists label 0 and a label twice, image 2 has cues of a class it does not list."""
    names = [f"img{index}" for index in range(4)]
    for index, name in enumerate(names):
        write_jpeg(root / "JPEGImages" / f"{name}.jpg", 48 + 8 * index, 64, index)
    (root / "input_list.txt").write_text("".join(f"{name}.jpg {index}\n" for index, name in enumerate(names)))
    rng = np.random.default_rng(0)
    image_labels = [[15], [0, 7, 7], [12], [3, 9]]
    mapping = {}
    for index, labels in enumerate(image_labels):
        classes = [0] * 30 + [label for label in labels if label] * 10 + ([5] * 4 if index == 2 else [])
        mapping[f"{index}_labels"] = np.array(labels)
        mapping[f"{index}_cues"] = np.stack([np.array(classes), rng.integers(0, 41, len(classes)),
                                             rng.integers(0, 41, len(classes))])
    cue_path = root / "localization_cues-sal.pickle"
    save_cues(cue_path, mapping)
    return cue_path, mapping


def stage2_data(root):
    """JPEGs and grey label PNGs in the release's stage-2 list layout ("/JPEGImages/x.jpg /DSRGOutput/x.png"),
    some smaller than the crop (padded) and some larger (cropped)."""
    sizes = [(200, 300), (400, 360), (321, 321), (150, 500), (330, 250)]
    lines = []
    for index, (height, width) in enumerate(sizes):
        name = f"2007_{index:06d}"
        write_jpeg(root / "JPEGImages" / f"{name}.jpg", height, width, 10 + index)
        label = np.zeros((height, width), np.uint8)
        label[height // 4: 3 * height // 4, width // 4: 3 * width // 4] = 1 + index
        label[:2] = 255
        atomic_save_label_png(root / "DSRGOutput" / f"{name}.png", label)
        lines.append(f"/JPEGImages/{name}.jpg /DSRGOutput/{name}.png\n")
    (root / "train.txt").write_text("".join(lines))
    return root / "train.txt"


def solver_for(tmp_path, net_text):
    net_path = tmp_path / "net.prototxt"
    net_path.write_text(textwrap.dedent(net_text))
    solver_path = tmp_path / "solver.prototxt"
    solver_path.write_text(f'net: "{net_path}"\nbase_lr: 0.001\nlr_policy: "fixed"\nmomentum: 0.9\n'
                           f'max_iter: 10\ndisplay: 0\nsnapshot: 0\nsolver_mode: CPU\nrandom_seed: 1\n')
    return solver_path


STAND_IN_TRUNK = """
    layer {{ name: "shrink" type: "Interp" bottom: "{images}" top: "images-41"
            interp_param {{ shrink_factor: 8 pad_beg: 0 pad_end: 0 }} }}
    layer {{ name: "fc8-SEC" type: "Convolution" bottom: "images-41" top: "fc8-SEC"
            param {{ lr_mult: 10 decay_mult: 1 }} param {{ lr_mult: 20 decay_mult: 0 }}
            convolution_param {{ num_output: 21 kernel_size: 1
                                weight_filler {{ type: "gaussian" std: 0.01 }} bias_filler {{ type: "constant" value: 0 }} }} }}
"""


# ---- stage 1: train-s.prototxt's data and DSRG layers -----------------------------------------------

def stage1_net(root, cue_path):
    annotation = with_paths(release_param("AnnotationLayer"), {RELEASE_PATHS["cues"]: cue_path})
    return f"""
    name: "DSRG"
    layer {{ name: "Input" type: "ImageData" top: "images_origin" top: "image_ids"
            transform_param {{ mirror: false mean_value: 104 mean_value: 117 mean_value: 123 }}
            image_data_param {{ root_folder: "{root}/JPEGImages/" source: "{root}/input_list.txt"
                               batch_size: 2 new_height: 321 new_width: 321 shuffle: true }} }}
    layer {{ type: "Python" name: 'Annotation' bottom: 'image_ids' bottom: 'images_origin'
            top: 'labels' top: 'cues' top: 'images'
            python_param {{ module: 'pylayers' layer: 'AnnotationLayer' param_str: "{annotation}" }}
            propagate_down: 0 propagate_down: 0 }}
    {STAND_IN_TRUNK.format(images="images")}
    layer {{ type: "Python" name: 'Softmax' bottom: 'fc8-SEC' top: 'fc8-SEC-Softmax'
            python_param {{ module: 'pylayers' layer: 'SoftmaxLayer' }} propagate_down: 1 }}
    layer {{ type: "Python" name: 'CRF' bottom: 'fc8-SEC-Softmax' bottom: 'images' top: 'fc8-SEC-CRF-log'
            python_param {{ module: 'pylayers' layer: 'CRFLayer' }} propagate_down: 1 propagate_down: 0 }}
    layer {{ bottom: "labels" bottom: "fc8-SEC-Softmax" bottom: "cues" bottom: "images" top: "cues-new"
            name: "update-seed" type: "Python"
            python_param {{ module: "pylayers" layer: "DSRGLayer" param_str: "{release_param('DSRGLayer')}" }} }}
    layer {{ bottom: "fc8-SEC-Softmax" bottom: "cues-new" top: "loss-Seed" name: "loss-Seed" type: "Python"
            python_param {{ module: "pylayers" layer: "BalancedSeedLossLayer" }} loss_weight: 1 }}
    layer {{ bottom: "fc8-SEC-Softmax" bottom: "fc8-SEC-CRF-log" top: "loss-Constrain" name: "loss-Constrain"
            type: "Python" python_param {{ module: "pylayers" layer: "ConstrainLossLayer" }} loss_weight: 1 }}
    """


def test_release_stage1_section_trains_on_release_style_cues(tmp_path, crf_backend):
    cue_path, mapping = stage1_data(tmp_path)
    with pytest.warns(CueFileWarning, match=r"1 images list label 0 .*1 images list a label more than once"
                                            r".*1 images have 4 cues of classes not in their labels"):
        solver = caffe.SGDSolver(str(solver_for(tmp_path, stage1_net(tmp_path, cue_path))))
    net = solver.net
    weights = net.params["fc8-SEC"][0].data.copy()
    seen = set()
    for _ in range(2):
        solver.step(1)
        assert np.isfinite(net.blobs["loss-Seed"].data).all() and np.isfinite(net.blobs["loss-Constrain"].data).all()
        assert net.blobs["cues"].data.shape == (2, 21, 41, 41) and net.blobs["labels"].data.shape == (2, 1, 1, 21)
        assert net.blobs["cues-new"].data.shape == (2, 21, 41, 41)
        assert np.all(net.blobs["cues-new"].data >= net.blobs["cues"].data)   # seeds only grow
        for position, image_id in enumerate(net.blobs["image_ids"].data.astype(int).tolist()):
            seen.add(image_id)
            present = np.flatnonzero(net.blobs["labels"].data[position, 0, 0]).tolist()
            assert present == sorted({0} | set(mapping[f"{image_id}_labels"].tolist()))   # as the release
            seeded = np.flatnonzero(net.blobs["cues"].data[position].sum(axis=(1, 2))).tolist()
            assert seeded == sorted(set(mapping[f"{image_id}_cues"][0].tolist()))   # unlisted class 5 kept
    assert seen == {0, 1, 2, 3}
    assert not np.array_equal(net.params["fc8-SEC"][0].data, weights)


# ---- stage 2: train-f.prototxt's data and loss layers -----------------------------------------------

def stage2_net(root, source, param_str):
    param_str = with_paths(param_str, {RELEASE_PATHS["stage2_root"]: root, RELEASE_PATHS["stage2_list"]: source})
    return f"""
    name: "DSRG"
    layer {{ name: "data" type: "Python" top: "images" top: "label"
            python_param {{ module: 'pylayers.layer' layer: 'ImageSegDataLayer' param_str: "{param_str}" }}
            include: {{ phase: TRAIN }} }}
    {STAND_IN_TRUNK.format(images="images")}
    layer {{ bottom: "label" top: "label_shrink" name: "label_shrink" type: "Interp"
            interp_param {{ shrink_factor: 8 pad_beg: 0 pad_end: 0 }} }}
    layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "fc8-SEC" bottom: "label_shrink"
            include {{ phase: TRAIN }} loss_param {{ ignore_label: 255 }} loss_weight: 1 }}
    layer {{ name: "accuracy" type: "SegAccuracy" bottom: "fc8-SEC" bottom: "label_shrink" top: "accuracy"
            seg_accuracy_param {{ ignore_label: 255 }} }}
    """


@pytest.mark.parametrize("crop, scores", [((321, 321), (41, 41)), ((161, 241), (21, 31))])
def test_release_stage2_section_trains(tmp_path, crop, scores):
    source = stage2_data(tmp_path)
    param_str = release_param("ImageSegDataLayer").replace("'crop_size': (321, 321)", f"'crop_size': {crop}")
    solver = caffe.SGDSolver(str(solver_for(tmp_path, stage2_net(tmp_path, source, param_str))))
    net = solver.net
    try:
        weights = net.params["fc8-SEC"][0].data.copy()
        for _ in range(2):
            solver.step(1)
            assert net.blobs["images"].data.shape == (10, 3) + crop
            assert net.blobs["label"].data.shape == (10, 1) + crop
            assert net.blobs["label_shrink"].data.shape == (10, 1) + scores
            assert net.blobs["fc8-SEC"].data.shape == (10, 21) + scores
            labels = net.blobs["label"].data
            assert set(np.unique(labels).tolist()) <= {0, 1, 2, 3, 4, 5, 255}
            loss = net.blobs["(automatic)"].data   # Caffe's name for the top of the release's top-less loss
            assert loss.shape == () and np.isfinite(loss) and net.blobs["accuracy"].data.shape == (1, 1, 1, 3)
        assert not np.array_equal(net.params["fc8-SEC"][0].data, weights)
    finally:
        net.layers[list(net._layer_names).index("data")].loader.close()


@pytest.mark.parametrize("crop, message", [
    ("(321, 321, 3)", r"got \(321, 321, 3\)"), ("(321, 0)", r"got \(321, 0\)"), ("321.0", "got float 321.0"),
])
def test_bad_crop_sizes_name_the_layer(tmp_path, crop, message):
    source = stage2_data(tmp_path)
    param_str = release_param("ImageSegDataLayer").replace("(321, 321)", crop)
    with pytest.raises(ValueError, match=rf"ImageSegDataLayer: .*crop_size.*{message}"):
        caffe.SGDSolver(str(solver_for(tmp_path, stage2_net(tmp_path, source, param_str))))


# ---- the release's files themselves (needs a checkout of the release) ------------------------------

RELEASE_DIR = os.environ.get("DSRG_RELEASE_DIR")


def release_prototxt(name):
    if not RELEASE_DIR:
        pytest.skip("DSRG_RELEASE_DIR (a checkout of speedinghzl/DSRG) not set")
    path = Path(RELEASE_DIR) / "training" / "experiment" / "seed_mc" / f"{name}.prototxt"
    if not path.is_file():
        pytest.skip(f"release prototxt absent: {path}")
    net = caffe_pb2.NetParameter()
    text_format.Merge(path.read_text(), net)
    return net


@pytest.mark.parametrize("name", ["train-s", "train-f", "deploy"])
def test_release_files_param_strings_are_the_copies_above(name):
    net = release_prototxt(name)
    found = [(name, layer.name, layer.python_param.layer,
              layer.python_param.param_str if layer.python_param.HasField("param_str") else None)
             for layer in net.layer if layer.type == "Python"]
    assert found == [entry for entry in RELEASE_PYTHON_PARAMS if entry[0] == name]


def test_release_files_build_with_our_layers(tmp_path, crf_backend):
    cue_path, _ = stage1_data(tmp_path)
    source = stage2_data(tmp_path)
    for name, expected in [("train-s", {"images": (20, 3, 321, 321), "cues": (20, 21, 41, 41),
                                        "fc8-SEC": (20, 21, 41, 41), "cues-new": (20, 21, 41, 41)}),
                           ("train-f", {"images": (10, 3, 321, 321), "label_shrink": (10, 1, 41, 41),
                                        "fc8-SEC": (10, 21, 41, 41)}),
                           ("deploy", {"images": (1, 3, 321, 321), "fc8-SEC": (1, 21, 41, 41)})]:
        net_param = release_prototxt(name)
        for layer in net_param.layer:
            if layer.type == "ImageData":
                assert layer.image_data_param.root_folder == RELEASE_PATHS["stage1_images"]
                assert layer.image_data_param.source == RELEASE_PATHS["stage1_list"]
                layer.image_data_param.root_folder = f"{tmp_path}/JPEGImages/"
                layer.image_data_param.source = str(tmp_path / "input_list.txt")
            elif layer.python_param.layer == "AnnotationLayer":
                layer.python_param.param_str = with_paths(layer.python_param.param_str,
                                                          {RELEASE_PATHS["cues"]: cue_path})
            elif layer.python_param.layer == "ImageSegDataLayer":
                layer.python_param.param_str = with_paths(layer.python_param.param_str, {
                    RELEASE_PATHS["stage2_root"]: tmp_path, RELEASE_PATHS["stage2_list"]: source})
        path = tmp_path / f"{name}.prototxt"
        path.write_text(text_format.MessageToString(net_param))
        phase = caffe.TEST if name == "deploy" else caffe.TRAIN
        if name == "train-s":
            with pytest.warns(CueFileWarning):
                net = caffe.Net(str(path), phase)
        else:
            net = caffe.Net(str(path), phase)
        for blob, shape in expected.items():
            assert net.blobs[blob].data.shape == shape, (name, blob)
        if name == "train-f":
            net.layers[list(net._layer_names).index("data")].loader.close()
