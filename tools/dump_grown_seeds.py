#!/usr/bin/env python
"""Dump the seeds DSRG grows for each training image with a trained stage-1 net.

The stage-1 training prototxt is run forward in the TEST phase (no dropout) with its data layer
made deterministic (ImageData shuffle off, AnnotationLayer mirror off) and cut down to the layers
the DSRGLayer's top depends on. For each image of the ImageData source list the DSRG top (the grown
cues, C×h×w 0/1) is written to OUT/<id>.npy as uint8 — the format tools/seed_quality.py reads with
--grown-seeds — so the grown seeds can be compared with the raw cues against ground truth.

Example:
  python tools/dump_grown_seeds.py --net runs/demo/prototxt/stage1_train.prototxt \\
      --weights runs/demo/stage1/final.caffemodel --out runs/demo/grown_seeds
"""
import ast
import math
import sys
import argparse
from pathlib import Path

import numpy as np

from dsrg.cli import add_no_progress, run_main, tool_name
from dsrg.fileio import atomic_save_npy, atomic_write_text
from dsrg.lists import read_image_ids
from dsrg.progress import progress
from pylayers.netio import load_net, read_net_prototxt

DSRG_LAYER = "DSRGLayer"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--net", required=True, help="(rendered) stage-1 training prototxt")
    parser.add_argument("--weights", required=True, help="trained stage-1 .caffemodel")
    parser.add_argument("--out", required=True, help="output folder of <id>.npy grown seeds")
    parser.add_argument("--batch-size", type=int, default=10, help="images per forward pass (default 10)")
    parser.add_argument("--source", help="image list to read instead of the ImageData layer's own (e.g. the "
                                         "plain training list when stage 1 trains on a class-balanced one)")
    parser.add_argument("--limit", type=int, help="only the first N images of the list")
    parser.add_argument("--gpu", type=int, help="GPU id; CPU when not given")
    add_no_progress(parser)
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be positive, got {args.batch_size}")
    return args


def seed_dump_net(net_param, batch_size, source=None):
    """The stage-1 NetParameter reduced to what the DSRGLayer's top needs, read in list order
    (from `source` instead of the ImageData layer's own list when given).

    Returns (net parameter, the DSRG top name, the ImageData layer parameter).
    """
    layers = list(net_param.layer)
    dsrg = [layer for layer in layers if layer.type == "Python" and layer.python_param.layer == DSRG_LAYER]
    if len(dsrg) != 1:
        raise ValueError(f"{tool_name()}: expected exactly one {DSRG_LAYER} in the net, found {len(dsrg)}")
    needed, keep = set(dsrg[0].bottom), [dsrg[0]]
    for layer in reversed(layers[:layers.index(dsrg[0])]):
        if needed & set(layer.top):
            keep.append(layer)
            needed |= set(layer.bottom)
    keep.reverse()
    data_layers = [layer for layer in keep if layer.type == "ImageData"]
    if len(data_layers) != 1:
        raise ValueError(f"{tool_name()}: expected one ImageData layer feeding {DSRG_LAYER}, "
                         f"found {len(data_layers)}")
    data_layer = data_layers[0]
    if source is not None:
        data_layer.image_data_param.source = str(Path(source).resolve())
    data_layer.image_data_param.shuffle = False
    data_layer.image_data_param.batch_size = batch_size
    data_layer.transform_param.mirror = False
    for layer in keep:
        if layer.type == "Python" and layer.python_param.param_str:
            params = ast.literal_eval(layer.python_param.param_str)
            if isinstance(params, dict) and "mirror" in params:
                params["mirror"] = False
                layer.python_param.param_str = repr(params)
        layer.ClearField("loss_weight")
    reduced = type(net_param)()
    reduced.CopyFrom(net_param)
    del reduced.layer[:]
    reduced.layer.extend(keep)
    return reduced, dsrg[0].top[0], data_layer


def read_source_ids(data_layer):
    """The ids of the data layer's list in its order, repeats kept: the net reads the list line by
    line, so the i-th map of the dump is the i-th line's image (a repeated id is written again)."""
    source = Path(data_layer.image_data_param.source)
    if not source.is_file():
        raise FileNotFoundError(f"{tool_name()}: the ImageData source list does not exist: {source}")
    return read_image_ids(source, allow_repeats=True)


def main(argv=None):
    args = parse_args(argv)
    from google.protobuf import text_format

    net_param = read_net_prototxt(args.net)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    reduced, seeds_top, data_layer = seed_dump_net(net_param, args.batch_size, args.source)
    image_ids = read_source_ids(data_layer)
    if args.limit is not None:
        image_ids = image_ids[:args.limit]
    if all((out / f"{name}.npy").is_file() for name in image_ids):
        print(f"{tool_name()}: all {len(image_ids)} grown seed maps already in {out}; skipping")
        return 0
    reduced_path = out / "seed_dump_net.prototxt"
    atomic_write_text(reduced_path, text_format.MessageToString(reduced))
    net = load_net(reduced_path, args.weights, args.gpu, tool_name())

    batches = math.ceil(len(image_ids) / args.batch_size)
    position = 0
    for _ in progress(range(batches), desc="grown seeds", unit="batch", disable=args.no_progress):
        net.forward()
        grown = np.asarray(net.blobs[seeds_top].data)
        for row in range(min(args.batch_size, len(image_ids) - position)):
            atomic_save_npy(out / f"{image_ids[position]}.npy", (grown[row] > 0.5).astype(np.uint8))
            position += 1
    print(f"{tool_name()}: wrote {position} grown seed maps to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
