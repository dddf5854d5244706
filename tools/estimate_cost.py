#!/usr/bin/env python
"""Estimate what a training schedule costs before running it: FLOPs, memory, and hours at a rate you give.

The deploy net is built by Caffe at --size × --size (nothing is run and no weights are read); its
convolutions give the FLOPs of one image's forward pass (2 per multiply-add, the numpy core is
dsrg.cost), training counts three passes per image. Memory is what Caffe holds for a training net
at the schedule's batch: data and diff for every blob of the deploy net (the loss layers' few extra blobs are
left out) and value, gradient and solver history for every parameter. Hours need a sustained
FLOP rate, which depends on the GPU and on Caffe's im2col convolutions (cuDNN is off): pass what
you measured, or read the figure as a rough estimate at the rate given.

Each --schedule NAME=ITERATIONSxBATCH adds a row (default: the published recipe, stage 1 8,000 ×
20 and stage 2 20,000 × 10 at 321).

Example:
  python tools/estimate_cost.py --deploy experiment/voc12-vgg16/deploy.prototxt --size 321 --tflops 15
"""
import argparse
import sys

from dsrg import cost
from dsrg.cli import run_main, tool_name
from pylayers.netio import load_net

PUBLISHED_SCHEDULE = ("stage 1=8000x20", "stage 2=20000x10")


def parse_schedule(text):
    name, sep, shape = text.partition("=")
    iterations, times, batch = shape.partition("x")
    if not sep or not times or not iterations.isdigit() or not batch.isdigit():
        raise ValueError(f"--schedule expects NAME=ITERATIONSxBATCH (e.g. 'stage 1=8000x20'), got {text!r}")
    return name, int(iterations), int(batch)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deploy", required=True, help="deploy prototxt (one Input layer)")
    parser.add_argument("--size", type=int, default=321, help="square input side (default 321)")
    parser.add_argument("--schedule", action="append", type=parse_schedule, metavar="NAME=ITERATIONSxBATCH",
                        help="a training schedule row (repeatable; default the published two stages)")
    parser.add_argument("--solver-type", default="SGD", choices=sorted(cost.HISTORY_ARRAYS),
                        help="solver whose history is counted in the memory (default SGD)")
    parser.add_argument("--tflops", type=float, default=None,
                        help="sustained rate in TFLOP/s for the hours column (default: no hours)")
    args = parser.parse_args(argv)
    args.schedule = args.schedule or [parse_schedule(text) for text in PUBLISHED_SCHEDULE]
    return args


def net_shapes(deploy, size):
    """(convolutions as dsrg.cost.ConvShape, blob values per image, parameter values) of `deploy` at size²."""
    net = load_net(deploy, None, None, tool_name())
    if len(net.inputs) != 1:
        raise ValueError(f"{deploy}: expected a deploy net with one input, found {len(net.inputs)}")
    net.blobs[net.inputs[0]].reshape(1, net.blobs[net.inputs[0]].data.shape[1], size, size)
    net.reshape()
    convolutions = []
    for name, layer in zip(net._layer_names, net.layers):
        if layer.type == "Convolution":
            top = net.blobs[net.top_names[name][0]].data.shape
            convolutions.append(cost.ConvShape(name, tuple(net.params[name][0].data.shape), top[2], top[3]))
    blob_values = sum(blob.count for blob in net.blobs.values())
    parameter_values = sum(blob.count for blobs in net.params.values() for blob in blobs)
    return convolutions, blob_values, parameter_values


def main(argv=None):
    args = parse_args(argv)
    convolutions, blob_values, parameter_values = net_shapes(args.deploy, args.size)
    per_image = cost.forward_flops(convolutions)
    print(f"{args.deploy} at {args.size}x{args.size}: {len(convolutions)} convolutions, "
          f"{per_image / 1e9:.1f} GFLOP per image forward, {parameter_values / 1e6:.1f} M parameters")
    header = f"{'schedule':<12} {'iterations':>10} {'batch':>5} {'PFLOP':>8} {'memory GiB':>10}"
    print(header + (f" {'hours at ' + format(args.tflops, 'g') + ' TFLOP/s':>22}" if args.tflops else ""))
    for name, iterations, batch in args.schedule:
        flops = cost.training_flops(convolutions, batch, iterations)
        memory = cost.training_memory_bytes(blob_values * batch, parameter_values, args.solver_type)
        row = f"{name:<12} {iterations:>10} {batch:>5} {flops / 1e15:>8.1f} {memory / 2 ** 30:>10.1f}"
        print(row + (f" {cost.hours_at(flops, args.tflops):>22.1f}" if args.tflops else ""))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
