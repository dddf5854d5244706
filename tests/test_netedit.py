"""Prototxt variants (dsrg.netedit, tools/render_experiment.py --edits), the voc12-photos experiment and
the no-growing ablation rendered from the published templates, and tools/compare_evals.py."""
import ast
import json
from pathlib import Path

import pytest
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from caffe_helpers import load_tool
from dsrg import netedit

REPO = Path(__file__).resolve().parents[1]
VALUES = {"IMAGE_DIR": "/data/JPEGImages", "INPUT_LIST": "/data/lists/input_list.txt", "CUES": "/data/cues.pickle",
          "STAGE2_ROOT": "/", "STAGE2_LIST": "/run/stage2_train.txt", "IMAGE_LABELS": "/data/lists/image_labels.txt",
          "CAM_LIST": "/data/lists/input_list.txt"}

NET = """
name: "n"
layer { name: "data" type: "Input" top: "x" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv1_1" type: "Convolution" bottom: "x" top: "c1" param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "conv1_2" type: "Convolution" bottom: "c1" top: "c2" param { lr_mult: 1 } param { lr_mult: 2 }
  convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "pool" type: "Pooling" bottom: "c2" top: "p" pooling_param { pool: AVE kernel_size: 2 } }
layer { name: "loss" type: "EuclideanLoss" bottom: "p" bottom: "x" top: "loss" }
"""




def net():
    return text_format.Parse(NET, caffe_pb2.NetParameter())


def edit(lines, message, file_name="net.prototxt"):
    return netedit.apply_edits(message, netedit.parse_edits(lines, "test.edits"), file_name)


def test_set_fields_through_globs_indexes_and_enums():
    message = net()
    applied = edit("""
        # comment lines and blank lines are skipped

        net.prototxt          conv1_*  param[*].lr_mult  0
        *.prototxt,x.txt      conv1_2  convolution_param.num_output  16
        net.prototxt          pool     pooling_param.pool  MAX
        net.prototxt          loss     bottom[1]  "c1"
        other.prototxt        loss     bottom[1]  "never"
    """, message)
    assert applied == 4
    layers = {layer.name: layer for layer in message.layer}
    assert [p.lr_mult for name in ("conv1_1", "conv1_2") for p in layers[name].param] == [0, 0, 0, 0]
    assert layers["conv1_2"].convolution_param.num_output == 16
    assert layers["conv1_1"].convolution_param.num_output == 4
    assert layers["pool"].pooling_param.pool == caffe_pb2.PoolingParameter.MAX
    assert list(layers["loss"].bottom) == ["p", "c1"]


def test_delete_and_top_level_fields():
    message = net()
    edit("net.prototxt pool delete\nnet.prototxt - name \"renamed\"", message)
    assert [layer.name for layer in message.layer] == ["data", "conv1_1", "conv1_2", "loss"]
    assert message.name == "renamed"
    solver = text_format.Parse('base_lr: 0.01 type: "SGD"', caffe_pb2.SolverParameter())
    edit('s.prototxt - base_lr 1e-4\ns.prototxt - type "Adam"\ns.prototxt - momentum2 0.999', solver, "s.prototxt")
    assert (solver.base_lr, solver.type, solver.momentum2) == (pytest.approx(1e-4), "Adam", pytest.approx(0.999))


@pytest.mark.parametrize("line, message", [
    ("net.prototxt nothing_* param[0].lr_mult 0", r"test\.edits:1: no layer of net\.prototxt matches 'nothing_\*'"),
    ("net.prototxt conv1_1 param[5].lr_mult 0", r"param\[5\] does not exist: the field has 2 entries"),
    ("net.prototxt conv1_1 convolution_param.no_such 3", r"has no field 'no_such'"),
    ("net.prototxt conv1_1 convolution_param.num_output many", r"'many' is not a valid value of num_output"),
    ("net.prototxt conv1_1 param.lr_mult 0", r"param is repeated; write param\[i\] or param\[\*\]"),
    ("net.prototxt conv1_1 convolution_param 3", r"convolution_param is a message"),
    ("net.prototxt conv1_1 name[0] \"x\"", r"name is not a repeated field"),
])
def test_edits_that_match_nothing_or_do_not_fit_are_errors_naming_the_line(line, message):
    with pytest.raises(ValueError, match=message):
        edit(line, net())


@pytest.mark.parametrize("text, message", [
    ("net.prototxt conv1_1", r"test\.edits:1: expected 'FILE LAYER FIELD VALUE' or 'FILE LAYER delete'"),
    ("net.prototxt - delete", r"would delete a whole file"),
    ("\nnet.prototxt conv1_1 param[x].lr_mult 0", r"test\.edits:2: bad field path"),
])
def test_malformed_edit_lines_are_refused(text, message):
    with pytest.raises(ValueError, match=message):
        netedit.parse_edits(text, "test.edits")


def test_render_with_edits_checks_file_globs_and_substitutes_placeholders(tmp_path):
    render = load_tool("render_experiment")
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "net.prototxt").write_text(NET)
    (exp / "notes.txt").write_text("kept as it is\n")
    edits = tmp_path / "v.edits"
    edits.write_text('net.prototxt loss bottom[1] "${BLOB}"\n')
    written = render.render_experiment(exp, tmp_path / "out", {"BLOB": "c2"}, edit_files=[edits])
    assert sorted(path.name for path in written) == ["net.prototxt", "notes.txt"]
    rendered = text_format.Parse((tmp_path / "out" / "net.prototxt").read_text(), caffe_pb2.NetParameter())
    assert list(rendered.layer[-1].bottom) == ["p", "c2"]
    assert (tmp_path / "out" / "notes.txt").read_text() == "kept as it is\n"
    edits.write_text('solver.prototxt - base_lr 1\n')
    with pytest.raises(ValueError, match=r"no file of the base experiment matches 'solver\.prototxt'"):
        render.render_experiment(exp, tmp_path / "out2", {}, edit_files=[edits])


def rendered(tmp_path, *edit_files, template="voc12-vgg16"):
    render = load_tool("render_experiment")
    out = tmp_path / "rendered"
    render.render_experiment(REPO / "experiment" / template, out, VALUES, edit_files=list(edit_files))
    return {name: text_format.Parse((out / name).read_text(),
                                    caffe_pb2.SolverParameter() if "solver" in name else caffe_pb2.NetParameter())
            for name in ("stage1_train.prototxt", "stage2_train.prototxt", "deploy.prototxt",
                         "stage1_solver.prototxt", "stage2_solver.prototxt")}, out


PHOTOS = REPO / "experiment" / "voc12-photos"


def test_voc12_photos_is_the_published_net_sized_for_the_cpu(tmp_path):
    nets, out = rendered(tmp_path, PHOTOS / "photos.edits")
    stage1, stage2, deploy = (nets[name] for name in ("stage1_train.prototxt", "stage2_train.prototxt",
                                                      "deploy.prototxt"))
    published, _ = rendered(tmp_path / "published")
    data = stage1.layer[0].image_data_param
    assert (data.batch_size, data.new_height, data.new_width) == (10, 161, 161)
    annotation = ast.literal_eval(stage1.layer[1].python_param.param_str)
    assert annotation == {"cues": "/data/cues.pickle", "mirror": True, "cue_size": 21, "cue_file_size": 41}
    stage2_data = ast.literal_eval(stage2.layer[0].python_param.param_str)
    assert (stage2_data["crop_size"], stage2_data["source"]) == (161, "/run/stage2_train.txt")
    text = (out / "stage1_train.prototxt").read_text()
    assert "'cue_size': 21" in text and "\\'" not in text

    def structure(message):
        return [(layer.name, layer.type, list(layer.bottom), list(layer.top)) for layer in message.layer]

    for name in ("stage1_train.prototxt", "stage2_train.prototxt", "deploy.prototxt"):
        assert structure(nets[name]) == structure(published[name]), f"{name}: the layer graph must stay published"
        for layer in nets[name].layer:
            if layer.name.startswith(("fc6_", "fc7_")):
                assert layer.convolution_param.num_output == 256
            if layer.name.startswith("fc8-SEC_"):
                assert layer.convolution_param.num_output == 21
    for net_param in (stage1, stage2):
        for layer in net_param.layer:
            if layer.name.startswith("conv"):
                learning = [1, 2] if layer.name.startswith("conv5_") else [0, 0]
                assert [p.lr_mult for p in layer.param] == learning, layer.name
            if layer.name.startswith(("fc6_", "fc7_")):
                assert layer.convolution_param.weight_filler.std == pytest.approx(0.01)
                assert [p.lr_mult for p in layer.param] == [1, 2]
    dsrg = next(layer for layer in stage1.layer if layer.name == "dsrg")
    assert ast.literal_eval(dsrg.python_param.param_str) == {"th1": 0.99, "th2": 0.85}


@pytest.mark.parametrize("edit_files", [(), (PHOTOS / "photos.edits",)], ids=["voc12-vgg16", "voc12-photos"])
def test_no_growing_ablation_feeds_the_original_cues_to_the_seed_loss(tmp_path, edit_files):
    ablation = REPO / "experiment" / "ablations" / "no-growing.edits"
    nets, _ = rendered(tmp_path, *edit_files, ablation)
    with_growing, _ = rendered(tmp_path / "with", *edit_files)
    stage1 = nets["stage1_train.prototxt"]
    names = [layer.name for layer in stage1.layer]
    assert "dsrg" not in names and "dsrg" in [layer.name for layer in with_growing["stage1_train.prototxt"].layer]
    seed_loss = next(layer for layer in stage1.layer if layer.name == "loss-Seed")
    assert list(seed_loss.bottom) == ["fc8-SEC-Softmax", "cues"]
    for name in ("stage2_train.prototxt", "deploy.prototxt", "stage1_solver.prototxt", "stage2_solver.prototxt"):
        assert nets[name] == with_growing[name], f"{name} must not change in the ablation"


def test_compare_evals_puts_evaluations_side_by_side(tmp_path, capsys):
    compare = load_tool("compare_evals")

    def summary(miou, ious, gt):
        return {"miou": miou, "per_class": [{"name": name, "iou": iou, "gt_pixels": pixels}
                                            for name, iou, pixels in zip(("background", "cat", "dog"), ious, gt)]}

    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps(summary(40.0, [80.0, 20.5, None], [10, 5, 0])))
    second.write_text(json.dumps(summary(35.25, [70.0, 0.0, None], [10, 5, 0])))
    assert compare.main(["--eval", f"grown={first}", "--eval", f"raw={second}", "--markdown",
                         str(tmp_path / "t.md")]) == 0
    table = (tmp_path / "t.md").read_text()
    assert table == capsys.readouterr().out
    assert table.splitlines() == ["| | grown | raw |", "|---|---:|---:|", "| **val mIoU** | **40.00** | **35.25** |",
                                  "| background | 80.0 | 70.0 |", "| cat | 20.5 | 0.0 |"]
    with pytest.raises(FileNotFoundError, match="column 'x'"):
        compare.main(["--eval", f"x={tmp_path / 'missing.json'}"])
