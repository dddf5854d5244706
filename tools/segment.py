#!/usr/bin/env python
r"""Try a trained model on one's own photos: a palette label map and an overlay for each image.

For each IMAGE (JPEG, PNG or another format PIL reads, of any size up to 4096 pixels a side;
greyscale, RGBA and palette images are taken as RGB, and a photo is turned upright by its EXIF
orientation) it writes two files beside the image, or into --out DIR:
  <stem>_seg.png      the label map: a palette PNG of the image's size, one class index per pixel
  <stem>_overlay.jpg  the class colours blended over the photo (background left plain), with a
                      legend of the classes found when it fits (--overlay-ext .png for a PNG)
Existing outputs are replaced (each written atomically); inputs named like these outputs are
skipped, so `photos/*` can be given again. One line per image on stdout names the classes found.

The defaults are the final (stage-2) model's test setting, as run.sh gives it to tools/infer.py:
--scale-mode relative, --scales 0.75,1,1.25 of the image size, the scores summed and turned into
probabilities by one softmax; --crf adds the dense CRF (run.sh's test step uses it; slower). The
same image, net and settings give the label map tools/infer.py gives. A photo larger than
--max-side (default 500 pixels, the size of VOC's images, which the models learn from) is scaled
down for the net, and its label map scaled back up to the photo's size. Class names: --classes FILE
(one per line, background first), else VOC's.

Bad input (a missing file, a folder, a file that is not an image, a truncated image) does not stop
the run: each is one line on stderr naming the file, the other images are still done, and the exit
status is 1 at the end if any image failed; 0 when all were done, 2 for a usage error. A progress
bar (lines in a log) is shown from 10 images on.

Examples:
  python tools/segment.py photos/cat.jpg photos/street.png --crf \
      --deploy runs/demo/prototxt/deploy.prototxt --weights runs/demo/stage2/final.caffemodel
  python tools/segment.py photos/*.jpg --deploy deploy.prototxt --weights final.caffemodel \
      --classes data/demo/classes.txt --out segmented --gpu 0
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from dsrg.cli import EXPECTED_ERRORS, add_inference_options, add_no_progress, error_line, resolve_scales, run_main
from dsrg.evaluation import resolve_class_names
from dsrg.fileio import atomic_save_image, atomic_save_label_png, read_rgb
from dsrg.inference import dense_crf, predict
from dsrg.lists import read_class_names
from dsrg.progress import progress
from dsrg.visual import legend, overlay, paste_legend
from pylayers.netio import CaffeForward, load_net

TOOL = "segment.py"
SEG_SUFFIX = "_seg"
OVERLAY_SUFFIX = "_overlay"
OVERLAY_EXTS = (".jpg", ".png")
DEFAULT_MAX_SIDE = 500
PROGRESS_FROM = 10
LEGEND_ZOOM_EVERY = 600


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...)")
    parser.add_argument("--deploy", required=True, help="deploy prototxt (one image input, class-score output)")
    parser.add_argument("--weights", required=True,
                        help="trained .caffemodel (the final model: stage2/final.caffemodel)")
    parser.add_argument("--out", help="folder for the outputs (default: beside each image)")
    parser.add_argument("--classes", help="file with one class name per line, background first (default VOC's 21)")
    parser.add_argument("--overlay-ext", choices=OVERLAY_EXTS, default=".jpg",
                        help="format of the overlay (default .jpg)")
    parser.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE,
                        help=f"scale larger photos down to this longer side for the net (default {DEFAULT_MAX_SIDE}; "
                             "0: never)")
    add_inference_options(parser, scale_mode="relative")
    add_no_progress(parser)
    args = resolve_scales(parser.parse_args(argv))
    if args.max_side < 0:
        parser.error(f"--max-side must be 0 or positive, got {args.max_side}")
    return args


def output_paths(image_path, out, overlay_ext):
    """(label map, overlay) paths of one input image: beside it, or in `out` when given."""
    folder = Path(out) if out else image_path.parent
    return (folder / f"{image_path.stem}{SEG_SUFFIX}.png",
            folder / f"{image_path.stem}{OVERLAY_SUFFIX}{overlay_ext}")


def is_an_output(image_path):
    """Whether a file is named like one this tool writes (`<stem>_seg.png`, `<stem>_overlay.jpg|.png`)."""
    suffix = image_path.suffix.lower()
    return ((image_path.stem.endswith(SEG_SUFFIX) and suffix == ".png")
            or (image_path.stem.endswith(OVERLAY_SUFFIX) and suffix in OVERLAY_EXTS))


def plan(paths, out, overlay_ext):
    """[(input, label map path, overlay path, problem or None)] in the order given: an input named like
    an output is left out (with a note), one given twice is done once, and one whose outputs another
    input already claims (same stem, same folder) gets a problem instead of overwriting them."""
    jobs, claimed, seen, notes = [], {}, set(), []
    for text in paths:
        path = Path(text)
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        if is_an_output(path) and path.is_file():
            notes.append(f"{TOOL}: skipped {path}: named like an output of this tool")
            continue
        seg_path, overlay_path = output_paths(path, out, overlay_ext)
        other = claimed.setdefault(seg_path.resolve(), path)
        problem = None
        if other is not path:
            problem = (f"{path}: its outputs {seg_path.name} and {overlay_path.name} would replace those of {other}; "
                       "rename it or give it its own --out")
        jobs.append((path, seg_path, overlay_path, problem))
    return jobs, notes


def class_names_for(classes_path, num_classes):
    """The net's class names: from the --classes file (one per class the net scores), else VOC's."""
    if classes_path is None:
        return resolve_class_names(None, num_classes)
    names = read_class_names(classes_path)
    if len(names) != num_classes:
        raise ValueError(f"{classes_path}: {len(names)} class names, but the net scores {num_classes} classes "
                         "(expected one name per line, background first)")
    return names


def net_size(height, width, max_side):
    """The (height, width) a photo is run at: its own, or scaled down to a longer side of `max_side`."""
    if not max_side or max(height, width) <= max_side:
        return height, width
    factor = max_side / max(height, width)
    return max(1, round(height * factor)), max(1, round(width * factor))


def upsampled_labels(probs, height, width):
    """The per-pixel best class of C×h×w probabilities resized to height×width, one class at a time (a
    full-size C×H×W array of a large photo would take gigabytes). PIL's bilinear resize, pixel centres
    aligned, undoes the reduction of the photo (PIL's, too) geometrically."""
    best = np.full((height, width), -1.0, dtype=np.float32)
    labels = np.zeros((height, width), dtype=np.uint8)
    for index in range(probs.shape[0]):
        plane = np.asarray(Image.fromarray(probs[index].astype(np.float32), "F").resize(
            (width, height), Image.Resampling.BILINEAR))
        better = plane > best
        best[better], labels[better] = plane[better], index
    return labels


def segment(forward, rgb, args, crf):
    """The H×W uint8 label map of one H×W×3 photo (dsrg.inference.predict at --max-side at most)."""
    height, width = rgb.shape[:2]
    small = net_size(height, width, args.max_side)
    run_at = rgb if small == (height, width) else np.asarray(
        Image.fromarray(rgb).resize(small[::-1], Image.Resampling.LANCZOS))
    labels, probs = predict(forward, run_at, args.scales, args.scale_mode, fuse=args.fuse, crf=crf,
                            mean_bgr=args.mean)
    return labels if run_at is rgb else upsampled_labels(probs, height, width)


def overlay_image(rgb, labels, class_names):
    """The overlay (a PIL image of the photo's size) with a legend of the foreground classes found,
    enlarged on large photos (by the longer side / LEGEND_ZOOM_EVERY, rounded)."""
    found = [index for index in np.flatnonzero(np.bincount(labels.ravel())).tolist() if 0 < index < len(class_names)]
    blended = overlay(rgb, labels)
    if not found:
        return Image.fromarray(blended)
    zoom = max(1, round(max(rgb.shape[:2]) / LEGEND_ZOOM_EVERY))
    return paste_legend(blended, legend(class_names, rgb.shape[1] // zoom - 6, found, fit=True), zoom=zoom)


def class_shares(labels, class_names):
    """'name 40%, name 12%, ...': the classes of a label map, largest share first."""
    counts = np.bincount(labels.ravel())
    order = [index for index in np.argsort(-counts, kind="stable").tolist() if counts[index]]
    return ", ".join(f"{class_names[index] if index < len(class_names) else index} "
                     f"{100 * counts[index] / labels.size:.0f}%" for index in order)


def main(argv=None):
    args = parse_args(argv)
    jobs, notes = plan(args.images, args.out, args.overlay_ext)
    for note in notes:
        print(note)
    todo = [job for job in jobs if job[3] is None]
    forward = class_names = crf = None
    if todo:
        forward = CaffeForward(load_net(args.deploy, args.weights, args.gpu, TOOL), args.input_blob, args.score_blob)
        class_names = class_names_for(args.classes, forward.num_classes)
        crf = dense_crf(args.crf_scale) if args.crf else None
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
    failed = 0
    bar = progress(jobs, desc="segment", unit="img", disable=args.no_progress or len(jobs) < PROGRESS_FROM)
    for image_path, seg_path, overlay_path, problem in bar:
        try:
            if problem:
                raise ValueError(problem)
            rgb = read_rgb(image_path, upright=True)
            labels = segment(forward, rgb, args, crf)
            atomic_save_label_png(seg_path, labels)
            atomic_save_image(overlay_path, overlay_image(rgb, labels, class_names))
        except EXPECTED_ERRORS as error:
            failed += 1
            print(error_line(error, TOOL), file=sys.stderr, flush=True)
            continue
        bar.write(f"{image_path} -> {seg_path}, {overlay_path.name}: {class_shares(labels, class_names)}")
    print(f"{TOOL}: {len(jobs) - failed} of {len(jobs)} images segmented"
          + (f", {failed} failed (named above on stderr)" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_main(main))
