"""Benchmark our dense CRF (krahenbuhl2013, CRF/) against pydensecrf2 on the same inputs.

Two cases, 10 mean-field iterations (DSRG's settings):

  (a) a batch of N x 41x41x21 score maps at scale_factor 12 (the training-time CRF, on
      probabilities): pydensecrf2 image by image, ours with CRF_batch;
  (b) one 500x375x21 map at scale_factor 1 (the test-time CRF, on log-probabilities).

Inputs are synthetic (krahenbuhl2013.testing): "natural" = smooth textured image with
objects and a peaked unary that follows them; "random" = uniform noise image and unary (the
worst case for the lattice). Every timing is the best of --repeats runs, the runs of the
implementations interleaved; throughput ratio = pydensecrf2 time / our time. The agreement
columns compare the two outputs (mean |dQ|, argmax agreement).
"""
import argparse
import os
import sys
import time

import numpy as np
from tqdm import tqdm

import krahenbuhl2013
from krahenbuhl2013.testing import natural_scene, probabilities, random_scene, reference_crf
from dsrg.cli import add_hidden_aliases, run_main


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per implementation (best is kept)")
    parser.add_argument("--threads", type=int, default=2, help="threads for our implementation (default 2)")
    parser.add_argument("--batch-size", type=int, default=20, help="images in case (a) (default 20)")
    parser.add_argument("--iterations", type=int, default=10, help="mean-field iterations (default 10)")
    parser.add_argument("--inputs", choices=["natural", "random", "both"], default="both",
                        help="which synthetic inputs to time (default both)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic inputs")
    parser.add_argument("--out", help="also write the results to this JSON file (atomically)")
    add_hidden_aliases(parser, {"--batch": "--batch-size", "--json": "--out"})
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.threads < 1 or args.batch_size < 1 or args.iterations < 0:
        parser.error("--repeats, --threads and --batch-size must be >= 1 and --iterations >= 0")
    return args


def make_case(name, kind, rng, batch):
    """(label, images N x H x W x 3, unaries N x H x W x C, scale_factor) of case (a) or (b)."""
    height, width, scale, count = (41, 41, 12.0, batch) if name == "a" else (375, 500, 1.0, 1)
    images, unaries = [], []
    for _ in range(count):
        if kind == "random":
            image, unary = random_scene(height, width, 21, rng)
        else:
            image, scores, _ = natural_scene(height, width, 21, rng)
            unary = probabilities(scores) if name == "a" else np.log(probabilities(scores))
        images.append(image)
        unaries.append(unary)
    label = (f"({name}) batch {count} x {height}x{width}x21, scale {scale:g}" if name == "a"
             else f"({name}) 1 x {width}x{height}x21, scale {scale:g}")
    return f"{label}, {kind}", np.stack(images), np.stack(unaries), scale


def run_case(label, images, unaries, scale, args, progress):
    def reference():
        return np.stack([reference_crf(image, unary, args.iterations, scale) for image, unary in zip(images, unaries)])

    def ours(threads):
        return lambda: krahenbuhl2013.CRF_batch(images, unaries, args.iterations, scale, num_threads=threads)

    timings = {"pydensecrf2": float("inf"), "ours_1_thread": float("inf"), "ours_threads": float("inf")}
    outputs = {}
    for _ in range(args.repeats):  # interleaved, so that load changes hit every implementation
        for key, function in (("pydensecrf2", reference), ("ours_1_thread", ours(1)),
                              ("ours_threads", ours(args.threads))):
            start = time.perf_counter()
            outputs[key] = function()
            timings[key] = min(timings[key], time.perf_counter() - start)
            progress.update()
    reference_q, our_q = outputs["pydensecrf2"], outputs["ours_threads"]
    return {
        "case": label,
        **timings,
        "speedup_threads": timings["pydensecrf2"] / timings["ours_threads"],
        "speedup_1_thread": timings["pydensecrf2"] / timings["ours_1_thread"],
        "mean_abs_dq": float(np.abs(reference_q - our_q).mean()),
        "argmax_agreement": float((reference_q.argmax(-1) == our_q.argmax(-1)).mean()),
    }


def format_table(rows, threads):
    header = ("case", "pydensecrf2 [s]", "ours 1 thr [s]", f"ours {threads} thr [s]", "ratio 1 thr",
              f"ratio {threads} thr", "mean |dQ|", "argmax agree")
    lines = [header] + [(row["case"], f"{row['pydensecrf2']:.3f}", f"{row['ours_1_thread']:.3f}",
                         f"{row['ours_threads']:.3f}", f"{row['speedup_1_thread']:.2f}x",
                         f"{row['speedup_threads']:.2f}x", f"{row['mean_abs_dq']:.1e}",
                         f"{100 * row['argmax_agreement']:.3f}%") for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    rule = "-+-".join("-" * width for width in widths)
    text = [" | ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                       for i, (cell, width) in enumerate(zip(line, widths))) for line in lines]
    return "\n".join([text[0], rule] + text[1:])


def main(argv=None):
    args = parse_args(argv)
    kinds = ["natural", "random"] if args.inputs == "both" else [args.inputs]
    rng = np.random.default_rng(args.seed)
    cases = [make_case(name, kind, rng, args.batch_size) for kind in kinds for name in ("a", "b")]
    rows = []
    with tqdm(total=len(cases) * 3 * args.repeats, desc="timing", file=sys.stderr) as progress:
        for label, images, unaries, scale in cases:
            rows.append(run_case(label, images, unaries, scale, args, progress))
    print(f"dense CRF, {args.iterations} iterations, best of {args.repeats}, os.cpu_count() = {os.cpu_count()}, "
          f"AVX2 kernels: {'yes' if krahenbuhl2013._native.cpu_has_avx2() else 'no'}")
    print(format_table(rows, args.threads))
    if args.out:
        from dsrg.fileio import atomic_write_json

        atomic_write_json(args.out, {"iterations": args.iterations, "repeats": args.repeats,
                                           "threads": args.threads, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
