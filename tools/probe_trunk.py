#!/usr/bin/env python
"""Linear probes of a frozen trunk on labelled photos: does it carry the classes' information?

Each trunk (a deploy prototxt with --trunk NAME=WEIGHTS, and with --random-trunk the same net with
He-normal weights as a floor) runs over the training and val images, warped to --size (BGR minus
the mean, as the nets see them). For every blob in --blobs two linear probes are fitted on the
training images and scored on val (numpy core: dsrg.probes):

  image mAP   global-average-pooled features, a logistic regression per class, against the image
              labels (classes present in the ground truth); the reference is the prior, the mean
              share of val images that hold each class;
  pixel mIoU  the features of every grid cell, softmax regression over all classes, fitted with the
              ground truth sampled on the grid (full supervision: an upper bound for a linear head on
              these frozen features); the reference is the all-background prediction.

Features are cached in --cache-dir (one .npy per trunk, split and blob, with the settings they were
made with), so a rerun only refits; --out (JSON) and --markdown are written atomically, and a rerun
whose --out already holds the same settings does nothing.

Example (the voc12-photos trunk on the shared photos):
  python tools/probe_trunk.py --deploy runs/voc12-photos/prototxt/deploy.prototxt \\
      --trunk hed=runs/voc12-photos/init/hed.caffemodel --random-trunk \\
      --images ../shared/data/voc12/JPEGImages --gt ../shared/data/voc12/SegmentationClassAug \\
      --train-ids ../shared/data/voc12/lists/train_aug_photos_id.txt \\
      --val-ids ../shared/data/voc12/lists/val_photos_id.txt \\
      --cache-dir runs/probe/features --out runs/probe/probe.json --markdown runs/probe/probe.md
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

from dsrg.cli import add_no_progress, run_main, tool_name
from dsrg.evaluation import resolve_class_names
from dsrg.fileio import atomic_save_npy, atomic_write_json, atomic_write_text, read_rgb
from dsrg.inference import preprocess
from dsrg.lists import read_image_ids
from dsrg.probes import image_labels, image_probe, pixel_probe
from pylayers.netio import load_net
from dsrg.progress import progress
from dsrg.seeds import sample_labels_on_grid
from dsrg.segdata import read_label_map

RANDOM_TRUNK = "random"


def parse_trunk(text):
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--trunk expects NAME=WEIGHTS, got {text!r}")
    if name == RANDOM_TRUNK:
        raise argparse.ArgumentTypeError(f"--trunk name {RANDOM_TRUNK!r} is reserved for --random-trunk")
    return name, path


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deploy", required=True, help="deploy prototxt whose input blob takes the images")
    parser.add_argument("--trunk", action="append", type=parse_trunk, default=[], metavar="NAME=WEIGHTS",
                        help="a trunk to probe: a name and its .caffemodel (repeatable)")
    parser.add_argument("--random-trunk", action="store_true",
                        help=f"also probe the net with He-normal weights and zero biases ('{RANDOM_TRUNK}')")
    parser.add_argument("--images", required=True, help="folder of <id>.jpg images")
    parser.add_argument("--gt", required=True, help="folder of <id>.png ground-truth label maps (255 = ignore)")
    parser.add_argument("--train-ids", required=True, help="training image list (ids or '<id>.jpg <index>' lines)")
    parser.add_argument("--val-ids", required=True, help="val image list")
    parser.add_argument("--train-limit", type=int, help="only the first N training images")
    parser.add_argument("--val-limit", type=int, help="only the first N val images")
    parser.add_argument("--blobs", default="pool3,pool4,pool5a",
                        help="comma-separated blobs to probe (default pool3,pool4,pool5a)")
    parser.add_argument("--size", type=int, default=161, help="square input size (default 161)")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--num-classes", type=int, default=21)
    parser.add_argument("--l2", type=float, default=1e-3, help="L2 weight λ of both probes (default 1e-3)")
    parser.add_argument("--max-train-cells", type=int, default=200_000,
                        help="training cells of the pixel probe, a fixed random subset (default 200000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random trunk and the cell subset")
    parser.add_argument("--cache-dir", required=True, help="folder for the extracted features")
    parser.add_argument("--out", required=True, help="JSON with every figure")
    parser.add_argument("--markdown", help="the summary table as Markdown")
    parser.add_argument("--gpu", type=int, help="GPU id; CPU when not given")
    add_no_progress(parser)
    args = parser.parse_args(argv)
    if not args.trunk and not args.random_trunk:
        parser.error("give at least one --trunk NAME=WEIGHTS or --random-trunk")
    args.blobs = [blob for blob in args.blobs.split(",") if blob]
    return args



def fill_he_normal(net, seed):
    """He-normal weights (std sqrt(2 / fan_in)) and zero biases in every layer of a pycaffe net."""
    rng = np.random.default_rng(seed)
    for params in net.params.values():
        weight = params[0].data
        fan_in = int(np.prod(weight.shape[1:])) or 1
        weight[...] = rng.normal(0.0, np.sqrt(2.0 / fan_in), weight.shape)
        for bias in list(params)[1:]:
            bias.data[...] = 0


def last_layer_for(net, blobs):
    """The name of the last layer that writes one of `blobs` (the forward pass stops there)."""
    missing = [blob for blob in blobs if blob not in net.blobs]
    if missing:
        raise ValueError(f"{tool_name()}: the deploy net has no blob {missing[0]!r} "
                         f"(its blobs: {', '.join(net.blobs)})")
    names = list(net._layer_names)
    return names[max(index for index, name in enumerate(names) if set(net.top_names[name]) & set(blobs))]


class FeatureExtractor:
    """Pooled (N×D) and grid (N×D×g×g, float16) features of the blobs, for warped images."""

    def __init__(self, net, blobs, size, batch_size):
        self.net, self.blobs, self.size, self.batch_size = net, blobs, size, batch_size
        self.input_blob = net.inputs[0]
        self.end = last_layer_for(net, blobs)

    def __call__(self, images_dir, ids, bar):
        grids = {blob: [] for blob in self.blobs}
        for start in range(0, len(ids), self.batch_size):
            names = ids[start:start + self.batch_size]
            batch = np.concatenate([preprocess(read_rgb(Path(images_dir) / f"{name}.jpg"), self.size, self.size)
                                    for name in names])
            blob = self.net.blobs[self.input_blob]
            if tuple(blob.data.shape) != batch.shape:
                blob.reshape(*batch.shape)
                self.net.reshape()
            blob.data[...] = batch
            self.net.forward(end=self.end)
            for name in self.blobs:
                grids[name].append(self.net.blobs[name].data.astype(np.float16))
            bar.update(len(names))
        return {name: np.concatenate(parts) for name, parts in grids.items()}


def cached_features(args, trunk, weights, split, ids):
    """{blob: N×D×g×g float16} for one trunk and split, from the cache or extracted and cached."""
    folder = Path(args.cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    settings = {"deploy": str(Path(args.deploy).resolve()), "weights": weights, "size": args.size,
                "images": str(Path(args.images).resolve()), "ids": ids,
                "seed": args.seed if weights is None else None}
    settings_path = folder / f"{trunk}_{split}.json"
    paths = {blob: folder / f"{trunk}_{split}_{blob}.npy" for blob in args.blobs}
    if settings_path.is_file() and json.loads(settings_path.read_text()) == settings \
            and all(path.is_file() for path in paths.values()):
        return {blob: np.load(path) for blob, path in paths.items()}
    if weights is not None and not Path(weights).is_file():
        raise FileNotFoundError(f"{tool_name()}: weights of trunk {trunk!r} not found: {weights}")
    net = load_net(args.deploy, weights, args.gpu, tool_name())
    if weights is None:
        fill_he_normal(net, args.seed)
    extractor = FeatureExtractor(net, args.blobs, args.size, args.batch_size)
    bar = progress(total=len(ids), desc=f"features {trunk} {split}", unit="img", disable=args.no_progress)
    features = extractor(args.images, ids, bar)
    bar.close()
    for blob, array in features.items():
        atomic_save_npy(paths[blob], array)
    atomic_write_json(settings_path, settings)
    return features


def read_labels(gt_dir, ids, grid, num_classes):
    """Image labels (N×C) and grid labels (N×g×g) from the ground-truth PNGs."""
    image_rows, grid_rows = [], []
    for name in ids:
        path = Path(gt_dir) / f"{name}.png"
        gt = read_label_map(path)
        try:
            image_rows.append(image_labels(gt, num_classes))
        except ValueError as error:
            raise ValueError(f"{tool_name()}: {path}: {error}") from error
        grid_rows.append(sample_labels_on_grid(gt, grid, grid).astype(np.int64))
    return np.stack(image_rows), np.stack(grid_rows)


def markdown_table(result, class_names):
    lines = ["| trunk | features | image mAP | pixel mIoU |", "|---|---|---:|---:|"]
    first = result["rows"][0]
    lines.append(f"| reference | prior (image), all background (pixel) | {first['image']['prior_map']:.1f} "
                 f"| {first['pixel']['all_background_miou']:.1f} |")
    for row in result["rows"]:
        lines.append(f"| {row['trunk']} | {row['blob']} | {row['image']['map']:.1f} | {row['pixel']['miou']:.1f} |")
    best = max(result["rows"], key=lambda row: row["pixel"]["miou"])
    per_class = ", ".join(f"{class_names[int(c)]} {ap:.0f} (prior {best['image']['prior_ap'][c]:.0f})"
                          for c, ap in best["image"]["ap"].items())
    lines += ["", f"Image AP per class, {best['trunk']} {best['blob']}: {per_class}.",
              "", f"{result['train_images']} training and {result['val_images']} val images at "
              f"{result['size']}×{result['size']}; λ = {result['l2']}."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    train_ids = read_image_ids(args.train_ids)[:args.train_limit]
    val_ids = read_image_ids(args.val_ids)[:args.val_limit]
    trunks = [[name, str(Path(path).resolve())] for name, path in args.trunk]
    if args.random_trunk:
        trunks.append([RANDOM_TRUNK, None])
    settings = {"deploy": str(Path(args.deploy).resolve()), "trunks": trunks, "blobs": args.blobs,
                "size": args.size, "train_ids": train_ids, "val_ids": val_ids, "l2": args.l2,
                "max_train_cells": args.max_train_cells, "seed": args.seed, "num_classes": args.num_classes}
    out = Path(args.out)
    if out.is_file() and json.loads(out.read_text()).get("settings") == settings:
        print(f"{tool_name()}: {out} already holds these probes; nothing to do")
        return 0
    rows, labels = [], {}
    for trunk, weights in trunks:
        train = cached_features(args, trunk, weights, "train", train_ids)
        val = cached_features(args, trunk, weights, "val", val_ids)
        for blob in args.blobs:
            grid = int(val[blob].shape[-1])
            for split, ids in (("train", train_ids), ("val", val_ids)):
                if (split, grid) not in labels:
                    labels[split, grid] = read_labels(args.gt, ids, grid, args.num_classes)
            (train_image, train_cells), (val_image, val_cells) = labels["train", grid], labels["val", grid]
            image = image_probe(train[blob].astype(np.float32).mean(axis=(2, 3)), train_image,
                                val[blob].astype(np.float32).mean(axis=(2, 3)), val_image, args.l2)
            pixel = pixel_probe(train[blob], train_cells, val[blob], val_cells, args.num_classes, args.l2,
                                max_train_cells=args.max_train_cells, seed=args.seed)
            rows.append({"trunk": trunk, "blob": blob, "grid": grid, "image": image, "pixel": pixel})
            print(f"{tool_name()}: {trunk} {blob}: image mAP {image['map']:.1f} (prior {image['prior_map']:.1f}), "
                  f"pixel mIoU {pixel['miou']:.1f} (all background {pixel['all_background_miou']:.1f})", flush=True)
    result = {"settings": settings, "size": args.size, "l2": args.l2, "train_images": len(train_ids),
              "val_images": len(val_ids), "rows": rows}
    if args.markdown:
        atomic_write_text(args.markdown, markdown_table(result, resolve_class_names(None, args.num_classes)))
    atomic_write_json(out, result)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
