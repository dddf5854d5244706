"""Multi-scale inference core (numpy), the experiment templates, and tools/train.py through Caffe.

The Caffe tests cover NaN detection, resuming from a snapshot and template parsing.
"""
import json
from pathlib import Path

import caffe
import numpy as np
import pytest

from caffe_helpers import load_tool, write_tiny_experiment
from dsrg import inference
from dsrg.resize import bilinear_resize

REPO = Path(__file__).resolve().parents[1]






# ---------------------------------------------------------------- numpy core


def test_preprocess_is_bgr_minus_mean_at_the_requested_size():
    image = np.zeros((10, 20, 3), dtype=np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 200, 100, 50
    batch = inference.preprocess(image, 6, 8, mean_bgr=(1.0, 2.0, 3.0))
    assert batch.shape == (1, 3, 6, 8) and batch.dtype == np.float32
    np.testing.assert_allclose(batch[0, :, 0, 0], [50 - 1.0, 100 - 2.0, 200 - 3.0])


def test_input_sizes_warp_and_relative():
    assert inference.input_sizes(100, 200, [241, 321, 401], "warp") == [(241, 241), (321, 321), (401, 401)]
    assert inference.input_sizes(100, 200, [0.75, 1, 1.25], "relative") == [(75, 150), (100, 200), (125, 250)]
    with pytest.raises(ValueError, match="scale mode"):
        inference.input_sizes(10, 10, [1], "crop")
    with pytest.raises(ValueError, match="side lengths"):
        inference.input_sizes(10, 10, [0.5], "warp")


def test_fuse_scales_averages_the_softmaxes_or_sums_the_scores():
    first = np.zeros((2, 2, 2), dtype=np.float32)
    first[0] = np.log(3.0)                       # softmax: (0.75, 0.25) everywhere
    second = np.zeros((2, 4, 4), dtype=np.float32)  # softmax: (0.5, 0.5) everywhere
    probs = inference.fuse_scales([first, second], 3, 5, fuse="probs")
    assert probs.shape == (2, 3, 5)
    np.testing.assert_allclose(probs[0], 0.625, atol=1e-6)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-6)
    summed = inference.fuse_scales([first, second], 3, 5, fuse="scores")
    np.testing.assert_allclose(summed[0], 0.75, atol=1e-6)
    peaked = np.zeros((3, 2, 2), dtype=np.float32)
    peaked[1] = 100.0
    floored = inference.fuse_scales([peaked], 2, 2)
    assert floored.min() >= inference.PROB_FLOOR * 0.99
    with pytest.raises(ValueError, match="number of classes"):
        inference.fuse_scales([first, np.zeros((3, 2, 2))], 2, 2)


def test_restricted_argmax_keeps_only_allowed_classes():
    probs = np.zeros((4, 1, 3), dtype=np.float32)
    probs[:, 0, 0] = (0.1, 0.6, 0.2, 0.1)
    probs[:, 0, 1] = (0.3, 0.1, 0.1, 0.5)
    probs[:, 0, 2] = (0.1, 0.2, 0.3, 0.4)
    np.testing.assert_array_equal(inference.restricted_argmax(probs), [[1, 3, 3]])
    np.testing.assert_array_equal(inference.restricted_argmax(probs, [0, 2]), [[2, 0, 2]])
    with pytest.raises(ValueError, match="allowed classes"):
        inference.restricted_argmax(probs, [0, 4])


class StripeNet:
    """A fake network: class 1 where the input's blue channel is high, class 2 where red is, else 0.

    Scores are produced at 1/4 of the input resolution (aligned corners), like a strided net."""

    def __init__(self):
        self.input_shapes = []

    def __call__(self, batch):
        self.input_shapes.append(batch.shape)
        _, _, height, width = batch.shape
        small = bilinear_resize(batch[0], (height - 1) // 4 + 1, (width - 1) // 4 + 1, dtype=np.float32)
        blue, red = small[0], small[2]
        scores = np.zeros((3,) + small.shape[1:], dtype=np.float32)
        scores[1] = (blue > 0) * 10.0
        scores[2] = (red > 0) * 10.0
        return scores


def stripe_image():
    image = np.zeros((40, 60, 3), dtype=np.uint8)
    image[:, 20:40, 2] = 255    # blue stripe (RGB image)
    image[:, 40:, 0] = 255      # red stripe
    return image


def test_predict_runs_every_scale_and_recovers_the_layout():
    net = StripeNet()
    labels, probs = inference.predict(net, stripe_image(), [0.5, 1, 1.5], "relative", mean_bgr=(128, 128, 128))
    assert net.input_shapes == [(1, 3, 20, 30), (1, 3, 40, 60), (1, 3, 60, 90)]
    assert labels.shape == (40, 60) and labels.dtype == np.uint8
    assert probs.shape == (3, 40, 60)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)
    assert np.all(labels[:, :17] == 0) and np.all(labels[:, 23:37] == 1) and np.all(labels[:, 43:] == 2)

    warp_net = StripeNet()
    warp_labels, _ = inference.predict(warp_net, stripe_image(), [33, 65], "warp", mean_bgr=(128, 128, 128))
    assert warp_net.input_shapes == [(1, 3, 33, 33), (1, 3, 65, 65)]
    assert np.mean(warp_labels == labels) > 0.9


def test_predict_restriction_and_crf_hook():
    calls = []

    def fake_crf(image, unary):
        calls.append((image.dtype, image.shape, unary.shape, float(np.exp(unary).sum(axis=2).mean())))
        marginals = np.zeros(unary.shape, dtype=np.float32)
        marginals[..., 2] = 1.0
        return marginals

    labels, probs = inference.predict(StripeNet(), stripe_image(), [1], "relative", crf=fake_crf,
                                      allowed_classes=[0, 1], mean_bgr=(128, 128, 128))
    assert calls == [(np.uint8, (40, 60, 3), (40, 60, 3), pytest.approx(1.0, abs=1e-4))]
    assert np.all(probs[2] == 1.0)
    assert set(np.unique(labels)) <= {0, 1}


# ---------------------------------------------------------------- experiment templates


def test_render_rejects_missing_and_unsafe_values(tmp_path):
    render = load_tool("render_experiment")
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "net.prototxt").write_text('name: "x"\n# a ${...} comment is left alone\nlayer { name: "${NAME}" type: "Input" top: "d" }\n')
    with pytest.raises(KeyError, match="NAME"):
        render.render_experiment(exp, tmp_path / "out", {})
    with pytest.raises(ValueError, match="cannot go into a prototxt string"):
        render.parse_values(["NAME=a'b"])
    with pytest.raises(ValueError, match="uses"):
        render.render_experiment(exp, tmp_path / "out", {"NAME": "n", "OTHER": "o"})
    written = render.render_experiment(exp, tmp_path / "out", {"NAME": "data"})
    assert 'name: "data"' in written[0].read_text() and "${...}" in written[0].read_text()


def rendered_experiment(tmp_path, name):
    render = load_tool("render_experiment")
    values = {"IMAGE_DIR": "/data/JPEGImages", "INPUT_LIST": "/data/lists/input_list.txt",
              "CUES": "/data/cues.pickle", "STAGE2_ROOT": "/", "STAGE2_LIST": "/run/stage2_train.txt",
              "IMAGE_LABELS": "/data/lists/image_labels.txt", "CAM_LIST": "/data/lists/input_list.txt"}
    render.render_experiment(REPO / "experiment" / name, tmp_path / name, values)
    return tmp_path / name


def parse(path, message):
    from google.protobuf import text_format
    text_format.Merge(Path(path).read_text(), message)
    return message


@pytest.mark.parametrize("name", ["demo", "voc12-vgg16"])
def test_experiment_templates_parse_and_have_the_dsrg_structure(tmp_path, name):
    from caffe.proto import caffe_pb2

    folder = rendered_experiment(tmp_path, name)
    stage1 = parse(folder / "stage1_train.prototxt", caffe_pb2.NetParameter())
    python_layers = [layer.python_param.layer for layer in stage1.layer if layer.type == "Python"]
    assert python_layers == ["AnnotationLayer", "SoftmaxLayer", "CRFLayer", "DSRGLayer",
                             "BalancedSeedLossLayer", "ConstrainLossLayer"]
    dsrg = next(layer for layer in stage1.layer if layer.python_param.layer == "DSRGLayer")
    assert eval_dict(dsrg.python_param.param_str) == {"th1": 0.99, "th2": 0.85}
    assert list(dsrg.bottom) == ["labels", "fc8-SEC-Softmax", "cues", "images"]
    annotation = stage1.layer[1]
    assert eval_dict(annotation.python_param.param_str)["cues"] == "/data/cues.pickle"
    fc8 = [layer for layer in stage1.layer if layer.name.startswith("fc8-SEC_")]
    assert len(fc8) == 4 and all([p.lr_mult for p in layer.param] == [10, 20] for layer in fc8)
    eltwise = next(layer for layer in stage1.layer if layer.type == "Eltwise")
    assert list(eltwise.bottom) == [layer.name for layer in fc8]

    stage2 = parse(folder / "stage2_train.prototxt", caffe_pb2.NetParameter())
    types = [layer.type for layer in stage2.layer]
    assert types[0] == "Python" and stage2.layer[0].python_param.layer == "ImageSegDataLayer"
    assert {"Interp", "SoftmaxWithLoss", "SegAccuracy"} <= set(types)
    shrink = next(layer for layer in stage2.layer if layer.type == "Interp")
    assert shrink.interp_param.shrink_factor == 8
    loss = next(layer for layer in stage2.layer if layer.type == "SoftmaxWithLoss")
    assert loss.loss_param.ignore_label == 255
    trunk = lambda net: [(l.name, l.type, l.convolution_param.num_output, list(l.convolution_param.dilation))
                         for l in net.layer if l.type in ("Convolution", "Pooling", "Eltwise")]
    deploy = parse(folder / "deploy.prototxt", caffe_pb2.NetParameter())
    assert trunk(stage1) == trunk(stage2) == trunk(deploy)
    for solver_name in ("stage1_solver.prototxt", "stage2_solver.prototxt"):
        solver = parse(folder / solver_name, caffe_pb2.SolverParameter())
        assert (folder / solver.net).is_file() and solver.momentum == pytest.approx(0.9)
        assert solver.weight_decay == pytest.approx(5e-4)


def eval_dict(text):
    import ast
    return ast.literal_eval(text)


def test_voc12_experiment_is_the_published_configuration(tmp_path):
    from caffe.proto import caffe_pb2

    folder = rendered_experiment(tmp_path, "voc12-vgg16")
    stage1 = parse(folder / "stage1_train.prototxt", caffe_pb2.NetParameter())
    data = stage1.layer[0].image_data_param
    assert (data.batch_size, data.new_height, data.new_width, data.shuffle) == (20, 321, 321, True)
    assert list(stage1.layer[0].transform_param.mean_value) == pytest.approx([104.008, 116.669, 122.675])
    layers = {layer.name: layer for layer in stage1.layer}
    assert [layers[f"conv5_{i}"].convolution_param.dilation[0] for i in (1, 2, 3)] == [2, 2, 2]
    pool5 = layers["pool5"].pooling_param
    assert (pool5.kernel_size, pool5.stride, pool5.pad) == (3, 1, 1)
    assert layers["pool5a"].pooling_param.pool == caffe_pb2.PoolingParameter.AVE
    assert [layers[f"fc6_{k}"].convolution_param.dilation[0] for k in (1, 2, 3, 4)] == [6, 12, 18, 24]
    assert {layers[f"fc7_{k}"].convolution_param.num_output for k in (1, 2, 3, 4)} == {1024}
    assert {layers[f"fc8-SEC_{k}"].convolution_param.num_output for k in (1, 2, 3, 4)} == {21}
    assert {layers[f"drop6_{k}"].dropout_param.dropout_ratio for k in (1, 2, 3, 4)} == {0.5}
    assert [p.lr_mult for p in layers["conv1_1"].param] == [1, 2]
    solver1 = parse(folder / "stage1_solver.prototxt", caffe_pb2.SolverParameter())
    assert (solver1.base_lr, solver1.lr_policy, solver1.gamma, solver1.stepsize, solver1.max_iter) == \
        (pytest.approx(5e-4), "step", pytest.approx(0.33), 1000, 8000)
    solver2 = parse(folder / "stage2_solver.prototxt", caffe_pb2.SolverParameter())
    assert (solver2.base_lr, solver2.lr_policy, solver2.power, solver2.max_iter) == \
        (pytest.approx(1e-3), "poly", pytest.approx(0.9), 20000)
    stage2 = parse(folder / "stage2_train.prototxt", caffe_pb2.NetParameter())
    params = eval_dict(stage2.layer[0].python_param.param_str)
    assert (params["batch_size"], params["crop_size"], params["mirror"]) == (10, 321, True)


# ---------------------------------------------------------------- tools/train.py through Caffe

NAN_LOSS_MODULE = """
import caffe
import numpy as np


class SquaredErrorTurningNaN(caffe.Layer):
    \"\"\"Mean squared error of bottoms (prediction, target) that reports NaN from forward call `nan_at` on.\"\"\"

    def setup(self, bottom, top):
        self.nan_at = int(self.param_str)
        self.calls = 0

    def reshape(self, bottom, top):
        top[0].reshape(1)

    def forward(self, bottom, top):
        difference = bottom[0].data - bottom[1].data
        top[0].data[0] = np.nan if self.calls >= self.nan_at else 0.5 * np.mean(difference ** 2)
        self.calls += 1

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            difference = bottom[0].data - bottom[1].data
            bottom[0].diff[...] = top[0].diff[0] * difference / difference.size
"""


def tiny_experiment_with_python_loss(tmp_path, monkeypatch, module_source, layer_class, name, top, param):
    """The tiny experiment with its EuclideanLoss replaced by the Python loss `layer_class` of `module_source`
    (written as a module named after the class: Python caches imported modules by name)."""
    module = f"{layer_class.lower()}_module"
    (tmp_path / f"{module}.py").write_text(module_source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("DSRG_EXTRA_LAYER_MODULES", module)
    solver = write_tiny_experiment(tmp_path / "exp", base_lr=0.05, momentum=0.9)
    net_path = tmp_path / "exp" / "net.prototxt"
    net_path.write_text(net_path.read_text().replace(
        'layer { name: "loss" type: "EuclideanLoss" bottom: "p" bottom: "y" top: "loss" }',
        f'layer {{ name: "{name}" type: "Python" bottom: "p" bottom: "y" top: "{top}" loss_weight: 1\n'
        f'  python_param {{ module: "{module}" layer: "{layer_class}" param_str: "{param}" }} }}'))
    return solver


def test_train_stops_on_a_nan_loss_naming_the_iteration(tmp_path, monkeypatch):
    train = load_tool("train")
    solver = tiny_experiment_with_python_loss(tmp_path, monkeypatch, NAN_LOSS_MODULE, "SquaredErrorTurningNaN",
                                              "loss", "loss", 5)
    out = tmp_path / "out"
    with pytest.raises(train.TrainingDiverged, match=r"diverged at iteration 5 .*non-finite net output 'loss' = nan"):
        train.main(["--solver", str(solver), "--out", str(out), "--iters", "20", "--snapshot-every", "2",
                    "--log-every", "1", "--no-progress"])
    # The snapshot Caffe took right after the NaN iteration (iteration 6) is removed; 2 and 4 remain.
    assert sorted(train.snapshot_files(out / "snapshots" / "solver")) == [2, 4]
    header, rows = train.read_log(out / train.LOG_NAME, 10 ** 9)
    assert header == ["iteration", "loss"] and [row[0] for row in rows] == [1, 2, 3, 4, 5]
    assert all(np.isfinite(row[1]) for row in rows)
    assert (out / train.CURVE_NAME).stat().st_size > 0
    assert not (out / train.DONE_NAME).exists()


def test_train_resumes_from_its_latest_snapshot_bit_identically(tmp_path):
    train = load_tool("train")
    solver = write_tiny_experiment(tmp_path / "exp", base_lr=0.05, momentum=0.9)
    common = ["--solver", str(solver), "--snapshot-every", "2", "--log-every", "1", "--no-progress"]

    straight = tmp_path / "straight"
    assert train.main(common + ["--out", str(straight), "--iters", "6"]) == 0
    interrupted = tmp_path / "interrupted"
    assert train.main(common + ["--out", str(interrupted), "--iters", "4"]) == 0
    assert train.main(common + ["--out", str(interrupted), "--iters", "6"]) == 0
    done = json.loads((interrupted / train.DONE_NAME).read_text())
    assert done["iterations"] == 6 and done["resumed_from"].endswith("solver_iter_4.solverstate")

    def weights(folder):
        net = caffe.Net(str(tmp_path / "exp" / "net.prototxt"), str(folder / train.FINAL_WEIGHTS), caffe.TEST)
        return [blob.data.copy() for blob in net.params["ip"]]

    for a, b in zip(weights(straight), weights(interrupted)):
        np.testing.assert_array_equal(a, b)
    header, rows = train.read_log(interrupted / train.LOG_NAME, 10 ** 9)
    assert [row[0] for row in rows] == [1, 2, 3, 4, 5, 6]
    assert rows == train.read_log(straight / train.LOG_NAME, 10 ** 9)[1]
    assert sorted(train.snapshot_files(interrupted / "snapshots" / "solver")) == [4, 6]

    mtime = (interrupted / train.FINAL_WEIGHTS).stat().st_mtime_ns
    assert train.main(common + ["--out", str(interrupted), "--iters", "6"]) == 0
    assert (interrupted / train.FINAL_WEIGHTS).stat().st_mtime_ns == mtime


STUCK_LOSS_MODULE = NAN_LOSS_MODULE + """

class SquaredErrorTurningFloor(SquaredErrorTurningNaN):
    \"\"\"Mean squared error that reports the floor loss -log(1e-4), with the small wobble a diverged seed
    loss shows, from forward call `nan_at` on.\"\"\"

    def forward(self, bottom, top):
        super().forward(bottom, top)
        if self.calls > self.nan_at:
            top[0].data[0] = -np.log(1e-4) + 0.002 * (self.calls % 3)
"""


def test_train_stops_on_a_loss_stuck_at_the_floor_keeping_earlier_snapshots(tmp_path, monkeypatch):
    train = load_tool("train")
    solver = tiny_experiment_with_python_loss(tmp_path, monkeypatch, STUCK_LOSS_MODULE, "SquaredErrorTurningFloor",
                                              "seed_loss", "loss-Seed", 6)
    out = tmp_path / "out"
    pattern = (r"training stuck at iteration 10 .*loss output 'loss-Seed' stayed within 0\.05 of "
               r"-log\(0\.0001\) = 9\.2103 for 5 iterations \(6\.\.10; .*lr_mult.*snapshots from iteration 6 on "
               r"are removed")
    with pytest.raises(train.TrainingDiverged, match=pattern):
        train.main(["--solver", str(solver), "--out", str(out), "--iters", "30", "--snapshot-every", "2",
                    "--log-every", "1", "--no-progress", "--stuck-iters", "5"])
    # 2 went when 6 was taken (keep 2); while the loss sat at the floor, 4 was protected from rotation;
    # 6, 8 and 10 hold weights that already gave the floor loss.
    assert sorted(train.snapshot_files(out / "snapshots" / "solver")) == [4]
    header, rows = train.read_log(out / train.LOG_NAME, 10 ** 9)
    assert [row[0] for row in rows] == list(range(1, 11))
    assert not (out / train.DONE_NAME).exists()


def test_train_stops_on_a_bit_identical_loss_with_exit_status_3(tmp_path):
    import os
    import subprocess
    import sys

    solver = write_tiny_experiment(tmp_path / "exp", base_lr=0.0, momentum=0.0)
    command = [sys.executable, str(REPO / "tools" / "train.py"), "--solver", str(solver), "--out",
               str(tmp_path / "out"), "--iters", "40", "--log-every", "5", "--no-progress", "--stuck-iters", "8"]
    env = dict(os.environ, PYTHONPATH=str(REPO / "training"))
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 3, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("train.py: training stuck at iteration 7 ")
    assert "loss output 'loss' stayed bit-identical at" in last and "for 8 iterations (0..7)" in last
    assert "Lower base_lr or the lr_mult" in last
    off = subprocess.run(command[:-1] + ["0"], capture_output=True, text=True, timeout=300, env=env)
    assert off.returncode == 0, off.stderr[-2000:]


def test_stuck_loss_guard_rules():
    train = load_tool("train")
    floor = train.FLOOR_LOSS
    assert floor == pytest.approx(9.2103, abs=1e-4)
    guard = train.StuckLossGuard(window=3, tolerance=0.05)
    # Not a loss output: ignored however constant; the balanced seed loss sits at twice the floor.
    for iteration, wobble in enumerate((0.0, 0.01, -0.02)):
        outputs = {"accuracy": 1.0, "loss-Seed": 2 * floor + wobble, "loss-Constrain": 0.1 * iteration}
        result = guard.observe(iteration, outputs)
    message, first = result
    assert first == 0 and "'loss-Seed'" in message and "2·-log(0.0001) = 18.4207" in message
    # A run broken by one value away from the floor starts again.
    guard = train.StuckLossGuard(window=3, tolerance=0.05)
    values = [floor, floor + 0.01, 3.0, floor, floor - 0.01]
    assert all(guard.observe(i, {"loss": v}) is None for i, v in enumerate(values))
    assert guard.suspect_since() == 3
    assert guard.observe(5, {"loss": floor})[1] == 3
    assert train.StuckLossGuard(window=0, tolerance=0.05).observe(0, {"loss": floor}) is None
