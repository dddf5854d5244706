"""Benchmark the DSRG training layers: forward+backward time per layer and for the stage-1 stack.

Batch N×C×h×w (default 20×21×41×41, images 321×321). Each row gives our time beside the per-pixel
reference where there is one:

- growing step: dsrg.growing.grow_cues (vectorised) vs dsrg.growing_reference (per-pixel rule,
  pure-Python connected components);
- stage-1 stack (Softmax, CRF, DSRG, BalancedSeedLoss, ConstrainLoss, forward + backward): ours,
  with the CRF computed once and shared, vs the reference stack with the per-pixel growing step
  and a separately computed CRF in each of the two layers, as the original layers did.

Inputs are realistic when the shared VOC12 data is present: the real SEC cues and image labels of
the first N images of input_list.txt, images painted from their SegmentationClassAug ground truth
(class colour plus noise; no VOC JPEGs exist here) and score maps derived from that ground truth
(blurred, noisy); otherwise synthetic blobs. Timings go through the numpy cores and, when pycaffe
imports, through the Caffe layers in an inline-prototxt net.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from dsrg import crf, losses
from dsrg.cli import add_hidden_aliases, run_main, tool_name
from dsrg.cues import annotation_batch, load_cues
from dsrg.fileio import read_label_png
from dsrg.growing import grow_cues
from dsrg.growing_reference import grow_cues_reference
from dsrg.lists import read_indexed_list
from dsrg.softmax import floor_probs, plain_softmax, softmax_backward_from_plain, softmax_forward
from dsrg.voc import CRF_MEAN_BGR, PALETTE
from pylayers.netio import import_caffe, load_net

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VOC_DIR = REPO_ROOT / ".." / "shared" / "data" / "voc12"
TH1, TH2 = 0.99, 0.85


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=20, help="images per batch N (default 20)")
    parser.add_argument("--num-classes", type=int, default=21, help="classes C (default 21)")
    parser.add_argument("--size", type=int, default=41, help="score map side h = w (default 41)")
    parser.add_argument("--image-size", type=int, default=321, help="input image side (default 321)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of our layers (median reported)")
    parser.add_argument("--reference-repeats", type=int, default=3, help="timed runs of the slow references")
    parser.add_argument("--voc-dir", type=Path, default=DEFAULT_VOC_DIR,
                        help="shared VOC12 folder with the SEC cues (default ../shared/data/voc12)")
    parser.add_argument("--synthetic", action="store_true", help="use synthetic inputs even if the VOC data exists")
    parser.add_argument("--no-caffe", action="store_true", help="skip the timings through Caffe")
    parser.add_argument("--seed", type=int, default=0)
    add_hidden_aliases(parser, {"--batch": "--batch-size", "--classes": "--num-classes"})
    args = parser.parse_args(argv)
    if min(args.batch_size, args.size, args.image_size, args.repeats, args.reference_repeats) < 1 \
            or args.num_classes < 2:
        parser.error("--batch-size, --size, --image-size, --repeats and --reference-repeats must be >= 1 and "
                     "--num-classes >= 2")
    return args


# ---- inputs ---------------------------------------------------------------------------------------

def _resize_nearest(array, height, width):
    rows = np.minimum((np.arange(height) * array.shape[0]) // height, array.shape[0] - 1)
    cols = np.minimum((np.arange(width) * array.shape[1]) // width, array.shape[1] - 1)
    return array[np.ix_(rows, cols)]


def _scores_from_layout(layout, present, num_classes, size, rng):
    """Score maps that favour the layout's class, blurred and noisy, over the present classes."""
    small = _resize_nearest(layout, size, size)
    scores = rng.normal(0.0, 1.0, (num_classes, size, size))
    for label in range(num_classes):
        mask = (small == label).astype(np.float64)
        scores[label] += 5.0 * ndimage.gaussian_filter(mask, 1.5)
    scores[~present] -= 3.0
    return scores


def _image_from_layout(layout, image_size, rng):
    palette = np.array(PALETTE, dtype=np.float64).reshape(-1, 3)
    big = _resize_nearest(layout, image_size, image_size)
    rgb = palette[big] + rng.normal(0, 20, (image_size, image_size, 3))
    bgr = np.clip(rgb, 0, 255)[:, :, ::-1]
    return (bgr - np.array(CRF_MEAN_BGR)).transpose(2, 0, 1)


def voc_inputs(args, rng):
    cue_path = args.voc_dir / "localization_cues-sec.pickle.gz"
    mapping = load_cues(cue_path)
    chosen = read_indexed_list(args.voc_dir / "lists" / "input_list.txt")[:args.batch_size]
    labels, cues = annotation_batch(mapping, [index for _, index in chosen], args.num_classes, args.size,
                                    str(cue_path))
    scores = np.empty((args.batch_size, args.num_classes, args.size, args.size))
    images = np.empty((args.batch_size, 3, args.image_size, args.image_size))
    for position, (name, _) in enumerate(chosen):
        layout = read_label_png(args.voc_dir / "SegmentationClassAug" / f"{name}.png").astype(np.int64)
        layout[layout == 255] = 0
        present = labels[position, 0, 0] > 0.5
        scores[position] = _scores_from_layout(layout, present, args.num_classes, args.size, rng)
        images[position] = _image_from_layout(layout, args.image_size, rng)
    source = "real SEC cues + SegmentationClassAug layouts"
    return source, labels, cues, scores.astype(np.float32), images.astype(np.float32)


def synthetic_inputs(args, rng):
    labels = np.zeros((args.batch_size, 1, 1, args.num_classes), dtype=np.float32)
    labels[..., 0] = 1
    cues = np.zeros((args.batch_size, args.num_classes, args.size, args.size), dtype=np.float32)
    scores = np.empty(cues.shape)
    images = np.empty((args.batch_size, 3, args.image_size, args.image_size))
    yy, xx = np.mgrid[:args.size, :args.size]
    for position in range(args.batch_size):
        classes = rng.choice(np.arange(1, args.num_classes), size=rng.integers(1, 3), replace=False)
        labels[position, 0, 0, classes] = 1
        layout = np.zeros((args.size, args.size), dtype=np.int64)
        for label in classes:
            cy, cx, radius = rng.integers(8, args.size - 8, 2).tolist() + [rng.integers(5, 12)]
            blob = (yy - cy) ** 2 + (xx - cx) ** 2 < radius ** 2
            layout[blob] = label
            core = (yy - cy) ** 2 + (xx - cx) ** 2 < (radius // 3) ** 2
            cues[position, label, core] = 1
        cues[position, 0, :2] = cues[position, 0, -2:] = 1
        present = labels[position, 0, 0] > 0.5
        scores[position] = _scores_from_layout(layout, present, args.num_classes, args.size, rng)
        images[position] = _image_from_layout(layout, args.image_size, rng)
    return "synthetic blobs", labels, cues, scores.astype(np.float32), images.astype(np.float32)


# ---- timing -----------------------------------------------------------------------------------------

def median_ms(function, repeats, before=None):
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def core_timings(args, labels, cues, scores, images):
    probs = softmax_forward(scores)
    q = crf.run_crf(probs, images)
    log_q = np.log(q).astype(np.float32)
    grown = grow_cues(labels, q, cues, TH1, TH2)
    unit = np.ones(probs.shape, dtype=np.float32)
    repeats, slow = args.repeats, args.reference_repeats

    def softmax_step():
        plain = plain_softmax(scores)
        softmax_backward_from_plain(plain, unit * floor_probs(plain))

    def crf_step():
        (1.0 - crf.refine(probs, images)) * unit

    def dsrg_step():
        grow_cues(labels, crf.refine(probs, images), cues, TH1, TH2)

    def stack(refine_for_crf_layer, refine_for_dsrg_layer, grow):
        plain = plain_softmax(scores)
        p = floor_probs(plain)
        refined = refine_for_crf_layer(p, images)
        log_refined = np.log(refined).astype(np.float32)
        new_cues = grow(labels, refine_for_dsrg_layer(p, images), cues, TH1, TH2)
        losses.balanced_seed_loss_forward(p, new_cues)
        grad_p = losses.balanced_seed_loss_backward(p, new_cues)
        _, grad_constrain_p, grad_log_q = losses.constrain_loss_terms(p, log_refined)
        grad_p = grad_p + grad_constrain_p + (1.0 - refined) * grad_log_q
        softmax_backward_from_plain(plain, grad_p)

    def our_stack():
        stack(crf.refine, crf.refine, grow_cues)

    def reference_stack():
        stack(crf.run_crf, crf.run_crf, grow_cues_reference)

    fresh = crf.clear_memo
    rows = [
        ("SoftmaxLayer", median_ms(softmax_step, repeats), None),
        ("CRFLayer (CRF computed)", median_ms(crf_step, repeats, fresh), None),
        ("DSRGLayer (CRF computed)", median_ms(dsrg_step, repeats, fresh), None),
        ("DSRGLayer (CRF shared)", median_ms(dsrg_step, repeats), None),
        ("growing step", median_ms(lambda: grow_cues(labels, q, cues, TH1, TH2), 5 * repeats),
         median_ms(lambda: grow_cues_reference(labels, q, cues, TH1, TH2), slow)),
        ("SeedLossLayer", median_ms(lambda: (losses.seed_loss_forward(probs, grown),
                                             losses.seed_loss_backward(probs, grown)), repeats), None),
        ("BalancedSeedLossLayer", median_ms(lambda: (losses.balanced_seed_loss_forward(probs, grown),
                                                     losses.balanced_seed_loss_backward(probs, grown)), repeats), None),
        ("ConstrainLossLayer", median_ms(lambda: losses.constrain_loss_terms(probs, log_q), repeats), None),
        ("ExpandLossLayer", median_ms(lambda: (losses.expand_loss_forward(probs, labels),
                                               losses.expand_loss_backward(probs, labels)), repeats), None),
        ("stage-1 stack", median_ms(our_stack, repeats, fresh), median_ms(reference_stack, slow)),
    ]
    same = np.array_equal(grow_cues(labels, q, cues, TH1, TH2), grow_cues_reference(labels, q, cues, TH1, TH2))
    return rows, same, float(grown.sum() / max(cues.sum(), 1))


def caffe_timings(args, labels, cues, scores, images):
    try:
        caffe = import_caffe()
    except ImportError:
        return None
    caffe.set_mode_cpu()
    shapes = {"scores": scores.shape, "labels": labels.shape, "cues": cues.shape, "images": images.shape}

    def python_layer(name, layer, bottoms, tops, param_str=None, loss_weight=None):
        text = [f'layer {{ name: "{name}" type: "Python"']
        text += [f'bottom: "{bottom}"' for bottom in bottoms] + [f'top: "{top}"' for top in tops]
        param = f' param_str: "{param_str}"' if param_str else ""
        text.append(f"python_param {{ module: 'pylayers' layer: '{layer}'{param} }}")
        if loss_weight is not None:
            text.append(f"loss_weight: {loss_weight}")
        return " ".join(text) + " }\n"

    def inputs(names):
        return "".join(f'layer {{ name: "{n}" type: "Input" top: "{n}" input_param {{ shape {{ '
                       + " ".join(f"dim: {d}" for d in shapes[n]) + " } } }\n" for n in names)

    softmax = python_layer("softmax", "SoftmaxLayer", ["scores"], ["probs"])
    crf_layer = python_layer("crf", "CRFLayer", ["probs", "images"], ["log_q"])
    dsrg_layer = python_layer("dsrg", "DSRGLayer", ["labels", "probs", "cues", "images"], ["grown"],
                              "{'th1': 0.99, 'th2': 0.85}")
    seed_loss = python_layer("seed", "BalancedSeedLossLayer", ["probs", "grown"], ["seed_loss"], loss_weight=1)
    constrain = python_layer("constrain", "ConstrainLossLayer", ["probs", "log_q"], ["constrain_loss"], loss_weight=1)
    nets = {
        "SoftmaxLayer": inputs(["scores"]) + softmax,
        "CRFLayer (CRF computed)": inputs(["scores", "images"]) + softmax + crf_layer,
        "stage-1 stack": inputs(["scores", "labels", "cues", "images"]) + softmax + crf_layer + dsrg_layer
        + seed_loss + constrain,
    }
    values = {"scores": scores, "labels": labels, "cues": cues, "images": images}
    results = {}
    for name, body in nets.items():
        with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as handle:
            handle.write("force_backward: true\n" + body)
        try:
            net = load_net(handle.name, None, None, tool_name())
        finally:
            Path(handle.name).unlink()
        for blob, value in values.items():
            if blob in net.blobs:
                net.blobs[blob].data[...] = value

        def step():
            net.forward()
            net.backward()

        net.forward()
        results[name] = median_ms(step, args.repeats, crf.clear_memo)
    return results


def print_table(rows, caffe_rows):
    header = f"{'layer (forward + backward)':<28} {'ours ms':>9} {'caffe ms':>9} {'reference ms':>13} {'speed-up':>9}"
    print(header)
    print("-" * len(header))
    for name, ours, reference in rows:
        through_caffe = caffe_rows.get(name) if caffe_rows else None
        caffe_text = f"{through_caffe:9.1f}" if through_caffe is not None else f"{'-':>9}"
        reference_text = f"{reference:13.1f}" if reference is not None else f"{'-':>13}"
        ratio_text = f"{reference / ours:8.0f}x" if reference is not None else f"{'-':>9}"
        print(f"{name:<28} {ours:9.1f} {caffe_text} {reference_text} {ratio_text}")


def main(argv=None):
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    use_voc = not args.synthetic and (args.voc_dir / "localization_cues-sec.pickle.gz").is_file()
    source, labels, cues, scores, images = (voc_inputs if use_voc else synthetic_inputs)(args, rng)
    try:
        import krahenbuhl2013  # noqa: F401
        backend = "krahenbuhl2013.CRF_batch"
    except ImportError:
        print("krahenbuhl2013 is not installed: build it with `.venv/bin/pip install --no-build-isolation ./CRF`",
              file=sys.stderr)
        return 1
    print(f"inputs: {source}; batch {args.batch_size}×{args.num_classes}×{args.size}×{args.size}, images "
          f"{args.image_size}×{args.image_size}; CRF: {backend}; {os.cpu_count()} CPUs; "
          f"medians of {args.repeats} runs (references: {args.reference_repeats})")
    rows, same, growth = core_timings(args, labels, cues, scores, images)
    caffe_rows = None if args.no_caffe else caffe_timings(args, labels, cues, scores, images)
    print_table(rows, caffe_rows)
    growing = next(row for row in rows if row[0] == "growing step")
    print(f"growing step: vectorised equals the per-pixel reference: {same}; speed-up {growing[2] / growing[1]:.0f}x; "
          f"grown seeds / original seeds = {growth:.2f}")
    if caffe_rows is None and not args.no_caffe:
        print("(pycaffe not importable: Caffe timings skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
