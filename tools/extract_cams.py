#!/usr/bin/env python
"""Class activation maps of a trained CAM net (SEC's localisation net) for a list of images.

Each image is warped to the deploy net's input size (BGR minus the mean, as tools/infer.py feeds
the segmentation nets), run through the net, and the heatmaps of all foreground classes are computed
from the last feature map and the classifier (dsrg.cam.class_heatmaps: M_c = Σ_k W[c, k] F[k]):

    OUT/<id>.npy   float32 (C-1)×h×w, row c-1 = class c, on the net's grid (41×41 for 321, 21×21 for 161)

Images already in OUT are skipped; OUT/cam_config.json records the net, weights and input size, and a
folder made with other settings is refused (its maps would be mixed).

Example:
  python tools/extract_cams.py --deploy runs/demo/prototxt/cam_deploy.prototxt \\
      --weights runs/demo/cam/final.caffemodel --images runs/demo/data/JPEGImages \\
      --ids runs/demo/data/lists/train_id.txt --out runs/demo/cams
"""
import argparse
import json
import sys
from pathlib import Path

from dsrg.cam import class_heatmaps
from dsrg.cli import add_no_progress, run_main, tool_name
from dsrg.fileio import atomic_save_npy, atomic_write_json, read_rgb
from dsrg.inference import preprocess
from dsrg.lists import read_image_ids
from dsrg.progress import progress
from dsrg.voc import MEAN_BGR
from pylayers.netio import load_net

CONFIG_NAME = "cam_config.json"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deploy", required=True, help="CAM deploy prototxt (input blob 'images')")
    parser.add_argument("--weights", required=True, help="trained CAM net (.caffemodel)")
    parser.add_argument("--images", required=True, help="image folder")
    parser.add_argument("--ids", required=True, help="image ids, one per line")
    parser.add_argument("--out", required=True, help="output folder of <id>.npy heatmaps")
    parser.add_argument("--image-ext", default=".jpg", help="image file extension (default .jpg)")
    parser.add_argument("--size", type=int, help="square input warp (default: the deploy net's input size)")
    parser.add_argument("--feature-blob", default="fc7_CAM", help="last feature map (default fc7_CAM)")
    parser.add_argument("--classifier", default="fc8_CAM", help="bias-free classifier layer (default fc8_CAM)")
    parser.add_argument("--limit", type=int, help="only the first LIMIT ids")
    parser.add_argument("--gpu", type=int, help="GPU id; CPU when not given")
    add_no_progress(parser)
    return parser.parse_args(argv)


def check_folder_settings(out, settings):
    path = out / CONFIG_NAME
    if path.is_file():
        previous = json.loads(path.read_text())
        changed = sorted(key for key, value in settings.items() if previous.get(key) != value)
        if changed:
            raise ValueError(f"{tool_name()}: {out} holds heatmaps made with other settings "
                             f"({', '.join(changed)} differ); choose another --out or remove that folder")


def main(argv=None):
    args = parse_args(argv)
    image_ids = read_image_ids(args.ids)[:args.limit]
    out = Path(args.out)
    settings = {"deploy": str(Path(args.deploy).resolve()), "weights": str(Path(args.weights).resolve()),
                "size": args.size, "feature_blob": args.feature_blob, "classifier": args.classifier}
    check_folder_settings(out, settings)
    todo = [name for name in image_ids if not (out / f"{name}.npy").is_file()]
    print(f"{tool_name()}: {len(image_ids) - len(todo)} of {len(image_ids)} images already done; "
          f"{len(todo)} to go")
    if not todo:
        return 0
    net = load_net(args.deploy, args.weights, args.gpu, tool_name())
    for name, where in ((args.feature_blob, net.blobs), (args.classifier, net.params)):
        if name not in where:
            raise KeyError(f"{tool_name()}: {args.deploy} has no {'blob' if where is net.blobs else 'layer'} "
                           f"{name!r}")
    classifier = net.params[args.classifier]
    if len(classifier) != 1:
        raise ValueError(f"{tool_name()}: {args.deploy}: layer {args.classifier!r} must be an InnerProduct "
                         f"without bias (1 parameter blob), it has {len(classifier)}")
    weights = classifier[0].data.copy()
    input_blob = net.inputs[0]
    size = args.size or net.blobs[input_blob].data.shape[-1]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / CONFIG_NAME, {**settings, "ids": str(args.ids), "images": len(image_ids)})
    for name in progress(todo, desc="cams", unit="img", disable=args.no_progress):
        batch = preprocess(read_rgb(Path(args.images) / f"{name}{args.image_ext}"), size, size, MEAN_BGR)
        blob = net.blobs[input_blob]
        if tuple(blob.data.shape) != batch.shape:
            blob.reshape(*batch.shape)
            net.reshape()
        blob.data[...] = batch
        net.forward()
        atomic_save_npy(out / f"{name}.npy", class_heatmaps(net.blobs[args.feature_blob].data[0], weights))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
