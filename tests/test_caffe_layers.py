"""The Caffe build: layer registry, our Interp and SegAccuracy layers, ImageData + Python layers.

Every net is an inline prototxt written to a temporary file.
"""
import subprocess
import sys
import textwrap

import caffe
import numpy as np
import pytest
from PIL import Image

from caffe_helpers import check_net_gradient, make_net

caffe.set_mode_cpu()


def interp_reference(x, out_h, out_w, crop_beg=0, crop_end=0):
    """Aligned-corners bilinear resize of N x C x H x W (numpy, float64 arithmetic)."""
    x = np.asarray(x, dtype=np.float64)
    h_in, w_in = x.shape[2], x.shape[3]
    window = x[:, :, crop_beg:h_in - crop_end, crop_beg:w_in - crop_end]
    eff_h, eff_w = window.shape[2], window.shape[3]

    def taps(out_size, in_size):
        ratio = np.float32((in_size - 1) / (out_size - 1)) if out_size > 1 else np.float32(0)
        pos = (ratio * np.arange(out_size, dtype=np.float32)).astype(np.float64)
        first = np.minimum(pos.astype(np.int64), in_size - 1)
        second = np.minimum(first + 1, in_size - 1)
        return first, second, pos - first

    y0, y1, wy = taps(out_h, eff_h)
    x0, x1, wx = taps(out_w, eff_w)
    top = window[:, :, y0][:, :, :, x0] * (1 - wx) + window[:, :, y0][:, :, :, x1] * wx
    bottom = window[:, :, y1][:, :, :, x0] * (1 - wx) + window[:, :, y1][:, :, :, x1] * wx
    return top * (1 - wy)[:, None] + bottom * wy[:, None]


def interp_net(shape, interp_param, loss_weight=None):
    loss = ""
    if loss_weight is not None:
        loss = f"""
        layer {{ name: "loss" type: "Reduction" bottom: "out" top: "loss"
                reduction_param {{ operation: SUMSQ }} loss_weight: {loss_weight} }}"""
    return make_net(caffe, f"""
        name: "interp_test"
        force_backward: true
        layer {{ name: "in" type: "Input" top: "x"
                input_param {{ shape {{ dim: {shape[0]} dim: {shape[1]} dim: {shape[2]} dim: {shape[3]} }} }} }}
        layer {{ name: "interp" type: "Interp" bottom: "x" top: "out" interp_param {{ {interp_param} }} }}
        {loss}
    """)


def test_layer_registry_has_the_project_layers():
    types = set(caffe.layer_type_list())
    assert {"Python", "Interp", "SegAccuracy", "ImageData"} <= types


@pytest.mark.parametrize("shape, param, out_size", [
    ((2, 3, 41, 41), "zoom_factor: 8", (321, 321)),
    ((2, 3, 321, 321), "shrink_factor: 8", (41, 41)),
    ((1, 2, 10, 12), "height: 17 width: 23", (17, 23)),
    ((2, 2, 9, 14), "zoom_factor: 3", (25, 40)),
    ((1, 2, 33, 17), "shrink_factor: 4 zoom_factor: 3", (25, 13)),
    ((1, 1, 5, 7), "height: 1 width: 1", (1, 1)),
])
def test_interp_forward_matches_aligned_corners_reference(shape, param, out_size):
    net = interp_net(shape, param)
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    net.blobs["x"].data[...] = x
    out = net.forward()["out"]
    assert out.shape == shape[:2] + out_size
    np.testing.assert_allclose(out, interp_reference(x, *out_size), rtol=1e-5, atol=1e-5)


def test_interp_crop_padding():
    shape = (1, 2, 12, 12)
    net = interp_net(shape, "pad_beg: -1 pad_end: -2 zoom_factor: 2")
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    net.blobs["x"].data[...] = x
    out = net.forward()["out"]
    assert out.shape == (1, 2, 17, 17)  # effective 9 -> 9 + 8 * (2 - 1)
    np.testing.assert_allclose(out, interp_reference(x, 17, 17, 1, 2), rtol=1e-5, atol=1e-5)


def test_interp_shrink_samples_labels_exactly():
    labels = np.random.default_rng(2).integers(0, 21, size=(2, 1, 321, 321)).astype(np.float32)
    labels[labels == 20] = 255
    net = interp_net(labels.shape, "shrink_factor: 8")
    net.blobs["x"].data[...] = labels
    out = net.forward()["out"]
    np.testing.assert_array_equal(out, labels[:, :, ::8, ::8])


def test_interp_size_from_second_bottom():
    net = make_net(caffe, """
        layer { name: "in" type: "Input" top: "x" top: "like"
                input_param { shape { dim: 1 dim: 2 dim: 6 dim: 5 } shape { dim: 3 dim: 1 dim: 11 dim: 9 } } }
        layer { name: "interp" type: "Interp" bottom: "x" bottom: "like" top: "out" }
    """)
    x = np.random.default_rng(3).normal(size=(1, 2, 6, 5)).astype(np.float32)
    net.blobs["x"].data[...] = x
    np.testing.assert_allclose(net.forward()["out"], interp_reference(x, 11, 9), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape, param", [
    ((2, 2, 6, 5), "zoom_factor: 3"),
    ((1, 2, 17, 13), "shrink_factor: 4"),
    ((1, 3, 7, 9), "height: 11 width: 4"),
])
def test_interp_backward_is_the_adjoint(shape, param):
    net = interp_net(shape, param)
    rng = np.random.default_rng(4)
    x = rng.normal(size=shape).astype(np.float32)
    net.blobs["x"].data[...] = x
    out = net.forward()["out"].copy()
    y = rng.normal(size=out.shape).astype(np.float32)
    net.blobs["out"].diff[...] = y
    net.backward()
    adjoint = net.blobs["x"].diff.copy()
    np.testing.assert_allclose(np.vdot(out.astype(np.float64), y), np.vdot(x.astype(np.float64), adjoint),
                               rtol=1e-4)
    # Running backward twice gives the same result: the bottom diff is reset, not accumulated across calls.
    net.backward()
    np.testing.assert_array_equal(net.blobs["x"].diff, adjoint)


def test_interp_numeric_gradient_with_loss_weight():
    shape = (1, 2, 5, 6)
    net = interp_net(shape, "zoom_factor: 3", loss_weight=3)
    x = np.random.default_rng(5).normal(size=shape).astype(np.float32)
    check_net_gradient(net, {"x": x}, "loss", "x", loss_weight=3, step=1e-2, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("param, message", [
    ("", "no output size"),
    ("pad_beg: 2 zoom_factor: 2", "pad_beg must be <= 0"),
    ("height: 5", "give both height and width"),
    ("pad_beg: -3 pad_end: -3 shrink_factor: 2", "crops all of the input"),
])
def test_interp_misconfiguration_names_the_layer(tmp_path, param, message):
    path = tmp_path / "bad.prototxt"
    path.write_text(f"""
        layer {{ name: "in" type: "Input" top: "x" input_param {{ shape {{ dim: 1 dim: 1 dim: 5 dim: 5 }} }} }}
        layer {{ name: "badinterp" type: "Interp" bottom: "x" top: "out" interp_param {{ {param} }} }}
    """)
    script = f"import caffe; caffe.Net({str(path)!r}, caffe.TEST)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "Interp layer 'badinterp'" in result.stderr and message in result.stderr


def seg_accuracy_net(shape, ignore=(255,)):
    ignore_lines = " ".join(f"ignore_label: {label}" for label in ignore)
    return make_net(caffe, f"""
        layer {{ name: "in" type: "Input" top: "scores" top: "labels"
                input_param {{ shape {{ dim: {shape[0]} dim: {shape[1]} dim: {shape[2]} dim: {shape[3]} }}
                              shape {{ dim: {shape[0]} dim: 1 dim: {shape[2]} dim: {shape[3]} }} }} }}
        layer {{ name: "acc" type: "SegAccuracy" bottom: "scores" bottom: "labels" top: "acc"
                seg_accuracy_param {{ {ignore_lines} }} }}
    """)


def one_hot_scores(predictions, classes):
    predictions = np.asarray(predictions)
    scores = np.zeros((predictions.shape[0], classes) + predictions.shape[1:], np.float32)
    for c in range(classes):
        scores[:, c] = (predictions == c) * (1.0 + c)  # a distinct winning score per class
    return scores


def test_seg_accuracy_hand_computed():
    # Two images of 2 x 3 pixels, 4 classes (class 3 never appears anywhere).
    labels = np.array([[[0, 0, 1], [1, 2, 255]],
                       [[2, 2, 0], [255, 1, 1]]], dtype=np.float32)
    predictions = np.array([[[0, 1, 1], [1, 2, 0]],
                            [[2, 0, 0], [1, 1, 2]]])
    # Counted pixels (label, prediction): (0,0) (0,1) (1,1) (1,1) (2,2) | (2,2) (2,0) (0,0) (1,1) (1,2)
    # Confusion rows (label) x cols (prediction):
    #   label 0: [2, 1, 0]   label 1: [0, 3, 1]   label 2: [1, 0, 2]
    # pixel accuracy = 7 / 10; recall = mean(2/3, 3/4, 2/3);
    # IoU: class 0 = 2 / (3 + 3 - 2), class 1 = 3 / (4 + 4 - 3), class 2 = 2 / (3 + 3 - 2).
    net = seg_accuracy_net((2, 4, 2, 3))
    net.blobs["scores"].data[...] = one_hot_scores(predictions, 4)
    net.blobs["labels"].data[...] = labels[:, None]
    out = net.forward()["acc"]
    assert out.shape == (1, 1, 1, 3)
    expected = [7 / 10, (2 / 3 + 3 / 4 + 2 / 3) / 3, (2 / 4 + 3 / 5 + 2 / 4) / 3]
    np.testing.assert_allclose(out.ravel(), expected, rtol=1e-6)


def test_seg_accuracy_several_ignore_labels():
    labels = np.array([[[0, 1, 7, 255]]], dtype=np.float32)
    predictions = np.array([[[0, 0, 1, 1]]])
    net = seg_accuracy_net((1, 2, 1, 4), ignore=(255, 7))
    net.blobs["scores"].data[...] = one_hot_scores(predictions, 2)
    net.blobs["labels"].data[...] = labels[:, None]
    # Counted: (0,0) (1,0): accuracy 1/2, recall mean(1, 0), IoU class 0 = 1/2, class 1 = 0/1.
    np.testing.assert_allclose(net.forward()["acc"].ravel(), [0.5, 0.5, 0.25], rtol=1e-6)


def test_image_data_and_python_layer_forward_backward(tmp_path):
    rng = np.random.default_rng(6)
    list_lines = []
    for index in range(4):
        image = rng.integers(0, 256, size=(20 + index, 30, 3), dtype=np.uint8)
        Image.fromarray(image).save(tmp_path / f"img{index}.jpg", quality=95)
        list_lines.append(f"img{index}.jpg {index}")
    (tmp_path / "list.txt").write_text("\n".join(list_lines) + "\n")
    module = tmp_path / "doubling_layer.py"
    module.write_text(textwrap.dedent('''
        import caffe

        class Doubling(caffe.Layer):
            def setup(self, bottom, top):
                pass

            def reshape(self, bottom, top):
                top[0].reshape(*bottom[0].data.shape)

            def forward(self, bottom, top):
                top[0].data[...] = 2 * bottom[0].data

            def backward(self, top, propagate_down, bottom):
                if propagate_down[0]:
                    bottom[0].diff[...] = 2 * top[0].diff
    '''))
    sys.path.insert(0, str(tmp_path))
    try:
        net = make_net(caffe, f"""
            force_backward: true
            layer {{ name: "data" type: "ImageData" top: "images" top: "index"
                    image_data_param {{ source: "{tmp_path}/list.txt" root_folder: "{tmp_path}/"
                                       batch_size: 2 new_height: 16 new_width: 16 }}
                    transform_param {{ mean_value: 104 mean_value: 117 mean_value: 123 }} }}
            layer {{ name: "double" type: "Python" bottom: "images" top: "doubled"
                    python_param {{ module: "doubling_layer" layer: "Doubling" }} }}
            layer {{ name: "loss" type: "Reduction" bottom: "doubled" top: "loss"
                    reduction_param {{ operation: SUM }} loss_weight: 0.5 }}
        """, caffe.TRAIN)
        out = net.forward()
        images = net.blobs["images"].data
        assert images.shape == (2, 3, 16, 16)
        np.testing.assert_array_equal(net.blobs["index"].data, [0, 1])
        np.testing.assert_allclose(out["loss"], 2 * images.sum(), rtol=1e-5)
        net.backward()
        # d(0.5 * sum(2 x)) / dx = 1 everywhere, through the Python layer's backward.
        np.testing.assert_allclose(net.blobs["images"].diff, 1.0)
    finally:
        sys.path.remove(str(tmp_path))
