"""experiment/voc12-resnet101: the generator's committed output is up to date and keeps the VGG16
experiment's DSRG layers; the nets' geometry (output stride 8, 321 → 41); the ResNet weight sources of
tools/import_weights.py (blob mappings, a randomly initialised torchvision-layout ResNet-101 imported
into the torchvision variant computes torch's res5c, DeepLab's layout into the msra variant) and the
refusal of weights that do not fit the net (missing, extra and mis-shaped layers, the wrong variant).

torch is a test-only oracle: the ResNet-101 below is written here with torchvision's module names and
its dilated `_make_layer` rule (torchvision itself is not installed); nothing is downloaded.
"""
from pathlib import Path

import caffe
import numpy as np
import pytest
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from caffe_helpers import requires_torch, torch
from dsrg import netedit, resnet, weights
from dsrg.cli import run_main
from dsrg.voc import MEAN_BGR
from tools import import_weights as tool
from tools import make_resnet_prototxt as generator


REPO = Path(__file__).resolve().parents[1]
EXP = REPO / "experiment" / "voc12-resnet101"
VGG = REPO / "experiment" / "voc12-vgg16"
SMALL_SIDE = 65
# conv1 7×7 stride 2 pad 3 → 33, pool1 3×3 stride 2 pad 1 → 17, res3 stride 2 → 9 (output stride 8).
SMALL_GRID = 9
TRUNK_CONVOLUTIONS = 104
# The DeepLab-layout tests use the net with every trunk width divided by this (conv1 8, res5c 256).
WIDTH_DIVISOR = 8


def read_net(path):
    return text_format.Merge(Path(path).read_text(), caffe_pb2.NetParameter())


def small_deploy(tmp_path, variant, divisor=1):
    """The experiment's deploy net for `variant` (msra as committed, torchvision with its edits) at 65×65,
    its trunk widths divided by `divisor`."""
    net = read_net(EXP / "deploy.prototxt")
    if variant == "torchvision":
        edits = netedit.read_edits(EXP / generator.TORCHVISION_EDITS)
        netedit.apply_edits(net, edits, "deploy.prototxt")
    net.layer[0].input_param.shape[0].dim[2:] = [SMALL_SIDE, SMALL_SIDE]
    for layer in net.layer:
        if resnet.is_trunk_layer(layer.name) and layer.type == "Convolution":
            layer.convolution_param.num_output //= divisor
    path = tmp_path / f"deploy_{variant}_{divisor}.prototxt"
    path.write_text(str(net))
    return path


def relative_error(actual, expected):
    expected = np.asarray(expected, np.float64)
    return float(np.max(np.abs(np.asarray(actual, np.float64) - expected)) / np.max(np.abs(expected)))


# ---------------------------------------------------------------- the generator and the nets


def test_committed_experiment_is_the_generators_output():
    files = generator.rendered_files()
    assert generator.out_of_date(EXP, files) == []
    assert generator.main(["--check"]) == 0


def test_check_reports_a_stale_file(tmp_path, capsys):
    for name, text in generator.rendered_files().items():
        (tmp_path / name).write_text(text)
    (tmp_path / "deploy.prototxt").write_text("# edited by hand\n")
    assert generator.main(["--check", "--out", str(tmp_path)]) == 1
    assert "deploy.prototxt" in capsys.readouterr().err


@pytest.mark.parametrize("name", generator.NETS)
def test_only_the_trunk_and_aspp_differ_from_the_vgg16_experiment(name):
    """The layers before conv1_1 and from fc8-SEC on are the template's (stage 1's batch 20 → 10)."""
    vgg, ours = read_net(VGG / name), read_net(EXP / name)
    vgg_names = [layer.name for layer in vgg.layer]
    start, end = vgg_names.index("conv1_1"), vgg_names.index("fc8-SEC")
    our_names = [layer.name for layer in ours.layer]
    our_end = our_names.index("fc8-SEC")
    for template, layer in zip(vgg.layer[:start], ours.layer[:start]):
        if template.type == "ImageData":
            assert (template.image_data_param.batch_size, layer.image_data_param.batch_size) == (20, 10)
            template.image_data_param.batch_size = 10
        assert layer == template
    assert list(ours.layer[our_end + 1:]) == list(vgg.layer[end + 1:])
    assert list(ours.layer[our_end].bottom) == [f"fc1_voc12_c{index}" for index in range(4)]
    assert ours.layer[start].name == "conv1" and ours.layer[start].bottom[0] == vgg.layer[start].bottom[0]


def test_torchvision_edits_make_the_generators_torchvision_variant(tmp_path):
    vgg_deploy = read_net(VGG / "deploy.prototxt")
    direct = generator.resnet_net(vgg_deploy, "torchvision", "deploy.prototxt")
    edited = read_net(EXP / "deploy.prototxt")
    netedit.apply_edits(edited, netedit.read_edits(EXP / generator.TORCHVISION_EDITS), "deploy.prototxt")
    assert edited == direct
    assert generator.resnet_net(vgg_deploy, "msra", "deploy.prototxt") == read_net(EXP / "deploy.prototxt")


def test_random_weights_fit_the_net_as_deeplabs_file_would(tmp_path, capsys):
    net_path = small_deploy(tmp_path, "msra", WIDTH_DIVISOR)
    source = tmp_path / "random.caffemodel"
    assert generator.main(["--random-weights", str(source), "--net", str(net_path)]) == 0
    written = tool.read_caffemodel_blobs(source)
    assert len(written) == 3 * TRUNK_CONVOLUTIONS and "fc1_voc12_c0" not in written
    assert written["bn4b2_branch2a"][1].tolist() == [1.0] * 32 and written["bn4b2_branch2a"][2].tolist() == [1.0]
    np.testing.assert_array_equal(written["scale5c_branch2c"][0], np.float32(generator.RANDOM_RESIDUAL_GAMMA))
    out = tmp_path / "out.caffemodel"
    assert tool.main(["--source", "deeplab-resnet101", "--input", str(source), "--net", str(net_path),
                      "--out", str(out)]) == 0
    net = caffe.Net(str(net_path), caffe.TEST, weights=str(out))
    net.blobs["images"].data[...] = np.random.default_rng(0).normal(scale=50, size=net.blobs["images"].data.shape)
    net.forward()
    assert np.isfinite(net.blobs["fc8-SEC"].data).all()


def test_trunk_layers_follow_deeplab_v2():
    net = read_net(EXP / "stage1_train.prototxt")
    by_type = {}
    for layer in net.layer:
        by_type.setdefault(layer.type, []).append(layer)
    convs = [layer for layer in by_type["Convolution"] if resnet.is_trunk_layer(layer.name)]
    assert len(convs) == TRUNK_CONVOLUTIONS == len(by_type["BatchNorm"]) == len(by_type["Scale"])
    assert all(not layer.convolution_param.bias_term and [p.lr_mult for p in layer.param] == [1] for layer in convs)
    assert all(layer.batch_norm_param.use_global_stats and [p.lr_mult for p in layer.param] == [0, 0, 0]
               for layer in by_type["BatchNorm"])
    assert all(layer.scale_param.bias_term and [p.lr_mult for p in layer.param] == [0, 0] for layer in by_type["Scale"])
    names = {layer.name for layer in convs}
    assert {"conv1", "res2a_branch1", "res3b3_branch2c", "res4b22_branch2c", "res5c_branch2c"} <= names
    assert "res4b23_branch2a" not in names and "res3b4_branch2a" not in names
    layers = {layer.name: layer for layer in net.layer}
    for name, dilation in (("res4a_branch2b", 2), ("res4b22_branch2b", 2), ("res5a_branch2b", 4), ("res5c_branch2b", 4)):
        assert list(layers[name].convolution_param.dilation) == [dilation] == list(layers[name].convolution_param.pad)
    assert list(layers["res3a_branch2a"].convolution_param.stride) == [2]
    assert list(layers["res3a_branch2b"].convolution_param.stride) == [1]
    for index, dilation in enumerate(generator.ASPP_DILATIONS):
        aspp = layers[f"fc1_voc12_c{index}"]
        assert list(aspp.convolution_param.dilation) == [dilation] and list(aspp.convolution_param.pad) == [dilation]
        assert aspp.bottom == ["res5c"] and [p.lr_mult for p in aspp.param] == [10, 20]


def test_variant_table_follows_torchvisions_make_layer():
    table = {name: (stride, dilation) for name, _, _, _, stride, dilation in resnet.trunk_convolutions("torchvision")}
    assert table["res3a_branch2a"] == (1, 1) and table["res3a_branch2b"] == (2, 1)
    assert table["res4a_branch2b"] == (1, 1) and table["res4b1_branch2b"] == (1, 2)
    assert table["res5a_branch2b"] == (1, 2) and table["res5b_branch2b"] == (1, 4)
    assert table["res4a_branch1"] == (1, 1) and table["res3a_branch1"] == (2, 1)
    msra = {name: (stride, dilation) for name, _, _, _, stride, dilation in resnet.trunk_convolutions("msra")}
    assert msra.keys() == table.keys()
    assert sorted(name for name in msra if msra[name] != table[name]) == [
        "res3a_branch2a", "res3a_branch2b", "res4a_branch2b", "res5a_branch2b"]


@pytest.mark.parametrize("variant", resnet.VARIANTS)
def test_output_stride_is_8(tmp_path, variant):
    path = small_deploy(tmp_path, variant)
    net = caffe.Net(str(path), caffe.TEST)
    assert net.blobs["res5c"].data.shape == (1, 2048, SMALL_GRID, SMALL_GRID)
    net.blobs["images"].reshape(1, 3, 321, 321)
    net.reshape()
    assert net.blobs["pool1"].data.shape[2:] == (81, 81)
    assert net.blobs["fc8-SEC"].data.shape == (1, 21, 41, 41)


# ---------------------------------------------------------------- torch oracle: torchvision's resnet101


if torch is not None:
    class Bottleneck(torch.nn.Module):
        def __init__(self, channels_in, width, stride, dilation, downsample):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(channels_in, width, 1, bias=False)
            self.bn1 = torch.nn.BatchNorm2d(width)
            self.conv2 = torch.nn.Conv2d(width, width, 3, stride=stride, padding=dilation, dilation=dilation,
                                         bias=False)
            self.bn2 = torch.nn.BatchNorm2d(width)
            self.conv3 = torch.nn.Conv2d(width, width * 4, 1, bias=False)
            self.bn3 = torch.nn.BatchNorm2d(width * 4)
            self.downsample = downsample

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            out = torch.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            return torch.relu(out + (x if self.downsample is None else self.downsample(x)))

    class DilatedResNet101(torch.nn.Module):
        """torchvision's resnet101(replace_stride_with_dilation=[False, True, True]), module for module."""

        def __init__(self):
            super().__init__()
            self.channels, self.dilation = 64, 1
            self.conv1 = torch.nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
            self.bn1 = torch.nn.BatchNorm2d(64)
            self.maxpool = torch.nn.MaxPool2d(3, stride=2, padding=1)
            self.layer1 = self.make_layer(64, 3, 1, False)
            self.layer2 = self.make_layer(128, 4, 2, False)
            self.layer3 = self.make_layer(256, 23, 2, True)
            self.layer4 = self.make_layer(512, 3, 2, True)
            self.fc = torch.nn.Linear(2048, 1000)

        def make_layer(self, width, count, stride, dilate):
            previous_dilation = self.dilation
            if dilate:
                self.dilation *= stride
                stride = 1
            downsample = None
            if stride != 1 or self.channels != width * 4:
                downsample = torch.nn.Sequential(torch.nn.Conv2d(self.channels, width * 4, 1, stride=stride, bias=False),
                                                 torch.nn.BatchNorm2d(width * 4))
            blocks = [Bottleneck(self.channels, width, stride, previous_dilation, downsample)]
            self.channels = width * 4
            blocks += [Bottleneck(self.channels, width, 1, self.dilation, None) for _ in range(1, count)]
            return torch.nn.Sequential(*blocks)

        def res5c(self, normalised):
            x = self.maxpool(torch.relu(self.bn1(self.conv1(normalised))))
            return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def random_resnet101(seed=0):
    """A DilatedResNet101 in eval mode with random weights and realistic BatchNorm statistics."""
    torch.manual_seed(seed)
    model = DilatedResNet101()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            channels = module.num_features
            module.running_mean.copy_(torch.randn(channels) * 0.2)
            module.running_var.copy_(torch.rand(channels) * 1.5 + 0.5)
            module.weight.data.copy_(torch.rand(channels) * 0.5 + (0.1 if name.endswith("bn3") else 0.5))
            module.bias.data.copy_(torch.randn(channels) * 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def torchvision_import(tmp_path_factory):
    folder = tmp_path_factory.mktemp("torchvision_resnet")
    model = random_resnet101()
    pth = folder / "resnet101.pth"
    torch.save(model.state_dict(), pth)
    net_path = small_deploy(folder, "torchvision")
    out = folder / "resnet101_torchvision.caffemodel"
    assert tool.main(["--source", "torchvision-resnet101", "--input", str(pth), "--net", str(net_path),
                      "--out", str(out)]) == 0
    return model, pth, net_path, out


@requires_torch
def test_torchvision_import_computes_torchs_res5c(torchvision_import):
    model, _, net_path, out = torchvision_import
    rng = np.random.default_rng(5)
    image_rgb = rng.uniform(0, 255, size=(SMALL_SIDE, SMALL_SIDE, 3))
    net = caffe.Net(str(net_path), caffe.TEST, weights=str(out))
    net.blobs["images"].data[...] = (image_rgb[..., ::-1] - np.asarray(MEAN_BGR)).transpose(2, 0, 1)[None]
    net.forward()
    # Caffe pads conv1's input (BGR minus the mean) with zeros, i.e. with the mean colour; so does the
    # oracle here, before normalising, and then runs conv1 unpadded: every other layer is torch's own.
    padded = np.pad(image_rgb, ((3, 3), (3, 3), (0, 0)), constant_values=0)
    padded[:3], padded[-3:], padded[:, :3], padded[:, -3:] = (np.asarray(MEAN_BGR)[::-1],) * 4
    normalised = (padded / 255 - np.asarray(weights.TORCHVISION_MEAN_RGB)) / np.asarray(weights.TORCHVISION_STD_RGB)
    model = model.double()
    conv1 = model.conv1
    with torch.no_grad():
        model.conv1 = torch.nn.Conv2d(3, 64, 7, stride=2, padding=0, bias=False).double()
        model.conv1.weight.copy_(conv1.weight)
        expected = model.res5c(torch.from_numpy(normalised.transpose(2, 0, 1)[None].copy()))[0].numpy()
    model.conv1 = conv1
    assert expected.shape == net.blobs["res5c"].data[0].shape == (2048, SMALL_GRID, SMALL_GRID)
    assert np.abs(expected).max() > 1e-3
    assert relative_error(net.blobs["res5c"].data[0], expected) < 1e-4


@requires_torch
def test_torchvision_blobs_follow_the_mapping(torchvision_import):
    model, _, _, out = torchvision_import
    state = {key: value.detach().numpy() for key, value in model.float().state_dict().items()}
    written = tool.read_caffemodel_blobs(out)
    np.testing.assert_array_equal(written["res4b7_branch2b"][0], state["layer3.7.conv2.weight"])
    np.testing.assert_array_equal(written["res5a_branch1"][0], state["layer4.0.downsample.0.weight"])
    bn, scale = written["bn3b2_branch2c"], written["scale3b2_branch2c"]
    np.testing.assert_array_equal(bn[0], state["layer2.2.bn3.running_mean"])
    np.testing.assert_array_equal(bn[1], state["layer2.2.bn3.running_var"])
    assert bn[2].tolist() == [1.0]
    np.testing.assert_array_equal(scale[0], state["layer2.2.bn3.weight"])
    np.testing.assert_array_equal(scale[1], state["layer2.2.bn3.bias"])
    folded_weight, folded_bias = weights.fold_torchvision_normalisation(state["conv1.weight"], np.zeros(64))
    np.testing.assert_allclose(written["conv1"][0], folded_weight, rtol=1e-6)
    np.testing.assert_allclose(written["bn_conv1"][0], state["bn1.running_mean"] - folded_bias, rtol=1e-5, atol=1e-5)
    assert len(written) == 3 * TRUNK_CONVOLUTIONS


@requires_torch
def test_torchvision_weights_into_the_msra_net_are_refused(torchvision_import, tmp_path, capsys):
    _, pth, _, _ = torchvision_import
    out = tmp_path / "out.caffemodel"
    status = run_main(tool.main, ["--source", "torchvision-resnet101", "--input", str(pth),
                                  "--net", str(small_deploy(tmp_path, "msra")), "--out", str(out)])
    error = capsys.readouterr().err
    assert status == 1 and not out.exists()
    assert "res3a_branch2a has stride 2, dilation 1" in error and "torchvision.edits" in error


# ---------------------------------------------------------------- DeepLab's init.caffemodel layout


def write_msra_caffemodel(path, net_path, extra_layers=(), drop=(), reshape=None, seed=0):
    """A caffemodel in DeepLab's init.caffemodel layout for net `net_path`: every trunk layer with random
    blobs (BatchNorm: mean, positive variance, factor 1), fc1000, plus `extra_layers` [(name, type,
    [shapes])], without the layers in `drop`; `reshape` = (layer, shape) gives one weight another shape."""
    rng = np.random.default_rng(seed)
    model = caffe_pb2.NetParameter(name="ResNet-101")
    shapes = tool.net_parameter_shapes(tool.read_net(net_path))
    layers = [(name, layer_type, blob_shapes) for name, layer_type, blob_shapes in shapes
              if resnet.is_trunk_layer(name) and name not in drop]
    layers += [("fc1000", "InnerProduct", [(1000, 2048 // WIDTH_DIVISOR), (1000,)])] + list(extra_layers)
    values = {}
    for name, layer_type, blob_shapes in layers:
        if reshape is not None and name == reshape[0]:
            blob_shapes = [reshape[1]] + list(blob_shapes[1:])
        arrays = [rng.normal(size=shape).astype(np.float32) for shape in blob_shapes]
        if layer_type == "BatchNorm":
            arrays[1], arrays[2] = np.abs(arrays[1]) + 0.5, np.ones(1, np.float32)
        layer = model.layer.add(name=name, type=layer_type)
        for array in arrays:
            layer.blobs.add().MergeFromString(tool.float_blob_bytes(array))
        values[name] = arrays
    Path(path).write_bytes(model.SerializeToString())
    return values


def test_deeplab_layout_is_copied_by_name(tmp_path, capsys):
    net_path = small_deploy(tmp_path, "msra", WIDTH_DIVISOR)
    source = tmp_path / "init.caffemodel"
    values = write_msra_caffemodel(source, net_path)
    out = tmp_path / "resnet101.caffemodel"
    assert tool.main(["--source", "deeplab-resnet101", "--input", str(source), "--net", str(net_path),
                      "--out", str(out)]) == 0
    report = capsys.readouterr().out
    assert "source entries not used: fc1000" in report and "kept their fillers: fc1_voc12_c0" in report
    written = tool.read_caffemodel_blobs(out)
    assert set(written) == set(values) - {"fc1000"}
    for name, arrays in written.items():
        for written_blob, expected in zip(arrays, values[name]):
            np.testing.assert_array_equal(written_blob, expected)
    net = caffe.Net(str(net_path), caffe.TEST, weights=str(out))
    np.testing.assert_array_equal(net.params["bn4b3_branch2a"][1].data, values["bn4b3_branch2a"][1])


@pytest.mark.parametrize("case", ["missing", "extra", "shape"])
def test_weights_that_do_not_fit_are_refused_naming_layer_and_shapes(tmp_path, capsys, case):
    net_path = small_deploy(tmp_path, "msra", WIDTH_DIVISOR)
    source = tmp_path / "init.caffemodel"
    arguments = {"missing": {"drop": ("res4b22_branch2c", "bn4b22_branch2c")},
                 "extra": {"extra_layers": [("res4b23_branch2a", "Convolution", [(32, 128, 1, 1)])]},
                 "shape": {"reshape": ("res3a_branch2b", (16, 8, 3, 3))}}[case]
    write_msra_caffemodel(source, net_path, **arguments)
    out = tmp_path / "out.caffemodel"
    status = run_main(tool.main, ["--source", "deeplab-resnet101", "--input", str(source), "--net", str(net_path),
                                  "--out", str(out)])
    error = capsys.readouterr().err
    assert status == 1 and not out.exists() and "Traceback" not in error
    assert f"{source} does not fit {net_path}" in error
    expected = {"missing": ["not in the source", "res4b22_branch2c (Convolution, 128×32×1×1)",
                            "bn4b22_branch2c (BatchNorm, 128 + 128 + 1)"],
                "extra": ["not in the net", "res4b23_branch2a (Convolution, 32×128×1×1"],
                "shape": ["layer res3a_branch2b (Convolution)", "the net has 16×16×3×3", "has 16×8×3×3"]}[case]
    for text in expected:
        assert text in error


def test_a_file_without_resnet_layers_is_refused(tmp_path, capsys):
    source = tmp_path / "vgg.caffemodel"
    model = caffe_pb2.NetParameter()
    model.layer.add(name="conv1_1", type="Convolution").blobs.add().MergeFromString(
        tool.float_blob_bytes(np.zeros((64, 3, 3, 3), np.float32)))
    source.write_bytes(model.SerializeToString())
    status = run_main(tool.main, ["--source", "deeplab-resnet101", "--input", str(source),
                                  "--net", str(small_deploy(tmp_path, "msra", WIDTH_DIVISOR)),
                                  "--out", str(tmp_path / "out.caffemodel")])
    assert status == 1 and "not an MSRA / DeepLab ResNet model" in capsys.readouterr().err
