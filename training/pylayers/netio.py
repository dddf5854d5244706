"""Caffe for the command-line tools: one import with one log level, CPU or GPU mode, and deploy nets
opened with their files checked.

Every tool imports Caffe through :func:`import_caffe` (its protobuf messages through
:func:`caffe_protos`), on first use, so a tool's ``--help`` and argument errors never load it.
Caffe's log threshold is glog's GLOG_minloglevel (0 INFO, 1 WARNING, 2 ERROR), read once, when
caffe is first imported; :func:`import_caffe` sets it just before, to ERRORS_ONLY unless told
otherwise, and a GLOG_minloglevel already in the environment wins.
"""
import os
from pathlib import Path

from dsrg.weights import WeightsError, h5_file

# The tools' level: Caffe's errors only, no start-up log of every layer a net sets up.
ERRORS_ONLY = 2
# tools/train.py's level: Caffe's warnings too, its only notice of a deprecated field it upgraded (a V1
# solver's solver_type: "Note that future Caffe releases will only support 'type' field ...").
WARNINGS = 1


def import_caffe(log_level=ERRORS_ONLY):
    """The caffe module, imported (the first time) once GLOG_minloglevel defaults to `log_level`; a
    later call returns the module as imported, at the level of the first."""
    os.environ.setdefault("GLOG_minloglevel", str(log_level))
    import caffe

    return caffe


def caffe_protos():
    """Caffe's protobuf messages (caffe.proto.caffe_pb2), imported through :func:`import_caffe`."""
    return import_caffe().proto.caffe_pb2


def use_caffe(gpu):
    """The caffe module in GPU mode on device `gpu`, or in CPU mode when `gpu` is None."""
    caffe = import_caffe()
    if gpu is not None:
        caffe.set_device(gpu)
        caffe.set_mode_gpu()
    else:
        caffe.set_mode_cpu()
    return caffe


# The Python-layer modules a net run by the project's tools may name; DSRG_EXTRA_LAYER_MODULES
# (comma-separated) adds one's own. Caffe imports a python_param module before the layer can check
# anything, so any module on the path would otherwise run its import-time code.
LAYER_MODULES = ("pylayers", "pylayers.layer", "pylayers.layers")


def allowed_layer_modules():
    extra = os.environ.get("DSRG_EXTRA_LAYER_MODULES", "")
    return set(LAYER_MODULES) | {name.strip() for name in extra.split(",") if name.strip()}


def read_net_prototxt(net_path):
    """The net prototxt `net_path` as a caffe_pb2.NetParameter; one that does not parse is a ValueError
    naming the file (Caffe would abort the process instead)."""
    from google.protobuf import text_format

    net = caffe_protos().NetParameter()
    try:
        text_format.Merge(Path(net_path).read_text(), net)
    except text_format.ParseError as error:
        raise ValueError(f"{net_path}: not a net prototxt ({error})") from None
    return net


def check_layer_modules(net_path):
    """Refuse a net prototxt whose Python layers name a module outside :func:`allowed_layer_modules`,
    before Caffe imports it: a ValueError naming the file, the layer and the module."""
    net = read_net_prototxt(net_path)
    allowed = allowed_layer_modules()
    for layer in list(net.layer) + list(net.layers):
        if layer.HasField("python_param") and layer.python_param.module not in allowed:
            raise ValueError(f"{net_path}: layer {layer.name}: python_param module {layer.python_param.module!r} is "
                             f"not one of the project's layer modules ({', '.join(sorted(allowed))}); to run your "
                             "own, add it to DSRG_EXTRA_LAYER_MODULES (comma-separated)")


def caffemodel_blob_shapes(path):
    """{layer name: [(shape, legacy)]} of a binary (or HDF5, `.h5`) caffemodel, in file order, without
    decoding the values. `legacy` marks a V1 blob given as num × channels × height × width."""
    path = Path(path)
    if path.suffix == ".h5":
        with h5_file(path, "HDF5 caffemodel") as handle:
            return {name: [(tuple(group[str(index)].shape), False) for index in range(len(group))]
                    for name, group in handle["data"].items()}
    from google.protobuf.message import DecodeError

    model = caffe_protos().NetParameter()
    try:
        model.ParseFromString(path.read_bytes())
    except DecodeError as error:
        raise WeightsError(f"{path}: not a binary caffemodel ({error})") from None
    shapes = {}
    for layer in list(model.layer) + list(model.layers):
        shapes[layer.name] = [(tuple(blob.shape.dim), False) if blob.HasField("shape")
                              else ((blob.num, blob.channels, blob.height, blob.width), True)
                              for blob in layer.blobs]
    return shapes


def net_blob_shapes(net):
    """{layer name: [blob shapes]} of a pycaffe Net, every layer (those without blobs too)."""
    return {name: [tuple(blob.shape) for blob in layer.blobs] for name, layer in zip(net._layer_names, net.layers)}


def matching_layers(net_shapes, source_shapes, source):
    """The layers Caffe's copy_from would copy from `source`, checked as it checks them, but as a
    WeightsError naming the file, the layer and both shapes (Caffe aborts the process instead)."""
    copied = []
    for name, blobs in source_shapes.items():
        if name not in net_shapes:
            continue
        targets = net_shapes[name]
        if len(targets) != len(blobs):
            raise WeightsError(f"{source}: layer {name} has {len(blobs)} blob(s), the net's {name} has {len(targets)}")
        for index, ((shape, legacy), target) in enumerate(zip(blobs, targets)):
            compared = (1,) * (4 - len(target)) + target if legacy and len(target) <= 4 else target
            if tuple(shape) != compared:
                raise WeightsError(f"{source}: layer {name} blob {index} has shape "
                                   f"{'×'.join(map(str, shape))}, the net expects {'×'.join(map(str, target))}")
        if blobs:
            copied.append(name)
    return copied


class LoadedWeights:
    """What :func:`load_weights` copied: the files, the layers copied, the layers with blobs left at
    their fillers."""

    def __init__(self, paths, copied, kept):
        self.paths, self.copied, self.kept = paths, copied, kept

    def summary(self, tool):
        text = f"{tool}: initialised {len(self.copied)} layers from {', '.join(map(str, self.paths))}"
        if self.kept:
            text += f"; {len(self.kept)} keep their fillers: {', '.join(self.kept)}"
        return text


def load_weights(net, weights, tool):
    """Copy the weights files `weights` (a path or a list) into `net` by layer name, after checking
    each: a file that does not parse, copies no layer, or has a blob of another shape is a
    WeightsError naming it. Returns a :class:`LoadedWeights`."""
    paths = [weights] if isinstance(weights, (str, Path)) else list(weights)
    net_shapes = net_blob_shapes(net)
    copied = []
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{tool}: weights not found: {path}")
        from_file = matching_layers(net_shapes, caffemodel_blob_shapes(path), path)
        if not from_file:
            with_blobs = [name for name, blobs in net_shapes.items() if blobs]
            raise WeightsError(f"{path}: no layer of the net is in this file, so nothing would be copied (the net's "
                               f"layers with weights: {', '.join(with_blobs[:6])}{', …' if len(with_blobs) > 6 else ''})")
        net.copy_from(str(path))
        copied += [name for name in from_file if name not in copied]
    kept = [name for name, blobs in net_shapes.items() if blobs and name not in copied]
    return LoadedWeights(paths, copied, kept)


def load_net(deploy, weights, gpu, tool):
    """caffe.Net(deploy, TEST) on the chosen device with `weights` loaded by :func:`load_weights`
    (None: every layer keeps its filler); a missing file is an error naming `tool`, a weights file that
    does not fit the net a WeightsError."""
    files = [(deploy, "deploy prototxt")] + ([(weights, "weights")] if weights is not None else [])
    for path, what in files:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{tool}: {what} not found: {path}")
    check_layer_modules(deploy)
    caffe = use_caffe(gpu)
    net = caffe.Net(str(deploy), caffe.TEST)
    if weights is not None:
        loaded = load_weights(net, weights, tool)
        if loaded.kept:
            print(loaded.summary(tool))
    return net


class CaffeForward:
    """forward(1×3×h×w) -> C×h'×w' scores through a pycaffe net (dsrg.inference.predict's `forward`),
    reshaping the input as needed. The blobs default to the net's first input and first output;
    `num_classes` is the score blob's channel count."""

    def __init__(self, net, input_blob=None, score_blob=None):
        self.net = net
        self.input_blob = input_blob or net.inputs[0]
        self.score_blob = score_blob or net.outputs[0]
        self.num_classes = net.blobs[self.score_blob].data.shape[1]

    def __call__(self, batch):
        blob = self.net.blobs[self.input_blob]
        if tuple(blob.data.shape) != tuple(batch.shape):
            blob.reshape(*batch.shape)
            self.net.reshape()
        blob.data[...] = batch
        self.net.forward()
        return self.net.blobs[self.score_blob].data[0].copy()
