#!/usr/bin/env python
"""Multi-scale inference of a segmentation net: palette PNG label maps (and optionally probabilities).

Each image runs through the deploy net at several input sizes; by default (--fuse scores, the
release's test-ms.py and test-ms-f.py) the raw per-scale scores are resized to the image (bilinear, aligned
corners), summed, and turned into probabilities by one softmax (--fuse probs instead averages the
per-scale softmax maps); an optional dense CRF (our krahenbuhl2013.CRF, scale_factor 1, on
log-probabilities) refines them; the label map is the per-pixel best class over all classes, as
the release's pseudo labels are, or with --restrict-to-labels only among the image-level classes +
background (the release's unused generate_train_gt.py). The numpy core is dsrg.inference.

Scale modes: 'warp' — each scale is a square side, the image is warped to it (stage-1 model,
default 241,321,401 as test-ms.py); 'relative' — each scale multiplies the image size (final model,
default 0.75,1,1.25 as test-ms-f.py). Outputs are written atomically; images whose outputs exist are skipped, and a
folder made with other settings (weights, scales, fusion, CRF, restriction) is refused, not mixed.

Shards: --shard K/N (0-based, 0 ≤ K < N) takes every N-th id of the list starting with the K-th; the N
shards of one call run as separate processes (or machines) into the same --out. --check-complete, with
the same arguments, checks instead of inferring: every id has a label map that decodes and has its
image's size, made with these settings; each problem is a line, and the exit status 1 (docs/scaling.md).

Examples:
  python tools/infer.py --deploy deploy.prototxt --weights stage1/final.caffemodel \\
      --images VOC/JPEGImages --ids lists/train_aug_id.txt --out pseudo --scale-mode warp --crf \\
      --restrict-to-labels cues.pickle.gz --input-list lists/input_list.txt
  python tools/infer.py --deploy deploy.prototxt --weights stage2/final.caffemodel \\
      --images VOC/JPEGImages --ids lists/val_id.txt --out pred --scale-mode relative --crf --shard 0/2
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from dsrg.cli import add_inference_options, add_no_progress, resolve_scales, run_main, tool_name
from dsrg.fileio import atomic_save_label_png, atomic_save_npy, atomic_write_json, read_rgb
from dsrg.inference import dense_crf, predict
from dsrg.lists import read_image_ids
from dsrg.progress import progress
from dsrg.shards import format_shard, output_problems, parse_shard, shard_ids
from pylayers.netio import CaffeForward, load_net


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deploy", required=True, help="deploy prototxt (one image input, class-score output)")
    parser.add_argument("--weights", required=True, help="trained .caffemodel")
    parser.add_argument("--images", required=True, help="folder of <id><ext> images")
    parser.add_argument("--ids", required=True, help="image list (ids, or '<id>.jpg <index>' lines)")
    parser.add_argument("--out", required=True, help="output folder of <id>.png palette label maps")
    add_inference_options(parser, scale_mode="warp")
    parser.add_argument("--restrict-to-labels", metavar="CUES",
                        help="cue file whose image-level labels restrict each labelling (plus background)")
    parser.add_argument("--input-list", help="input_list.txt ('<id>.jpg <index>') mapping ids to cue-file indices; "
                                             "required with --restrict-to-labels")
    parser.add_argument("--num-classes", type=int, help="classes incl. background (default: the net's output)")
    parser.add_argument("--save-probs", metavar="DIR", help="also write <id>.npy C×H×W float16 probabilities here")
    parser.add_argument("--image-ext", default=".jpg", help="image file extension (default .jpg)")
    parser.add_argument("--limit", type=int, help="only the first N images of the list")
    parser.add_argument("--shard", type=parse_shard, metavar="K/N",
                        help="only shard K of N (0-based): every N-th id of the list, starting with the K-th")
    parser.add_argument("--check-complete", action="store_true",
                        help="infer nothing: check that every id (of the shard) has a label map that decodes, "
                             "of its image's size, made with these settings; each problem a line, exit 1")
    add_no_progress(parser)
    args = resolve_scales(parser.parse_args(argv))
    if args.restrict_to_labels and not args.input_list:
        parser.error("--restrict-to-labels needs --input-list to map image ids to cue-file indices")
    return args


def image_label_sets(cue_path, input_list, num_classes):
    """{image id: allowed classes (background + image labels)} from a cue file and its input list."""
    from dsrg.cues import image_cue_entry, load_cues
    from dsrg.lists import read_indexed_list

    mapping = load_cues(cue_path)
    allowed = {}
    for image_name, index in read_indexed_list(input_list):
        labels, _ = image_cue_entry(mapping, index, num_classes, source=str(cue_path))
        allowed[image_name] = np.concatenate([[0], labels]).astype(np.int64)
    return allowed


CONFIG_NAME = "infer_config.json"


def inference_settings(args):
    """What the label maps in --out depend on; a folder holds the outputs of one set of settings."""
    return {
        "deploy": str(Path(args.deploy).resolve()), "weights": str(Path(args.weights).resolve()),
        "scale_mode": args.scale_mode, "scales": args.scales, "fuse": args.fuse, "crf": args.crf,
        "crf_scale": args.crf_scale, "restrict_to_labels": args.restrict_to_labels, "mean": list(args.mean),
    }


def check_folder_settings(out, settings):
    """Refuse to add to a folder whose outputs were made with other settings (they would be mixed)."""
    path = out / CONFIG_NAME
    if not path.is_file():
        return
    import json
    previous = json.loads(path.read_text())
    changed = sorted(key for key, value in settings.items() if previous.get(key) != value)
    if changed:
        details = "; ".join(f"{key}: {previous.get(key)!r} before, {settings[key]!r} now" for key in changed)
        raise ValueError(f"{tool_name()}: {out} holds outputs made with other settings ({details}); "
                         f"choose another --out or remove that folder")


def check_complete(args, out, settings, image_ids):
    """--check-complete: the folder's settings record and every id's outputs (dsrg.shards)."""
    record, name = out / CONFIG_NAME, tool_name()
    problems = []
    try:
        if record.is_file():
            check_folder_settings(out, settings)
        else:
            problems.append(f"{name}: {record}: missing (no infer.py call has written into {out})")
    except ValueError as error:
        problems.append(str(error) if str(error).startswith(f"{name}:") else f"{name}: {record}: {error}")
    problems += [f"{name}: {problem}" for problem in
                 output_problems(out, image_ids, args.images, args.image_ext, args.save_probs)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        raise ValueError(f"{name}: {out}: {len(problems)} problems (listed above) in the outputs of "
                         f"{len(image_ids)} images")
    print(f"{name}: {out}: all {len(image_ids)} images done, made with these settings")
    return 0


def main(argv=None):
    args = parse_args(argv)
    image_ids = read_image_ids(args.ids)
    if args.limit is not None:
        image_ids = image_ids[:args.limit]
    mine = shard_ids(image_ids, *args.shard) if args.shard else image_ids
    out = Path(args.out)
    settings = inference_settings(args)
    if args.check_complete:
        return check_complete(args, out, settings, mine)
    check_folder_settings(out, settings)
    probs_dir = Path(args.save_probs) if args.save_probs else None

    def finished(name):
        return (out / f"{name}.png").is_file() and (probs_dir is None or (probs_dir / f"{name}.npy").is_file())

    todo = [name for name in mine if not finished(name)]
    shard = f" shard {format_shard(args.shard)}" if args.shard else ""
    print(f"{tool_name()}{shard}: {len(mine) - len(todo)} of {len(mine)} images already done; {len(todo)} to go")
    # The net is loaded (its files checked) before the folder records its settings: a mistyped
    # --deploy or --weights leaves nothing behind that would refuse the corrected call.
    net = load_net(args.deploy, args.weights, args.gpu, tool_name()) if todo else None
    out.mkdir(parents=True, exist_ok=True)
    # The same record from every shard of a call (the whole list's count, no shard): concurrent
    # shards replace it atomically with equal contents.
    atomic_write_json(out / CONFIG_NAME, {**settings, "ids": str(args.ids), "images": len(image_ids)})
    if probs_dir is not None:
        probs_dir.mkdir(parents=True, exist_ok=True)
    if todo:
        forward = CaffeForward(net, args.input_blob, args.score_blob)
        num_classes = args.num_classes or forward.num_classes
        allowed = (image_label_sets(args.restrict_to_labels, args.input_list, num_classes)
                   if args.restrict_to_labels else None)
        crf = dense_crf(args.crf_scale) if args.crf else None
        for name in progress(todo, desc="infer" + shard, unit="img", disable=args.no_progress):
            if allowed is not None and name not in allowed:
                raise KeyError(f"{tool_name()}: image {name} is not in {args.input_list}, so its labels are unknown")
            image = read_rgb(Path(args.images) / f"{name}{args.image_ext}")
            labels, probs = predict(forward, image, args.scales, args.scale_mode, fuse=args.fuse, crf=crf,
                                    allowed_classes=None if allowed is None else allowed[name],
                                    mean_bgr=args.mean)
            if probs_dir is not None:
                atomic_save_npy(probs_dir / f"{name}.npy", probs.astype(np.float16))
            atomic_save_label_png(out / f"{name}.png", labels)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
