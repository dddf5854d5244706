#!/usr/bin/env python
"""Generate experiment/voc12-resnet101 from experiment/voc12-vgg16: the same data layers and DSRG layer
stack, with the VGG16 trunk and its ASPP head replaced by DeepLab-v2's ResNet-101 and its ASPP.

For each net of the template (stage1_train, stage2_train, deploy) the layers from `conv1_1` up to the
summing Eltwise `fc8-SEC` are replaced by

- the ResNet-101 trunk with DeepLab-v2's layer and blob names (`conv1`, `bn_conv1`, `scale_conv1`,
  `res2a_branch1` … `res5c`; dsrg.resnet): convolutions without bias (lr_mult 1), each followed by a
  frozen BatchNorm (`use_global_stats: true`, lr_mult 0) and a Scale with bias (lr_mult 0), pool1 3×3
  stride 2 pad 1, res4 dilated 2 and res5 dilated 4: output stride 8, a 321 input gives 41×41;
- DeepLab-v2's ASPP: four 3×3 classifiers `fc1_voc12_c0…c3` on res5c, dilation and pad 6/12/18/24,
  lr_mult 10/20, Gaussian 0.01, summed by the template's `fc8-SEC` Eltwise (the DSRG layers read it).

Everything else (ImageData + AnnotationLayer, Softmax, CRF, DSRG, the seed and constrain losses; the
stage-2 data layer, Interp, SoftmaxWithLoss, SegAccuracy; the deploy input) is the template's, but for
stage 1's batch, 10 as DeepLab-v2's ResNet-101 (the template's 20 is DSRG's VGG16 setting). The solvers
take DeepLab-v2's ResNet-101 VOC settings (base_lr 2.5e-4, momentum 0.9, weight decay 5e-4; stage 2
poly 0.9 for 20,000 iterations); stage 1 keeps the release's schedule (step 0.33 every 1,000, 8,000
iterations), which DSRG gives for VGG16 only.

The committed nets are the `msra` variant (DeepLab's `init.caffemodel`, MSRA's Caffe ImageNet model);
`torchvision.edits` turns them into the `torchvision` variant (torchvision's resnet101: stride in the
3×3, first block of a dilated stage at the previous dilation). Both come from dsrg.resnet.

  python tools/make_resnet_prototxt.py                 # (re)write experiment/voc12-resnet101/
  python tools/make_resnet_prototxt.py --check         # exit 1 when the committed files are out of date
  python tools/make_resnet_prototxt.py --random-weights runs/resnet-smoke/random_msra_init.caffemodel

--random-weights writes a seeded random caffemodel in DeepLab's init.caffemodel layout for the deploy
net (MSRA fillers; BatchNorm mean 0, variance 1, factor 1; Scale gamma 1, 0.1 after each block's
branch2c so that the 33 residual sums stay small; beta 0): the smoke runs' stand-in where no ImageNet
ResNet-101 exists. It trains nothing and means nothing beyond "the pipeline runs".
"""
import argparse
import sys
import tempfile
from pathlib import Path

from dsrg import netedit, resnet
from dsrg.cli import run_main, tool_name
from dsrg.fileio import atomic_write_bytes, atomic_write_text
from pylayers.netio import caffe_protos, import_caffe, load_net

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "experiment" / "voc12-vgg16"
OUT = REPO / "experiment" / "voc12-resnet101"
NETS = ("stage1_train.prototxt", "stage2_train.prototxt", "deploy.prototxt")
TORCHVISION_EDITS = "torchvision.edits"
FIRST_TRUNK_LAYER = "conv1_1"
SCORE_LAYER = "fc8-SEC"
ASPP_DILATIONS = (6, 12, 18, 24)
ASPP_PREFIX = "fc1_voc12_c"
STAGE1_BATCH = 10
# DeepLab-v2 ResNet-101, VOC 2012 (solver.prototxt): what the solvers take from it.
DEEPLAB_RESNET_SOLVER = {"base_lr": 0.00025, "momentum": 0.9, "weight_decay": 0.0005}
STAGE2_SCHEDULE = {"lr_policy": "poly", "power": 0.9, "max_iter": 20000}
RANDOM_RESIDUAL_GAMMA = 0.1


def import_caffe_pb2():
    try:
        return caffe_protos()
    except ImportError:
        raise SystemExit(f"{tool_name()}: needs pycaffe's caffe_pb2 (run tools/setup.sh)") from None


def parse(text, message):
    from google.protobuf import text_format

    text_format.Merge(text, message)
    return message


def add_frozen(layer, count):
    for _ in range(count):
        layer.param.add(lr_mult=0, decay_mult=0)


def conv_block(net, name, bottom, num_output, kernel, stride, dilation, relu):
    """conv `name` (no bias; stride always written, pad and dilation for kernels > 1, so that an edit can
    change them) + bn + scale in place, optionally a ReLU; returns the top."""
    conv = net.layer.add(name=name, type="Convolution", bottom=[bottom], top=[name])
    conv.param.add(lr_mult=1, decay_mult=1)
    param = conv.convolution_param
    param.num_output, param.bias_term = num_output, False
    param.kernel_size.append(kernel)
    param.stride.append(stride)
    if kernel > 1:
        param.pad.append(dilation * (kernel // 2))
        param.dilation.append(dilation)
    param.weight_filler.type = "msra"
    bn_name, scale_name = resnet.norm_names(name)
    bn = net.layer.add(name=bn_name, type="BatchNorm", bottom=[name], top=[name])
    add_frozen(bn, 3)
    bn.batch_norm_param.use_global_stats = True
    scale = net.layer.add(name=scale_name, type="Scale", bottom=[name], top=[name])
    add_frozen(scale, 2)
    scale.scale_param.bias_term = True
    if relu:
        net.layer.add(name=f"{name}_relu", type="ReLU", bottom=[name], top=[name])
    return name


def trunk_and_aspp(net, bottom, variant, num_classes):
    """Append the ResNet-101 trunk on `bottom` and the four ASPP classifiers; returns their tops."""
    convs = {name: (out, kernel, stride, dilation)
             for name, out, _, kernel, stride, dilation in resnet.trunk_convolutions(variant)}

    def unit(name, source, relu=True):
        out, kernel, stride, dilation = convs[name]
        return conv_block(net, name, source, out, kernel, stride, dilation, relu)

    top = unit("conv1", bottom)
    pool = net.layer.add(name="pool1", type="Pooling", bottom=[top], top=["pool1"])
    pool.pooling_param.pool = pool.pooling_param.MAX
    pool.pooling_param.kernel_size, pool.pooling_param.stride, pool.pooling_param.pad = 3, 2, 1
    top = "pool1"
    for block in resnet.blocks(variant):
        shortcut = unit(resnet.conv_name(block, "branch1"), top, relu=False) if block.projection else top
        branch = unit(resnet.conv_name(block, "branch2a"), top)
        branch = unit(resnet.conv_name(block, "branch2b"), branch)
        branch = unit(resnet.conv_name(block, "branch2c"), branch, relu=False)
        name = f"res{block.name}"
        net.layer.add(name=name, type="Eltwise", bottom=[shortcut, branch], top=[name])
        net.layer.add(name=f"{name}_relu", type="ReLU", bottom=[name], top=[name])
        top = name
    tops = []
    for index, dilation in enumerate(ASPP_DILATIONS):
        name = f"{ASPP_PREFIX}{index}"
        layer = net.layer.add(name=name, type="Convolution", bottom=[top], top=[name])
        layer.param.add(lr_mult=10, decay_mult=1)
        layer.param.add(lr_mult=20, decay_mult=0)
        param = layer.convolution_param
        param.num_output = num_classes
        param.kernel_size.append(3)
        param.pad.append(dilation)
        param.dilation.append(dilation)
        param.weight_filler.type, param.weight_filler.std = "gaussian", 0.01
        param.bias_filler.type, param.bias_filler.value = "constant", 0
        tops.append(name)
    return tops


def resnet_net(template, variant, file_name):
    """The template net (caffe_pb2.NetParameter) with its trunk and ASPP replaced by ResNet-101's."""
    caffe_pb2 = import_caffe_pb2()
    names = [layer.name for layer in template.layer]
    for required in (FIRST_TRUNK_LAYER, SCORE_LAYER):
        if required not in names:
            raise ValueError(f"{tool_name()}: {file_name} of the template has no layer {required!r}")
    start, end = names.index(FIRST_TRUNK_LAYER), names.index(SCORE_LAYER)
    score = template.layer[end]
    num_classes = template.layer[end - 1].convolution_param.num_output
    net = caffe_pb2.NetParameter(name=template.name.replace("vgg16", "resnet101"))
    net.layer.extend(template.layer[:start])
    branches = trunk_and_aspp(net, template.layer[start].bottom[0], variant, num_classes)
    summed = net.layer.add()
    summed.CopyFrom(score)
    summed.ClearField("bottom")
    summed.bottom.extend(branches)
    net.layer.extend(template.layer[end + 1:])
    for layer in net.layer:
        if layer.type == "ImageData":
            layer.image_data_param.batch_size = STAGE1_BATCH
    return net


def solver(template, stage):
    solver_message = type(template)()
    solver_message.CopyFrom(template)
    for field, value in DEEPLAB_RESNET_SOLVER.items():
        setattr(solver_message, field, value)
    if stage == 2:
        for field, value in STAGE2_SCHEDULE.items():
            setattr(solver_message, field, value)
    return solver_message


def variant_edits():
    """Edit lines turning the msra nets into the torchvision variant: each trunk convolution whose
    stride, dilation or pad differs, in every net."""
    files = ",".join(NETS)
    lines = []
    msra = {name: (stride, dilation) for name, _, _, _, stride, dilation in resnet.trunk_convolutions("msra")}
    for name, _, _, kernel, stride, dilation in resnet.trunk_convolutions("torchvision"):
        if msra[name] == (stride, dilation):
            continue
        old_stride, old_dilation = msra[name]
        if stride != old_stride:
            lines.append(f"{files}  {name}  convolution_param.stride[0]  {stride}")
        if dilation != old_dilation:
            lines.append(f"{files}  {name}  convolution_param.dilation[0]  {dilation}")
            lines.append(f"{files}  {name}  convolution_param.pad[0]  {dilation * (kernel // 2)}")
    return lines


HEADER = ("# {file}: PASCAL VOC 2012, DSRG with DeepLab-v2's ResNet-101 (msra variant), generated by\n"
          "# tools/make_resnet_prototxt.py from experiment/voc12-vgg16/{file}; edit the generator, not this file.\n")


def torchvision_edits_text():
    lines = variant_edits()
    head = ("# The torchvision variant of experiment/voc12-resnet101's nets (for --source torchvision-resnet101):\n"
            "# torchvision's resnet101 strides in a block's 3×3 (branch2b) instead of its first 1×1 (branch2a), and the\n"
            "# first block of a dilated stage keeps the previous dilation (res4a 1, res5a 2), as its _make_layer with\n"
            "# replace_stride_with_dilation=[False, True, True] builds them. Generated by tools/make_resnet_prototxt.py.\n")
    return head + "\n".join(lines) + "\n"


def rendered_files(template_dir=TEMPLATE):
    """{file name: text} of the generated experiment (nets, solvers, torchvision.edits)."""
    caffe_pb2 = import_caffe_pb2()
    template_dir = Path(template_dir)
    files = {}
    for name in NETS:
        template = parse((template_dir / name).read_text(), caffe_pb2.NetParameter())
        files[name] = HEADER.format(file=name) + netedit.message_text(resnet_net(template, "msra", name))
    for stage in (1, 2):
        name = f"stage{stage}_solver.prototxt"
        template = parse((template_dir / name).read_text(), caffe_pb2.SolverParameter())
        files[name] = HEADER.format(file=name) + netedit.message_text(solver(template, stage))
    files[TORCHVISION_EDITS] = torchvision_edits_text()
    return files


def write_random_weights(net_path, out, seed=0):
    """A random caffemodel in DeepLab's init.caffemodel layout (trunk layers only) for the net `net_path`."""
    import numpy as np

    import_caffe().set_random_seed(seed)
    net = load_net(net_path, None, None, tool_name())
    trunk = [name for name in net.params if resnet.is_trunk_layer(name)]
    for name in trunk:
        blobs = net.params[name]
        if resnet.trunk_layer_type(name) == "BatchNorm":
            blobs[0].data[...], blobs[1].data[...], blobs[2].data[...] = 0, 1, 1
        elif resnet.trunk_layer_type(name) == "Scale":
            blobs[0].data[...] = RANDOM_RESIDUAL_GAMMA if name.endswith("branch2c") else 1
            blobs[1].data[...] = 0
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "random.caffemodel"
        net.save(str(path))
        model = caffe_protos().NetParameter()
        model.ParseFromString(path.read_bytes())
    kept = [layer for layer in model.layer if layer.name in trunk]
    del model.layer[:]
    model.layer.extend(kept)
    atomic_write_bytes(out, model.SerializeToString())
    return len(kept), int(sum(np.prod(blob.data.shape) for name in trunk for blob in net.params[name]))


def out_of_date(out_dir, files):
    return sorted(name for name, text in files.items()
                  if not (out_dir / name).is_file() or (out_dir / name).read_text() != text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--template", type=Path, default=TEMPLATE, help="the VGG16 experiment folder")
    parser.add_argument("--out", type=Path, default=OUT, help="the folder to write")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if OUT is out of date")
    parser.add_argument("--random-weights", type=Path, metavar="CAFFEMODEL",
                        help="only write a random init.caffemodel-layout file for OUT's deploy net (smoke runs)")
    parser.add_argument("--net", type=Path, help="with --random-weights: the net (default OUT/deploy.prototxt)")
    parser.add_argument("--seed", type=int, default=0, help="with --random-weights: Caffe's filler seed")
    args = parser.parse_args(argv)
    if args.random_weights is not None:
        layers, values = write_random_weights(args.net or args.out / "deploy.prototxt", args.random_weights, args.seed)
        print(f"{tool_name()}: {layers} trunk layers, {values} values, written to {args.random_weights}")
        return 0
    files = rendered_files(args.template)
    stale = out_of_date(args.out, files)
    if args.check:
        if stale:
            print(f"{tool_name()}: out of date in {args.out}: {', '.join(stale)} (rerun the tool)",
                  file=sys.stderr)
            return 1
        print(f"{tool_name()}: {args.out} is up to date")
        return 0
    for name in stale:
        atomic_write_text(args.out / name, files[name])
    print(f"{tool_name()}: {len(stale)} of {len(files)} files written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
