#!/usr/bin/env python
"""Train a Caffe network through its solver: logging, loss curve, divergence guards, snapshots, resume.

The solver prototxt is read, its net path resolved relative to the solver file, its snapshot
prefix pointed into OUT/snapshots/, and the result written to OUT/solver.prototxt, which is what
Caffe then runs. Every iteration is one `solver.step(1)`. Every --log-every iterations the outputs,
averaged over the window, are appended to OUT/train_log.tsv and OUT/loss_curve.png is redrawn
(a net with a DSRG layer adds the grown seeds' background and foreground density, and with --seed-gt
their precision, drawn in OUT/seed_growth.png); the same figures go to OUT/caffe.log in the lines of Caffe's own solver log, which Caffe's
tools/extra/parse_log.py reads.

Guards (each stops the run with a message naming the iteration(s), the output and its value; the
snapshots whose weights already gave the bad value are removed, earlier ones kept, so a rerun, e.g.
with a lower base_lr, resumes from the last good one):

- non-finite: any output of the net NaN or infinite;
- stuck (--stuck-iters N, default 20, 0 = off): a loss output (an output whose name contains
  "loss", any case) that for N consecutive iterations either stays within --stuck-tolerance
  (default 0.05) of -log(p_min) or 2·(-log(p_min)), p_min = dsrg.softmax.MIN_PROB = 1e-4 (9.2103:
  the cross-entropy of a class given only the probability floor, once for a seed loss and twice for
  the balanced seed loss, whose background and foreground terms both reach it), or stays
  bit-identical. Either means the updates no longer move the net: typically a learning rate too
  high for the new layers (seen: base_lr 1e-3 with lr_mult 10 on fc6/fc7 gave a seed loss of 9.21
  within 20 iterations). While a loss output is on such a run, snapshot rotation
  (--keep-snapshots) keeps the snapshots taken before the run began.

A layer that raises during set-up or an iteration (Caffe's ImageData over an image that does not
decode, the stage-2 data layer over a bad image or label map: the message names the file) stops the
run with that message; the progress since the last snapshot is saved in a snapshot first.

SIGTERM or SIGINT (Ctrl-C) stops the run after the current iteration with a snapshot at that
iteration, named on stderr; the exit status is 128 + the signal number (143, 130).

Several GPUs (--gpus 0,1): one solver process per GPU (multiprocessing, 'spawn'), joined by NCCL as in
BVLC Caffe's python/train.py (Caffe refuses Python layers in `caffe train -gpu 0,1`); it needs a Caffe
built with NCCL (CAFFE_GPU=1 bash caffe/build.sh). Every process runs the prototxt's batch, so the
effective batch is (number of GPUs) × batch_size × iter_size; gradients are averaged over the processes.
Rank 0 (the first id) resumes or loads --weights, which NCCL broadcasts, and alone writes: the log, the
curves (of its own batches), snapshots, the final weights, train_done.json; the guards and signals act on
it. The other ranks restore the snapshot rank 0 resumed from (the iteration and the solver's history)
and only step. A layer 'seed' in param_str becomes seed + rank (dsrg.params.rank_seed) and Caffe seeds
its own RNG (ImageData's shuffle, mirroring, dropout) with random_seed + rank, so the ranks draw
distinct but reproducible batches. The parent process passes SIGTERM / SIGINT on to rank 0 and returns
its exit status; a rank > 0 that fails stops the run with its status. --gpus with one id runs this path
with one process. See docs/multi-gpu.md.

Exit status: 0 done (or already done), 3 diverged (non-finite or stuck), 4 a layer raised (above),
143 / 130 stopped by a signal (above), 1 a clear error (weights that do not fit the net, a snapshot
that cannot be written or resumed, --gpus with a Caffe built without NCCL) or anything else (with a
traceback), 2 a usage error.

A rerun with the same OUT resumes from the latest usable snapshot in OUT/snapshots/ (or from
--snapshot); a finished run (OUT/train_done.json for the same number of iterations) is skipped. The
trained weights end in OUT/final.caffemodel. Snapshots are written atomically and checked before a
resume; one that does not verify is set aside and the one before it used (pylayers.snapshots).

Example:
  python tools/train.py --solver runs/demo/prototxt/stage1_solver.prototxt \\
      --out runs/demo/stage1 --iters 600 --log-every 20
"""
import argparse
import ctypes
import dataclasses
import datetime
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

from dsrg.cli import tool_name
from dsrg.evaluation import nanmean
from dsrg.fileio import atomic_write_json, atomic_write_text
from dsrg.plots import plot_loss_curve, plot_seed_growth, seed_columns
from dsrg.progress import progress as show_progress
from dsrg.softmax import MIN_PROB
from pylayers.netio import WARNINGS, check_layer_modules, import_caffe, load_weights, use_caffe
from pylayers.seedgrowth import SeedGrowthReader
from pylayers.snapshots import (SnapshotError, clear_staging, remove_snapshots_from, restore, resume_latest,
                                 rotate_snapshots, snapshot_files, snapshot_problem, staging_prefix, take_snapshot)

LOG_NAME = "train_log.tsv"
CAFFE_LOG_NAME = "caffe.log"
CURVE_NAME = "loss_curve.png"
SEED_GROWTH_NAME = "seed_growth.png"
DONE_NAME = "train_done.json"
FINAL_WEIGHTS = "final.caffemodel"
# The loss of a class given only the probability floor: a seed loss stuck at it has diverged.
FLOOR_LOSS = -math.log(MIN_PROB)
FLOOR_LOSS_MULTIPLES = (1, 2)
EXIT_DIVERGED = 3
# Net outputs with more values than this are not logged (see net_outputs); SegAccuracy gives 3.
MAX_FIGURE_VALUES = 16
EXIT_LAYER_ERROR = 4


class TrainingDiverged(RuntimeError):
    """A net output became NaN or infinite, or a loss output got stuck (see the module doc)."""


class LayerError(RuntimeError):
    """A layer raised during the net's set-up or an iteration, e.g. over an image that does not decode."""


class NcclMissing(RuntimeError):
    """--gpus with a Caffe built without NCCL (or whose caffe.NCCL cannot start a session)."""


# Linux's prctl option that sends a process a signal when its parent dies.
PR_SET_PDEATHSIG = 1


class StuckLossGuard:
    """Finds loss outputs stuck at the floor loss or bit-identical for `window` consecutive iterations.

    Per loss output it keeps two runs: iterations in a row within `tolerance` of k·FLOOR_LOSS
    (k in FLOOR_LOSS_MULTIPLES), and iterations in a row with exactly the same value.
    """

    def __init__(self, window, tolerance):
        self.window, self.tolerance = window, tolerance
        self.floor_runs = {}   # name: (first iteration, length)
        self.equal_runs = {}   # name: (first iteration, length, value)

    @staticmethod
    def is_loss(name):
        return "loss" in name.lower()

    def at_floor(self, value):
        """The multiple k of FLOOR_LOSS that `value` is within the tolerance of, else None."""
        for multiple in FLOOR_LOSS_MULTIPLES:
            if abs(value - multiple * FLOOR_LOSS) <= self.tolerance:
                return multiple
        return None

    def observe(self, iteration, values):
        """Record the outputs of `iteration`; returns (message, first iteration of its run) for a loss
        output stuck for `window` iterations, else None."""
        if self.window <= 0:
            return None
        for name, value in values.items():
            if not self.is_loss(name):
                continue
            first, length = self.floor_runs.get(name, (iteration, 0))
            self.floor_runs[name] = (first, length + 1) if self.at_floor(value) else (iteration + 1, 0)
            first, length, previous = self.equal_runs.get(name, (iteration, 0, None))
            self.equal_runs[name] = (first, length + 1, value) if value == previous else (iteration, 1, value)
        for name in sorted(self.floor_runs):
            first, length = self.floor_runs[name]
            if length >= self.window:
                multiple = self.at_floor(values[name])
                times = "" if multiple == 1 else f"{multiple}·"
                return (f"loss output '{name}' stayed within {self.tolerance:g} of {times}-log({MIN_PROB:g}) = "
                        f"{multiple * FLOOR_LOSS:.4f} for {length} iterations ({first}..{iteration}; last value "
                        f"{values[name]:.6g}), the loss of classes given only the probability floor {MIN_PROB:g} "
                        f"(dsrg.softmax.MIN_PROB): the net has diverged", first)
        for name in sorted(self.equal_runs):
            first, length, value = self.equal_runs[name]
            if length >= self.window:
                return (f"loss output '{name}' stayed bit-identical at {value!r} for {length} iterations "
                        f"({first}..{iteration}): the updates no longer change it (a diverged or saturated net, "
                        f"or a zero learning rate)", first)
        return None

    def suspect_since(self):
        """The first iteration of the earliest run still going on (None when there is none)."""
        starts = [first for first, length in self.floor_runs.values() if length >= 1]
        starts += [first for first, length, _ in self.equal_runs.values() if length >= 2]
        return min(starts) if starts else None


def gpu_ids(text):
    """--gpus: comma-separated distinct non-negative GPU ids ("0,1") as a tuple of ints."""
    try:
        ids = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated GPU ids such as 0,1, got {text!r}") from None
    if any(gpu < 0 for gpu in ids):
        raise argparse.ArgumentTypeError(f"GPU ids must be non-negative, got {text!r}")
    repeated = sorted({gpu for gpu in ids if ids.count(gpu) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(f"GPU ids must be distinct, got {text!r} "
                                         f"({', '.join(map(str, repeated))} more than once)")
    return ids


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
    devices = parser.add_mutually_exclusive_group()
    devices.add_argument("--gpu", type=int, help="GPU id; CPU when not given")
    devices.add_argument("--gpus", type=gpu_ids, metavar="IDS",
                         help="comma-separated GPU ids (0,1): one solver process per GPU joined by NCCL; the "
                              "effective batch is their number times the prototxt's (see above)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (on a terminal) or progress lines (otherwise)")
    parser.add_argument("--stuck-iters", type=int, default=20,
                        help="stop when a loss output stays at the floor loss or bit-identical for this many "
                             "consecutive iterations (default 20; 0 = off; see above)")
    parser.add_argument("--stuck-tolerance", type=float, default=0.05,
                        help=f"distance from -log({MIN_PROB:g}) = {FLOOR_LOSS:.4f} (or twice it) that counts as "
                             "at the floor (default 0.05)")
    parser.add_argument("--seed-gt", help="ground-truth folder (<id>.png): log the grown seeds' precision beside "
                                          "their density (with --seed-input-list; training never sees it)")
    parser.add_argument("--seed-input-list", help="the net's ImageData input list ('<id>.jpg <index>'), which maps "
                                                  "a batch's image indices to ids (with --seed-gt)")
    args = parser.parse_args(argv)
    if (args.seed_gt is None) != (args.seed_input_list is None):
        parser.error("--seed-gt and --seed-input-list go together")
    if args.stuck_iters < 0:
        parser.error(f"--stuck-iters must be non-negative (0 = off), got {args.stuck_iters}")
    if not args.stuck_tolerance >= 0:
        parser.error(f"--stuck-tolerance must be non-negative, got {args.stuck_tolerance}")
    if args.iters is not None and args.iters < 1:
        parser.error(f"--iters must be positive, got {args.iters}")
    if args.log_every < 1:
        parser.error(f"--log-every must be positive, got {args.log_every}")
    if args.keep_snapshots < 1:
        parser.error(f"--keep-snapshots must be at least 1, got {args.keep_snapshots}")
    return args


def prepare_solver(args, caffe_pb2, text_format, out):
    """Read the solver, point it into OUT, and write OUT/solver.prototxt. Returns (param, prefix,
    snapshot period): Caffe's own snapshots are off (train.py takes them, see pylayers.snapshots)
    and point into the staging folder."""
    solver_path = Path(args.solver).resolve()
    if not solver_path.is_file():
        raise FileNotFoundError(f"{tool_name()}: solver file not found: {solver_path}")
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
        period = args.snapshot_every
    else:
        period = param.snapshot if param.snapshot > 0 else max(1, param.max_iter // 4)
    param.snapshot = 0
    name = args.name or solver_path.name.removesuffix(".prototxt")
    prefix = out / "snapshots" / name
    prefix.parent.mkdir(parents=True, exist_ok=True)
    param.snapshot_prefix = str(staging_prefix(prefix))
    param.snapshot_after_train = False
    param.display = 0
    gpu = args.gpu if args.gpus is None else args.gpus[0]
    param.solver_mode = caffe_pb2.SolverParameter.GPU if gpu is not None else caffe_pb2.SolverParameter.CPU
    if gpu is not None:
        param.device_id = gpu
    atomic_write_text(out / "solver.prototxt", text_format.MessageToString(param))
    return param, prefix, period


def solver_type_name(param, caffe_pb2):
    """The solver's type as Caffe names it ("SGD", "Adam", ...), from `type` or the V1 enum `solver_type`."""
    if param.HasField("type") or not param.HasField("solver_type"):
        return param.type
    legacy = caffe_pb2.SolverParameter.SolverType.Name(param.solver_type)
    return {"NESTEROV": "Nesterov", "ADAGRAD": "AdaGrad", "RMSPROP": "RMSProp", "ADADELTA": "AdaDelta",
            "ADAM": "Adam"}.get(legacy, "SGD")


class Stopped(Exception):
    """SIGTERM or SIGINT arrived: the run stopped after a snapshot. `signum` gives the exit status 128 + signum."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.signum = signum


class StopSignals:
    """Within `with`, SIGTERM and SIGINT set `received` (the signal number) instead of stopping the
    process mid-iteration; the training loop checks it after each iteration."""

    def __init__(self):
        self.received = None
        self.previous = {}

    def __enter__(self):
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.previous[signum] = signal.signal(signum, self.handle)
        return self

    def handle(self, signum, frame):
        self.received = signum

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


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
    """The loss curve at `path` and, when the log has seed-growth columns, OUT/seed_growth.png beside it."""
    plot_loss_curve(path, header, rows, title)
    if seed_columns(header):
        plot_seed_growth(path.with_name(SEED_GROWTH_NAME), header, rows, f"{title}: seed growth")


def net_outputs(net):
    """{name: value} of the output blobs that are training figures; a blob of several values gives
    name[0], name[1], … An output of more than MAX_FIGURE_VALUES values is a blob that no layer
    consumes (e.g. the image labels of a stage-1 net without its DSRG layer), not a figure, and is
    left out of the log and the guards."""
    values = {}
    for name in net.outputs:
        data = np.asarray(net.blobs[name].data, dtype=np.float64).ravel()
        if data.size > MAX_FIGURE_VALUES:
            continue
        if data.size == 1:
            values[name] = float(data[0])
        else:
            for index, value in enumerate(data):
                values[f"{name}[{index}]"] = float(value)
    return values


class CaffeFormatLog:
    """OUT/caffe.log: the training figures in the lines Caffe's own solver logs, so that Caffe's
    tools/extra/parse_log.py (and plot_training_log.py) read it: a `Solving` line when a run (or a
    resumed run) starts, then per logging window `Iteration N, loss = …`, `Iteration N, lr = …` and
    one `Train net output #k: name = value` per output (the window means of train_log.tsv)."""

    def __init__(self, path):
        self.path = path

    def _write(self, source, text):
        now = datetime.datetime.now()
        with open(self.path, "a") as handle:
            handle.write(f"I{now:%m%d %H:%M:%S.%f} {os.getpid():5d} {source}] {text}\n")

    def start(self, name, iteration):
        self._write("solver.cpp:288", f"Solving {name}")
        self._write("solver.cpp:289", f"Learning Rate Policy: resumed at iteration {iteration}"
                    if iteration else "Learning Rate Policy: from the solver file")

    def window(self, iteration, names, values, lr):
        losses = [value for name, value in zip(names, values) if "loss" in name.lower()]
        self._write("solver.cpp:218", f"Iteration {iteration}, loss = {sum(losses):.6g}")
        self._write("sgd_solver.cpp:105", f"Iteration {iteration}, lr = {lr:.6g}")
        for index, (name, value) in enumerate(zip(names, values)):
            self._write("solver.cpp:237", f"    Train net output #{index}: {name} = {value:.6g}")


class TrainingLog:
    """The figures of a run: the net outputs of each iteration gathered into a window, and every
    --log-every iterations the window means appended to OUT/train_log.tsv (redrawn as
    OUT/loss_curve.png) and OUT/caffe.log (:class:`CaffeFormatLog`). A resumed run keeps the rows of
    the existing log up to the iteration it resumes from."""

    def __init__(self, out, title, start_iteration):
        self.path, self.curve_path, self.title = out / LOG_NAME, out / CURVE_NAME, title
        self.header, self.rows = read_log(self.path, start_iteration)
        self.window = {}
        self.caffe_log = CaffeFormatLog(out / CAFFE_LOG_NAME)
        self.caffe_log.start(title, start_iteration)

    def add(self, values):
        """Gather one iteration's outputs ({name: value}) into the window."""
        for name, value in values.items():
            self.window.setdefault(name, []).append(value)

    def close_window(self, iteration, lr):
        """Append the window means as the row of `iteration` (a new header, and no earlier rows, when the
        outputs changed), write them to both logs and the curve, start a new window; returns the
        means as one line of text ("name value  name value")."""
        names = sorted(self.window)
        if self.header is None or self.header[1:] != names:
            self.header, self.rows = ["iteration"] + names, []
        self.rows.append([iteration] + [nanmean(self.window[name]) for name in names])
        self.window = {}
        self.caffe_log.window(iteration, names, self.rows[-1][1:], lr)
        self.save()
        return "  ".join(f"{name} {value:.4g}" for name, value in zip(names, self.rows[-1][1:]))

    def write_table(self):
        """Write OUT/train_log.tsv as it stands (nothing before the first row)."""
        if self.header is not None:
            write_log(self.path, self.header, self.rows)

    def save(self):
        """Write OUT/train_log.tsv and redraw OUT/loss_curve.png as they stand (nothing before the first row)."""
        if self.header is not None:
            write_log(self.path, self.header, self.rows)
            plot_curve(self.curve_path, self.header, self.rows, self.title)

    def final_outputs(self):
        """{name: value} of the last row (None for a figure no batch of the window defined), {} before the first."""
        if not self.rows:
            return {}
        return {name: None if math.isnan(value) else value for name, value in zip(self.header[1:], self.rows[-1][1:])}


@dataclasses.dataclass
class TrainingRun:
    """One run of a solver: the tool's arguments, OUT, the snapshot prefix (OUT/snapshots/<name>), the
    solver type, the last iteration, the snapshot period, and where and when this run began."""

    args: argparse.Namespace
    out: Path
    prefix: Path
    solver_type: str
    max_iter: int
    period: int
    start_iter: int
    start_time: float = dataclasses.field(default_factory=time.time)


def save_weights_atomically(net, path):
    """Save the net's weights to `path` through a temporary file renamed into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    net.save(str(tmp))
    os.replace(tmp, path)


def already_done(out, max_iter):
    """Whether OUT holds a finished run of `max_iter` iterations (OUT/train_done.json saying so and
    OUT/final.caffemodel)."""
    done_path = out / DONE_NAME
    if not (done_path.is_file() and (out / FINAL_WEIGHTS).is_file()):
        return False
    return json.loads(done_path.read_text()).get("iterations") == max_iter


def open_solver(param, args, out, rank=None):
    """Caffe's solver for OUT/solver.prototxt on the chosen device (with `rank`, a :class:`Rank` of a
    --gpus run: on its GPU, as one of its solver group), once every net it names passed
    :func:`check_layer_modules`; a net whose set-up raises (a layer over a bad file, say) is a
    LayerError naming the solver."""
    for net_field in ("net", "train_net"):
        if param.HasField(net_field):
            check_layer_modules(getattr(param, net_field))
    for test_net in param.test_net:
        check_layer_modules(test_net)
    caffe = use_caffe(args.gpu if rank is None else rank.device)
    if rank is not None:
        rank.join(caffe)
    try:
        return caffe.get_solver(str(out / "solver.prototxt"))
    except (RuntimeError, OSError, ValueError) as error:
        raise LayerError(f"{tool_name()}: cannot set up the net of {args.solver}: {error}") from error


def resume_or_initialise(solver, args, prefix, solver_type):
    """Resume from --snapshot (verified), else from the newest usable snapshot, else load --weights.
    Returns the .solverstate resumed from, or None."""
    for name in clear_staging(prefix):
        print(f"{tool_name()}: removed {name}, left in {staging_prefix(prefix).parent} by an interrupted snapshot")
    if args.snapshot:
        resume = Path(args.snapshot)
        if not resume.is_file():
            raise FileNotFoundError(f"{tool_name()}: snapshot to resume from not found: {resume}")
        problem = snapshot_problem(resume, resume.with_suffix(".caffemodel"), solver.net, solver_type)
        if problem is not None:
            raise SnapshotError(f"{tool_name()}: cannot resume: {problem}")
        restore(solver, resume)
    else:
        resume = resume_latest(solver, prefix, solver_type,
                               lambda text: print(f"{tool_name()}: {text}", file=sys.stderr))
    if resume is not None:
        print(f"{tool_name()}: resumed from {resume} at iteration {solver.iter}")
    elif args.weights:
        print(load_weights(solver.net, args.weights.split(","), tool_name()).summary(tool_name()))
    return resume


def snapshot_now(solver, run):
    """A snapshot at the current iteration unless one exists; returns its .solverstate."""
    existing = snapshot_files(run.prefix).get(solver.iter)
    return existing[0] if existing else take_snapshot(solver, run.prefix, run.solver_type)


def stop_run(error, run, log, discard_from=None):
    """Raise `error` after removing the snapshots from iteration `discard_from` on (when given) and
    writing the log and the curve as they stand."""
    if discard_from is not None:
        remove_snapshots_from(run.prefix, discard_from)
    log.save()
    raise error


def step(solver, run, log):
    """One iteration (`solver.step(1)`). A layer that raises stops the run with a LayerError naming the
    iteration (:func:`stop_run`), after a snapshot of the progress this run made, if any."""
    iteration = solver.iter
    try:
        solver.step(1)
    except (RuntimeError, OSError, ValueError) as error:
        saved = "no snapshot of this run to keep"
        if solver.iter > run.start_iter:
            snapshot_now(solver, run)
            saved = f"the snapshot at iteration {solver.iter} is kept and a rerun resumes from it"
        stop_run(LayerError(f"{tool_name()}: iteration {iteration} stopped (solver {run.args.solver}): "
                            f"{error}; {saved}"), run, log)


def guard_failure(iteration, values, guard, solver_file):
    """The divergence guards on the net outputs `values` ({name: value}) of `iteration`: a
    (TrainingDiverged, first iteration whose snapshots are to go) pair for a non-finite output or a
    loss output `guard` (a :class:`StuckLossGuard`, fed these values) finds stuck; else None."""
    bad = {name: value for name, value in values.items() if not np.isfinite(value)}
    if bad:
        described = ", ".join(f"'{name}' = {value}" for name, value in sorted(bad.items()))
        return TrainingDiverged(f"{tool_name()}: training diverged at iteration {iteration} (solver {solver_file}): "
                                f"non-finite net output {described}"), iteration
    stuck = guard.observe(iteration, values)
    if stuck is None:
        return None
    description, first = stuck
    return TrainingDiverged(
        f"{tool_name()}: training stuck at iteration {iteration} (solver {solver_file}): "
        f"{description}. Lower base_lr or the lr_mult of the new layers (e.g. fc6/fc7/fc8) and "
        f"rerun; snapshots from iteration {first} on are removed, earlier ones kept (--stuck-iters 0 "
        f"turns this check off)"), first


def snapshot_on_schedule(solver, run, guard):
    """Every `run.period` iterations a snapshot, then the snapshots rotated down to --keep-snapshots,
    keeping those taken before a loss output began a run the guard suspects."""
    if solver.iter % run.period == 0:
        take_snapshot(solver, run.prefix, run.solver_type)
        rotate_snapshots(run.prefix, run.args.keep_snapshots, guard.suspect_since())


def stop_for_signal(signum, solver, run, log):
    """Raise Stopped for signal `signum`, after a snapshot at the current iteration (when this run made
    progress) and writing the log as it stands."""
    where = snapshot_now(solver, run) if solver.iter > run.start_iter else "none taken (no iteration done)"
    name = signal.Signals(signum).name
    log.write_table()
    raise Stopped(f"{tool_name()}: stopped by {name} at iteration {solver.iter}; snapshot: {where}; "
                  "a rerun resumes from it", signum)


def run_iterations(solver, run, log, guard, seed_growth=None):
    """Step the solver to `run.max_iter`: after each iteration the guards, the log window (with the
    grown seeds' figures of `seed_growth`, a pylayers.seedgrowth.SeedGrowthReader, when given), the
    scheduled snapshot, a log row every --log-every iterations and at the end (printed as a progress
    line), and a stop for SIGTERM or SIGINT."""
    progress = show_progress(total=run.max_iter, initial=solver.iter, desc=f"train {run.prefix.name}", unit="it",
                             disable=run.args.no_progress)
    try:
        with StopSignals() as signals:
            while solver.iter < run.max_iter:
                iteration = solver.iter
                step(solver, run, log)
                values = net_outputs(solver.net)
                failure = guard_failure(iteration, values, guard, run.args.solver)
                if failure is not None:
                    error, discard_from = failure
                    stop_run(error, run, log, discard_from=discard_from)
                log.add(values)
                if seed_growth is not None:
                    log.add(seed_growth.figures())
                progress.update(1)
                snapshot_on_schedule(solver, run, guard)
                if solver.iter % run.args.log_every == 0 or solver.iter == run.max_iter:
                    summary = log.close_window(solver.iter, solver.lr)
                    progress.write(f"iter {solver.iter}/{run.max_iter}  {summary}")
                if signals.received is not None:
                    stop_for_signal(signals.received, solver, run, log)
    finally:
        progress.close()


def finish(solver, run, log, guard, resume):
    """The end of a run: a last snapshot (rotated as on schedule), the weights in OUT/final.caffemodel,
    OUT/train_done.json (iterations, solver, weights, resumed-from, timings, final outputs) and the
    closing line."""
    snapshot_now(solver, run)
    rotate_snapshots(run.prefix, run.args.keep_snapshots, guard.suspect_since())
    save_weights_atomically(solver.net, run.out / FINAL_WEIGHTS)
    elapsed = time.time() - run.start_time
    atomic_write_json(run.out / DONE_NAME, {
        "iterations": run.max_iter, "solver": str(Path(run.args.solver).resolve()), "weights": run.args.weights,
        "resumed_from": str(resume) if resume else None, "seconds_this_run": round(elapsed, 1),
        "seconds_per_iteration": round(elapsed / max(1, run.max_iter - run.start_iter), 4),
        "final_outputs": log.final_outputs(),
    })
    print(f"{tool_name()}: {run.max_iter} iterations done in {elapsed:.0f} s this run; weights "
          f"{run.out / FINAL_WEIGHTS}")


@dataclasses.dataclass(frozen=True)
class TrainingJob:
    """What every solver process of a run shares, once OUT/solver.prototxt is written: the tool's
    arguments, OUT, the solver parameters, the snapshot prefix, the snapshot period and the solver type."""

    args: argparse.Namespace
    out: Path
    param: object
    prefix: Path
    period: int
    solver_type: str


def train_solver(solver, job, resume):
    """Train an opened and resumed (or initialised) solver to the end, as rank 0 or the only process:
    the log, the guards, scheduled snapshots and signals (:func:`run_iterations`), then :func:`finish`."""
    log = TrainingLog(job.out, job.prefix.name, solver.iter)
    run = TrainingRun(job.args, job.out, job.prefix, job.solver_type, job.param.max_iter, job.period,
                      start_iter=solver.iter)
    guard = StuckLossGuard(job.args.stuck_iters, job.args.stuck_tolerance)
    seed_growth = SeedGrowthReader(solver.net, job.args.seed_gt, job.args.seed_input_list)
    run_iterations(solver, run, log, guard, seed_growth)
    finish(solver, run, log, guard, resume)


# ---- several GPUs (--gpus): one solver process per GPU joined by NCCL ---------------------------------

@dataclasses.dataclass(frozen=True)
class Rank:
    """One solver process of a --gpus run: its index among `gpus` (rank 0 on the first id), the NCCL
    session id (caffe.NCCL.new_uid()) and the queue on which rank 0 tells the other ranks which
    .solverstate it resumed from (a str, or None when it started afresh)."""

    index: int
    gpus: tuple
    uid: bytes
    resumed: object

    @property
    def device(self):
        return self.gpus[self.index]

    @property
    def name(self):
        return f"rank {self.index} (GPU {self.device})"

    def join(self, caffe):
        """Make this process rank `index` of len(gpus) solvers in Caffe (before its solver is built:
        Caffe seeds its RNG with random_seed + rank, and the Python layers read the rank)."""
        caffe.set_solver_count(len(self.gpus))
        caffe.set_solver_rank(self.index)
        caffe.set_multiprocess(True)

    def announce(self, resume):
        """Rank 0: tell every other rank the .solverstate it resumed from (None: none)."""
        for _ in range(len(self.gpus) - 1):
            self.resumed.put(None if resume is None else str(resume))


def new_nccl_uid(caffe):
    """caffe.NCCL.new_uid(), the id that joins the ranks into one NCCL session; a Caffe built without
    NCCL is an NcclMissing saying how to rebuild it."""
    has_nccl = getattr(caffe, "has_nccl", lambda: True)
    nccl = getattr(caffe, "NCCL", None)
    if nccl is None or not hasattr(nccl, "new_uid") or not has_nccl():
        problem = "was built without NCCL"
    else:
        try:
            return nccl.new_uid()
        except (AttributeError, RuntimeError, TypeError) as error:
            problem = f"cannot start an NCCL session ({error})"
    raise NcclMissing(f"--gpus needs a Caffe built with NCCL, and the one imported "
                      f"({getattr(caffe, '__file__', 'caffe')}) {problem}: rebuild it with CAFFE_GPU=1 bash "
                      "caffe/build.sh (NCCL is on unless CAFFE_NCCL=0), or train on one GPU with --gpu")


def attach_nccl(solver, rank):
    """Join `solver` to the NCCL session of `rank` (after rank 0 loaded its weights, which this
    broadcasts): gradients are summed over the ranks and averaged before each update, layer by layer
    during the backward pass when the solver's layer_wise_reduce is on (Caffe's default). Returns the
    communicator, which must outlive the solver's last step."""
    caffe = import_caffe()
    nccl = caffe.NCCL(solver, rank.uid)
    nccl.bcast()
    solver.add_callback(nccl)
    if solver.param.layer_wise_reduce:
        solver.net.after_backward(nccl)
    return nccl


def follow(solver, job, rank):
    """A rank > 0 after it joined the session: step to max_iter in one call (each iteration waits for
    the others' gradients); it writes nothing. A layer that raises is a LayerError naming the rank."""
    try:
        solver.step(job.param.max_iter - solver.iter)
    except (RuntimeError, OSError, ValueError) as error:
        raise LayerError(f"{tool_name()}: {rank.name} stopped at iteration {solver.iter} (solver "
                         f"{job.args.solver}): {error}; the run stops and a rerun resumes from the latest "
                         "snapshot") from error


def train_rank(job, rank, keep_alive):
    """The work of one solver process of a --gpus run. Rank 0 resumes (or loads --weights), tells the
    others where it resumed from and trains as a one-process run does (:func:`train_solver`); a rank
    > 0 restores the same snapshot (its weights are then rank 0's, broadcast) and only steps
    (:func:`follow`). Objects that must live until the process ends (the NCCL communicator) go into
    `keep_alive`. Returns 0, or raises what the exit statuses report."""
    solver = open_solver(job.param, job.args, job.out, rank)
    keep_alive.append(solver)
    if rank.index == 0:
        resume = resume_or_initialise(solver, job.args, job.prefix, job.solver_type)
        rank.announce(resume)
    else:
        resume = rank.resumed.get()
        if resume is not None:
            with tempfile.TemporaryDirectory(prefix="dsrg-rank-") as scratch:
                restore(solver, resume, scratch=scratch)
    keep_alive.append(attach_nccl(solver, rank))
    if rank.index == 0:
        train_solver(solver, job, resume)
    else:
        follow(solver, job, rank)
    return 0


def die_with_parent():
    """Have Linux kill this process (SIGKILL) when the process that started it dies, so that no solver
    process outlives a --gpus run killed outright; elsewhere nothing."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    except (OSError, AttributeError):
        pass


def rank_process(job, rank):
    """The body of one solver process (the multiprocessing target). A rank > 0 ignores SIGINT and
    SIGTERM: it must keep stepping while rank 0 finishes the iteration it is in and snapshots; the
    parent then stops it. The process ends through os._exit with :func:`exit_status`'s status once its
    output is flushed, so that NCCL's teardown, which can wait on ranks that stopped stepping, never
    holds the run."""
    die_with_parent()
    if rank.index > 0:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
    keep_alive = []
    try:
        status = exit_status(train_rank, job, rank, keep_alive)
    except KeyboardInterrupt:
        status = 128 + signal.SIGINT
    except Exception:
        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


class ForwardedSignals(StopSignals):
    """Within `with`, SIGTERM and SIGINT are passed on to process `pid` (rank 0, which stops after its
    current iteration with a snapshot) instead of stopping this one."""

    def __init__(self, pid):
        super().__init__()
        self.pid = pid

    def handle(self, signum, frame):
        super().handle(signum, frame)
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass


def process_status(process):
    """The exit status of an ended multiprocessing.Process as a shell reports it (128 + N when signal N
    ended it)."""
    return 128 - process.exitcode if process.exitcode < 0 else process.exitcode


def stop_processes(processes):
    """Kill (SIGKILL: a rank > 0 ignores SIGTERM) and reap `processes`."""
    for process in processes:
        if process.is_alive():
            process.kill()
    for process in processes:
        process.join()


def supervise(processes):
    """Wait for the solver processes of a run (processes[r] runs rank r; SIGTERM and SIGINT go on to
    rank 0) and return the run's exit status: rank 0's, when it ends (the ranks still running are
    then stopped: they only step), or, when another rank fails first, that rank's (all are then
    stopped, since rank 0 would wait for its gradients forever). A rank > 0 that ends with status 0
    has done its steps."""
    root = processes[0]
    running = list(processes)
    with ForwardedSignals(root.pid):
        while True:
            ended = set(multiprocessing.connection.wait([process.sentinel for process in running]))
            for process in [process for process in running if process.sentinel in ended]:
                process.join()
                running.remove(process)
                status = process_status(process)
                if process is root:
                    stop_processes(running)
                    return status
                if status != 0:
                    print(f"{tool_name()}: {process.name} ended with status {status}; stopping the other solver "
                          "processes (snapshots taken so far are kept; a rerun resumes from the latest)",
                          file=sys.stderr)
                    stop_processes(running)
                    return status


def train_on_gpus(job, caffe):
    """--gpus: start one solver process per GPU ('spawn': each a fresh interpreter with its own CUDA
    context) and supervise them; returns the run's exit status."""
    gpus = job.args.gpus
    uid = new_nccl_uid(caffe)
    context = multiprocessing.get_context("spawn")
    resumed = context.SimpleQueue()
    ranks = [Rank(index, gpus, uid, resumed) for index in range(len(gpus))]
    processes = [context.Process(target=rank_process, args=(job, rank), name=rank.name) for rank in ranks]
    per_step = f"batch_size × iter_size {job.param.iter_size}" if job.param.iter_size > 1 else "batch_size"
    print(f"{tool_name()}: {len(gpus)} solver process(es) on GPU(s) {','.join(map(str, gpus))} joined by NCCL; "
          f"effective batch {len(gpus)} × the net's {per_step}; rank 0 logs and snapshots")
    sys.stdout.flush()
    for process in processes:
        process.start()
    return supervise(processes)


def main(argv=None):
    """Train as the module doc describes; returns the exit status (0 done), or raises what
    :func:`exit_status` reports."""
    args = parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    caffe = import_caffe(log_level=WARNINGS)
    caffe_pb2 = caffe.proto.caffe_pb2
    from google.protobuf import text_format

    param, prefix, period = prepare_solver(args, caffe_pb2, text_format, out)
    if already_done(out, param.max_iter):
        print(f"{tool_name()}: {out} already holds a finished {param.max_iter}-iteration run; skipping")
        return 0
    job = TrainingJob(args, out, param, prefix, period, solver_type_name(param, caffe_pb2))
    if args.gpus is not None:
        return train_on_gpus(job, caffe)
    solver = open_solver(param, args, out)
    resume = resume_or_initialise(solver, args, prefix, job.solver_type)
    train_solver(solver, job, resume)
    return 0


def exit_status(function, *arguments):
    """`function(*arguments)`'s return value, or for the errors the module doc lists their message on
    stderr and their exit status (3 diverged, 4 a layer raised, 128 + N stopped by signal N, 1 a clear
    error); anything else propagates (a traceback, status 1)."""
    try:
        return function(*arguments)
    except TrainingDiverged as error:
        print(error, file=sys.stderr)
        return EXIT_DIVERGED
    except LayerError as error:
        print(error, file=sys.stderr)
        return EXIT_LAYER_ERROR
    except Stopped as stopped:
        print(stopped, file=sys.stderr)
        return 128 + stopped.signum
    except (FileNotFoundError, ValueError, SnapshotError, NcclMissing) as error:
        print(f"{tool_name()}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(exit_status(main))
