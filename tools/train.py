#!/usr/bin/env python
"""Train a Caffe network through its solver: logging, loss curve, NaN guard, snapshots, resume.

The solver prototxt is read, its net path resolved relative to the solver file, its snapshot
prefix pointed into OUT/snapshots/, and the result written to OUT/solver.prototxt, which is what
Caffe then runs. Every iteration is one `solver.step(1)`; every output of the net is checked to be
finite (a NaN or infinite loss stops the run with an error naming the iteration and output, and
no snapshot taken after it is kept). Every --log-every iterations the outputs, averaged over the
window, are appended to OUT/train_log.tsv and OUT/loss_curve.png is redrawn.

A rerun with the same OUT resumes from the latest snapshot in OUT/snapshots/ (or from --snapshot);
a finished run (OUT/train_done.json for the same number of iterations) is skipped. The trained
weights end in OUT/final.caffemodel.

Example:
  python tools/train.py --solver runs/demo/prototxt/stage1_solver.prototxt \\
      --out runs/demo/stage1 --iters 600 --log-every 20
"""
import argparse
import io
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

from dsrg.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text

LOG_NAME = "train_log.tsv"
CURVE_NAME = "loss_curve.png"
DONE_NAME = "train_done.json"
FINAL_WEIGHTS = "final.caffemodel"


class TrainingDiverged(RuntimeError):
    """A net output became NaN or infinite."""


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--solver", required=True, help="solver prototxt (its net path may be relative to it)")
    parser.add_argument("--out", required=True, help="output folder: solver copy, snapshots, log, curve, final weights")
    parser.add_argument("--weights", help="initial weights (.caffemodel; several separated by commas), "
                                          "ignored when resuming from a snapshot")
    parser.add_argument("--snapshot", help="resume from this .solverstate (default: the latest one in OUT/snapshots)")
    parser.add_argument("--iters", type=int, help="total number of iterations (overrides the solver's max_iter)")
    parser.add_argument("--snapshot-every", type=int,
                        help="snapshot period in iterations (default: the solver's `snapshot`, else max_iter/4)")
    parser.add_argument("--keep-snapshots", type=int, default=2, help="snapshots kept on disk (default 2)")
    parser.add_argument("--log-every", type=int, default=20, help="logging period in iterations (default 20)")
    parser.add_argument("--name", help="snapshot file prefix (default: the solver file name without .prototxt)")
    parser.add_argument("--gpu", type=int, help="GPU id; CPU when not given")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    args = parser.parse_args(argv)
    if args.iters is not None and args.iters < 1:
        parser.error(f"--iters must be positive, got {args.iters}")
    if args.log_every < 1:
        parser.error(f"--log-every must be positive, got {args.log_every}")
    if args.keep_snapshots < 1:
        parser.error(f"--keep-snapshots must be at least 1, got {args.keep_snapshots}")
    return args


def import_caffe():
    os.environ.setdefault("GLOG_minloglevel", "1")
    import caffe
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    return caffe, caffe_pb2, text_format


def snapshot_files(prefix):
    """{iteration: (solverstate path, caffemodel path)} for the complete snapshots of `prefix`."""
    prefix = Path(prefix)
    pattern = re.compile(re.escape(prefix.name) + r"_iter_(\d+)\.solverstate$")
    found = {}
    if prefix.parent.is_dir():
        for path in prefix.parent.iterdir():
            match = pattern.match(path.name)
            if not match:
                continue
            weights = path.with_suffix(".caffemodel")
            if path.stat().st_size > 0 and weights.is_file() and weights.stat().st_size > 0:
                found[int(match.group(1))] = (path, weights)
    return found


def remove_snapshot(state_path, weights_path):
    for path in (state_path, weights_path):
        if Path(path).exists():
            Path(path).unlink()


def prepare_solver(args, caffe_pb2, text_format, out):
    """Read the solver, point it into OUT, and write OUT/solver.prototxt. Returns (param, prefix)."""
    solver_path = Path(args.solver).resolve()
    if not solver_path.is_file():
        raise FileNotFoundError(f"train.py: solver file not found: {solver_path}")
    param = caffe_pb2.SolverParameter()
    text_format.Merge(solver_path.read_text(), param)
    field = "net" if param.HasField("net") else "train_net" if param.HasField("train_net") else None
    if field is None:
        raise ValueError(f"{solver_path}: the solver names no `net` or `train_net`")
    net_path = Path(getattr(param, field))
    if not net_path.is_absolute():
        net_path = (solver_path.parent / net_path).resolve()
    if not net_path.is_file():
        raise FileNotFoundError(f"{solver_path}: its {field} {net_path} does not exist")
    setattr(param, field, str(net_path))
    for index, test_net in enumerate(param.test_net):
        if not Path(test_net).is_absolute():
            param.test_net[index] = str((solver_path.parent / test_net).resolve())
    if args.iters is not None:
        param.max_iter = args.iters
    if param.max_iter < 1:
        raise ValueError(f"{solver_path}: max_iter must be positive, got {param.max_iter}")
    if args.snapshot_every is not None:
        param.snapshot = args.snapshot_every
    elif param.snapshot <= 0:
        param.snapshot = max(1, param.max_iter // 4)
    name = args.name or solver_path.name.removesuffix(".prototxt")
    prefix = out / "snapshots" / name
    prefix.parent.mkdir(parents=True, exist_ok=True)
    param.snapshot_prefix = str(prefix)
    param.snapshot_after_train = False
    param.display = 0
    param.solver_mode = caffe_pb2.SolverParameter.GPU if args.gpu is not None else caffe_pb2.SolverParameter.CPU
    if args.gpu is not None:
        param.device_id = args.gpu
    atomic_write_text(out / "solver.prototxt", text_format.MessageToString(param))
    return param, prefix


def read_log(path, last_iteration):
    """Rows of an existing log up to `last_iteration` (the part a resumed run keeps)."""
    if not path.is_file():
        return None, []
    lines = path.read_text().splitlines()
    if not lines:
        return None, []
    header = lines[0].split("\t")
    rows = []
    for line in lines[1:]:
        values = line.split("\t")
        if len(values) == len(header) and int(values[0]) <= last_iteration:
            rows.append([int(values[0])] + [float(v) for v in values[1:]])
    return header, rows


def write_log(path, header, rows):
    lines = ["\t".join(header)] + ["\t".join([str(row[0])] + [f"{v:.6g}" for v in row[1:]]) for row in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")


def plot_curve(path, header, rows, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    if rows:
        data = np.asarray(rows, dtype=np.float64)
        for column, name in enumerate(header[1:], start=1):
            axes.plot(data[:, 0], data[:, column], label=name)
        axes.legend(fontsize=8)
    axes.set_xlabel("iteration")
    axes.set_ylabel("value (window mean)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def net_outputs(net):
    """{name: value} of every output blob; a blob of several values gives name[0], name[1], …"""
    values = {}
    for name in net.outputs:
        data = np.asarray(net.blobs[name].data, dtype=np.float64).ravel()
        if data.size == 1:
            values[name] = float(data[0])
        else:
            for index, value in enumerate(data):
                values[f"{name}[{index}]"] = float(value)
    return values


def save_weights_atomically(net, path):
    tmp = path.with_name(f".{path.name}.tmp")
    net.save(str(tmp))
    os.replace(tmp, path)


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    caffe, caffe_pb2, text_format = import_caffe()
    param, prefix = prepare_solver(args, caffe_pb2, text_format, out)
    max_iter = param.max_iter

    done_path = out / DONE_NAME
    if done_path.is_file() and (out / FINAL_WEIGHTS).is_file():
        import json
        done = json.loads(done_path.read_text())
        if done.get("iterations") == max_iter:
            print(f"train.py: {out} already holds a finished {max_iter}-iteration run; skipping")
            return 0

    if args.gpu is not None:
        caffe.set_device(args.gpu)
        caffe.set_mode_gpu()
    else:
        caffe.set_mode_cpu()
    solver = caffe.get_solver(str(out / "solver.prototxt"))

    resume = Path(args.snapshot) if args.snapshot else None
    if resume is None:
        snapshots = snapshot_files(prefix)
        if snapshots:
            resume = snapshots[max(snapshots)][0]
    if resume is not None:
        if not resume.is_file():
            raise FileNotFoundError(f"train.py: snapshot to resume from not found: {resume}")
        solver.restore(str(resume))
        print(f"train.py: resumed from {resume} at iteration {solver.iter}")
    elif args.weights:
        for weights in args.weights.split(","):
            if not Path(weights).is_file():
                raise FileNotFoundError(f"train.py: initial weights not found: {weights}")
            solver.net.copy_from(weights)
        print(f"train.py: initialised from {args.weights}")

    log_path = out / LOG_NAME
    header, rows = read_log(log_path, solver.iter)
    window = {}
    start_iter, start_time = solver.iter, time.time()
    progress = None
    if not args.no_progress:
        from tqdm import tqdm
        progress = tqdm(total=max_iter, initial=solver.iter, desc=f"train {prefix.name}", unit="it",
                        dynamic_ncols=True)
    try:
        while solver.iter < max_iter:
            iteration = solver.iter
            solver.step(1)
            values = net_outputs(solver.net)
            bad = {name: value for name, value in values.items() if not np.isfinite(value)}
            if bad:
                for later_iter, files in snapshot_files(prefix).items():
                    if later_iter > iteration:
                        remove_snapshot(*files)
                if header is not None:
                    write_log(log_path, header, rows)
                    plot_curve(out / CURVE_NAME, header, rows, prefix.name)
                described = ", ".join(f"'{name}' = {value}" for name, value in sorted(bad.items()))
                raise TrainingDiverged(
                    f"train.py: training diverged at iteration {iteration} (solver {args.solver}): "
                    f"non-finite net output {described}")
            for name, value in values.items():
                window.setdefault(name, []).append(value)
            if progress is not None:
                progress.update(1)
            done_iters = solver.iter
            if done_iters % param.snapshot == 0:
                snapshots = snapshot_files(prefix)
                for old_iter in sorted(snapshots)[:-args.keep_snapshots]:
                    remove_snapshot(*snapshots[old_iter])
            if done_iters % args.log_every == 0 or done_iters == max_iter:
                names = sorted(window)
                if header is None or header[1:] != names:
                    header, rows = ["iteration"] + names, []
                rows.append([done_iters] + [float(np.mean(window[name])) for name in names])
                window = {}
                write_log(log_path, header, rows)
                plot_curve(out / CURVE_NAME, header, rows, prefix.name)
                summary = "  ".join(f"{name} {value:.4g}" for name, value in zip(names, rows[-1][1:]))
                message = f"iter {done_iters}/{max_iter}  {summary}"
                if progress is not None:
                    progress.write(message)
                else:
                    print(message, flush=True)
    except KeyboardInterrupt:
        if solver.iter > start_iter:
            solver.snapshot()
        print(f"\ntrain.py: interrupted at iteration {solver.iter}; a rerun resumes from the last snapshot",
              file=sys.stderr)
        raise
    finally:
        if progress is not None:
            progress.close()

    if max_iter not in snapshot_files(prefix):
        solver.snapshot()
    snapshots = snapshot_files(prefix)
    for old_iter in sorted(snapshots)[:-args.keep_snapshots]:
        remove_snapshot(*snapshots[old_iter])
    save_weights_atomically(solver.net, out / FINAL_WEIGHTS)
    elapsed = time.time() - start_time
    final = dict(zip(header[1:], rows[-1][1:])) if rows else {}
    atomic_write_json(done_path, {
        "iterations": max_iter, "solver": str(Path(args.solver).resolve()), "weights": args.weights,
        "resumed_from": str(resume) if resume else None, "seconds_this_run": round(elapsed, 1),
        "seconds_per_iteration": round(elapsed / max(1, max_iter - start_iter), 4), "final_outputs": final,
    })
    print(f"train.py: {max_iter} iterations done in {elapsed:.0f} s this run; weights {out / FINAL_WEIGHTS}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except TrainingDiverged as error:
        print(error, file=sys.stderr)
        sys.exit(3)
