"""Initial and test weights are checked before Caffe copies them (pylayers.netio.load_weights):
a file that does not parse, copies no layer, or holds a blob of another shape is an error naming
the file (and the layer and both shapes), never a silent no-op or a Caffe abort; a partial match
names the layers that keep their fillers."""
import subprocess
import sys

import caffe
import numpy as np
import pytest
from caffe.proto import caffe_pb2

from caffe_helpers import REPO_ROOT, load_tool
from pylayers.netio import WeightsError, load_net, load_weights, matching_layers

TWO_LAYER_NET = """
name: "two"
layer {{ name: "data" type: "DummyData" top: "x" top: "y"
  dummy_data_param {{ shape {{ dim: 4 dim: 3 }} shape {{ dim: 4 dim: 2 }} }} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "x" top: "h"
  inner_product_param {{ num_output: {hidden} weight_filler {{ type: "gaussian" std: 1 }} }} }}
layer {{ name: "ip2" type: "InnerProduct" bottom: "h" top: "p"
  inner_product_param {{ num_output: 2 weight_filler {{ type: "gaussian" std: 1 }} }} }}
layer {{ name: "loss" type: "EuclideanLoss" bottom: "p" bottom: "y" top: "loss" }}
"""


def write_net(folder, hidden=4, name="net"):
    path = folder / f"{name}.prototxt"
    path.write_text(TWO_LAYER_NET.format(hidden=hidden))
    return path


def saved_weights(net_path, out, keep=None):
    """The caffemodel of a net built from `net_path` (only the layers in `keep`, when given)."""
    net = caffe.Net(str(net_path), caffe.TEST)
    for index, blob in enumerate(net.params["ip1"]):
        blob.data[...] = np.arange(blob.data.size).reshape(blob.data.shape) + 10 * index
    net.save(str(out))
    if keep is not None:
        model = caffe_pb2.NetParameter()
        model.ParseFromString(out.read_bytes())
        kept = [layer for layer in model.layer if layer.name in keep]
        del model.layer[:]
        model.layer.extend(kept)
        out.write_bytes(model.SerializeToString())
    return out


def test_a_matching_file_copies_every_layer_and_a_partial_one_names_the_fillers(tmp_path):
    net_path = write_net(tmp_path)
    full = saved_weights(net_path, tmp_path / "full.caffemodel")
    net = caffe.Net(str(net_path), caffe.TEST)
    loaded = load_weights(net, full, "test")
    assert (loaded.copied, loaded.kept) == (["ip1", "ip2"], [])
    np.testing.assert_array_equal(net.params["ip1"][0].data.ravel(), np.arange(12))
    only_ip1 = saved_weights(net_path, tmp_path / "ip1.caffemodel", keep={"ip1"})
    loaded = load_weights(caffe.Net(str(net_path), caffe.TEST), only_ip1, "test")
    assert loaded.summary("train.py") == f"train.py: initialised 1 layers from {only_ip1}; 1 keep their fillers: ip2"


def test_files_that_copy_nothing_or_do_not_fit_are_errors_naming_them(tmp_path):
    net_path = write_net(tmp_path)
    net = caffe.Net(str(net_path), caffe.TEST)
    text = tmp_path / "notes.caffemodel"
    text.write_text("these are not weights\n")
    with pytest.raises(WeightsError, match=r"notes\.caffemodel: (not a binary caffemodel|no layer of the net)"):
        load_weights(net, text, "test")
    other = tmp_path / "other.caffemodel"
    model = caffe_pb2.NetParameter()
    model.layer.add(name="conv_other", type="Convolution").blobs.add().shape.dim.extend([2, 3])
    other.write_bytes(model.SerializeToString())
    with pytest.raises(WeightsError, match=r"other\.caffemodel: no layer of the net is in this file.*ip1, ip2"):
        load_weights(net, other, "test")
    full = saved_weights(net_path, tmp_path / "full.caffemodel")
    truncated = tmp_path / "truncated.caffemodel"
    truncated.write_bytes(full.read_bytes()[:-7])
    with pytest.raises(WeightsError, match=r"truncated\.caffemodel: not a binary caffemodel"):
        load_weights(net, truncated, "test")
    wider = caffe.Net(str(write_net(tmp_path, hidden=5, name="wider")), caffe.TEST)
    with pytest.raises(WeightsError, match=r"full\.caffemodel: layer ip1 blob 0 has shape 4×3, the net expects 5×3"):
        load_weights(wider, full, "test")
    with pytest.raises(WeightsError, match=r"notes\.caffemodel"):
        load_net(net_path, text, None, "infer.py")


def test_legacy_blob_shapes_compare_as_caffe_compares_them():
    net = {"ip": [(4, 3), (4,)], "relu": []}
    assert matching_layers(net, {"ip": [((1, 1, 4, 3), True), ((1, 1, 1, 4), True)], "relu": []}, "v1") == ["ip"]
    with pytest.raises(WeightsError, match=r"v1: layer ip blob 1 has shape 1×1×1×5, the net expects 4"):
        matching_layers(net, {"ip": [((1, 1, 4, 3), True), ((1, 1, 1, 5), True)]}, "v1")
    with pytest.raises(WeightsError, match=r"v1: layer ip has 1 blob\(s\), the net's ip has 2"):
        matching_layers(net, {"ip": [((4, 3), False)]}, "v1")


def test_train_refuses_weights_that_load_nothing(tmp_path):
    net_path = write_net(tmp_path)
    solver = tmp_path / "solver.prototxt"
    solver.write_text(f'net: "{net_path.name}"\nbase_lr: 0.01\nlr_policy: "fixed"\nmax_iter: 2\n')
    text = tmp_path / "notes.caffemodel"
    text.write_text("these are not weights\n")
    done = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "train.py"), "--solver", str(solver),
                           "--out", str(tmp_path / "out"), "--weights", str(text), "--no-progress"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert f"train.py: error: {text}" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "train_done.json").exists()
    train = load_tool("train")
    full = saved_weights(net_path, tmp_path / "full.caffemodel", keep={"ip1"})
    assert train.main(["--solver", str(solver), "--out", str(tmp_path / "ok"), "--weights", str(full),
                       "--no-progress"]) == 0
