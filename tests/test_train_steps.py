"""tools/train.py step by step on the tiny experiment (tests/caffe_helpers.write_tiny_experiment): the
finished-run check, opening the solver, resuming or initialising, one step, the guards, the log window,
scheduled snapshots, a stop for a signal, the iteration loop and the end of a run."""
import json
import re
import signal

import numpy as np
import pytest

from caffe_helpers import load_tool, write_tiny_experiment

RAISING_LOSS_MODULE = """
import caffe
import numpy as np


class SquaredErrorRaising(caffe.Layer):
    \"\"\"Mean squared error of bottoms (prediction, target) that raises on forward call `raise_at`
    (param_str; -1: during set-up).\"\"\"

    def setup(self, bottom, top):
        self.raise_at = int(self.param_str)
        self.calls = 0
        if self.raise_at < 0:
            raise ValueError("set-up of the loss refused its input")

    def reshape(self, bottom, top):
        top[0].reshape(1)

    def forward(self, bottom, top):
        if self.calls == self.raise_at:
            raise ValueError("the loss layer could not read its input")
        self.calls += 1
        difference = bottom[0].data - bottom[1].data
        top[0].data[0] = 0.5 * np.mean(difference ** 2)

    def backward(self, top, propagate_down, bottom):
        difference = bottom[0].data - bottom[1].data
        bottom[0].diff[...] = top[0].diff[0] * difference / difference.size
"""


@pytest.fixture(scope="module")
def train():
    return load_tool("train")


class Started:
    """A solver of the tiny experiment opened and initialised as train.main does, with its run, log and
    guard."""

    def __init__(self, train, tmp_path, *arguments, solver=None, iters=6):
        solver_path = solver or write_tiny_experiment(tmp_path / "exp", base_lr=0.05, momentum=0.9)
        self.out = tmp_path / "out"
        self.out.mkdir(exist_ok=True)
        self.args = train.parse_args(["--solver", str(solver_path), "--out", str(self.out), "--iters", str(iters),
                                      "--no-progress", *arguments])
        caffe_pb2 = train.import_caffe().proto.caffe_pb2
        from google.protobuf import text_format

        self.param, self.prefix, period = train.prepare_solver(self.args, caffe_pb2, text_format, self.out)
        self.solver = train.open_solver(self.param, self.args, self.out)
        solver_type = train.solver_type_name(self.param, caffe_pb2)
        self.resume = train.resume_or_initialise(self.solver, self.args, self.prefix, solver_type)
        self.log = train.TrainingLog(self.out, self.prefix.name, self.solver.iter)
        self.run = train.TrainingRun(self.args, self.out, self.prefix, solver_type, self.param.max_iter, period,
                                     start_iter=self.solver.iter)
        self.guard = train.StuckLossGuard(self.args.stuck_iters, self.args.stuck_tolerance)

    def snapshots(self, train):
        return sorted(train.snapshot_files(self.prefix))


def raising_experiment(tmp_path, monkeypatch, raise_at):
    """The tiny experiment with its EuclideanLoss replaced by SquaredErrorRaising(raise_at)."""
    module = "train_steps_raising_loss"
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / f"{module}.py").write_text(RAISING_LOSS_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("DSRG_EXTRA_LAYER_MODULES", module)
    solver = write_tiny_experiment(tmp_path / "exp", base_lr=0.05, momentum=0.9)
    net_path = solver.with_name("net.prototxt")
    net_path.write_text(net_path.read_text().replace(
        'layer { name: "loss" type: "EuclideanLoss" bottom: "p" bottom: "y" top: "loss" }',
        'layer { name: "loss" type: "Python" bottom: "p" bottom: "y" top: "loss" loss_weight: 1\n'
        f'  python_param {{ module: "{module}" layer: "SquaredErrorRaising" param_str: "{raise_at}" }} }}'))
    return solver


def test_already_done_needs_the_record_for_the_same_iterations_and_the_weights(train, tmp_path):
    assert not train.already_done(tmp_path, 6)
    (tmp_path / train.DONE_NAME).write_text(json.dumps({"iterations": 6}))
    assert not train.already_done(tmp_path, 6)             # no final weights
    (tmp_path / train.FINAL_WEIGHTS).write_bytes(b"weights")
    assert train.already_done(tmp_path, 6)
    assert not train.already_done(tmp_path, 8)


def test_open_solver_checks_the_layer_modules_and_names_a_set_up_failure(train, tmp_path, monkeypatch):
    started = Started(train, tmp_path)
    assert started.solver.iter == 0 and list(started.solver.net.outputs) == ["loss"]
    solver = raising_experiment(tmp_path / "setup", monkeypatch, -1)
    with pytest.raises(train.LayerError, match=r"cannot set up the net of .*solver\.prototxt: .*refused its input"):
        Started(train, tmp_path / "setup", solver=solver)
    monkeypatch.setenv("DSRG_EXTRA_LAYER_MODULES", "")
    with pytest.raises(ValueError, match=r"python_param module 'train_steps_raising_loss' is not one of"):
        Started(train, tmp_path / "setup", solver=solver)


def test_resume_or_initialise_loads_weights_resumes_the_latest_snapshot_or_the_given_one(train, tmp_path, capsys):
    first = Started(train, tmp_path / "first")
    assert first.resume is None and "initialised" not in capsys.readouterr().out
    train.run_iterations(first.solver, first.run, first.log, first.guard)
    train.finish(first.solver, first.run, first.log, first.guard, first.resume)
    capsys.readouterr()
    weights = str(first.out / train.FINAL_WEIGHTS)
    loaded = Started(train, tmp_path / "loaded", "--weights", weights)
    assert loaded.resume is None and f"initialised 1 layers from {weights}" in capsys.readouterr().out
    np.testing.assert_array_equal(loaded.solver.net.params["ip"][0].data, first.solver.net.params["ip"][0].data)
    again = Started(train, tmp_path / "first", iters=8)
    latest = first.prefix.parent / "solver_iter_6.solverstate"
    assert again.resume == latest and again.solver.iter == 6
    assert f"resumed from {latest} at iteration 6" in capsys.readouterr().out
    given = first.prefix.parent / "solver_iter_5.solverstate"
    explicit = Started(train, tmp_path / "explicit", "--snapshot", str(given))
    assert explicit.resume == given and explicit.solver.iter == 5
    with pytest.raises(FileNotFoundError, match="snapshot to resume from not found: .*absent.solverstate"):
        Started(train, tmp_path / "missing", "--snapshot", str(tmp_path / "absent.solverstate"))


def test_step_runs_one_iteration_and_a_raising_layer_stops_with_a_snapshot_of_the_progress(
        train, tmp_path, monkeypatch):
    started = Started(train, tmp_path, solver=raising_experiment(tmp_path, monkeypatch, 2))
    train.step(started.solver, started.run, started.log)
    assert started.solver.iter == 1 and np.isfinite(started.solver.net.blobs["loss"].data[0])
    train.step(started.solver, started.run, started.log)
    with pytest.raises(train.LayerError, match=r"iteration 2 stopped \(solver .*\): the loss layer could not read "
                                               r"its input; the snapshot at iteration 2 is kept"):
        train.step(started.solver, started.run, started.log)
    assert started.snapshots(train) == [2]


def test_step_without_progress_keeps_no_snapshot(train, tmp_path, monkeypatch):
    started = Started(train, tmp_path, solver=raising_experiment(tmp_path, monkeypatch, 0))
    with pytest.raises(train.LayerError, match="iteration 0 stopped .*; no snapshot of this run to keep"):
        train.step(started.solver, started.run, started.log)
    assert started.snapshots(train) == []


def test_guard_failure_names_non_finite_and_stuck_outputs_and_where_snapshots_go(train):
    guard = train.StuckLossGuard(3, 0.05)
    assert train.guard_failure(0, {"loss": 1.0, "accuracy": 0.5}, guard, "s.prototxt") is None
    error, discard_from = train.guard_failure(7, {"loss": float("nan"), "other_loss": float("inf")}, guard,
                                              "s.prototxt")
    assert isinstance(error, train.TrainingDiverged) and discard_from == 7
    assert str(error).endswith("training diverged at iteration 7 (solver s.prototxt): non-finite net output "
                               "'loss' = nan, 'other_loss' = inf")
    stuck = train.StuckLossGuard(3, 0.05)
    results = [train.guard_failure(iteration, {"seed_loss": train.FLOOR_LOSS}, stuck, "s.prototxt")
               for iteration in (10, 11, 12)]
    assert results[:2] == [None, None]
    error, discard_from = results[2]
    assert discard_from == 10 and "snapshots from iteration 10 on are removed" in str(error)
    assert "training stuck at iteration 12 (solver s.prototxt): loss output 'seed_loss'" in str(error)


def test_the_log_window_writes_the_means_to_both_logs_and_the_curve(train, tmp_path):
    log = train.TrainingLog(tmp_path, "solver", 0)
    log.write_table()
    log.save()
    assert not (tmp_path / train.LOG_NAME).exists() and log.final_outputs() == {}
    log.add({"loss": 1.0, "accuracy": 0.25})
    log.add({"loss": 3.0, "accuracy": 0.75})
    assert log.close_window(2, 0.01) == "accuracy 0.5  loss 2"
    assert train.read_log(tmp_path / train.LOG_NAME, 10) == (["iteration", "accuracy", "loss"], [[2, 0.5, 2.0]])
    assert (tmp_path / train.CURVE_NAME).stat().st_size > 0
    caffe_lines = [line.split("] ", 1)[1] for line in (tmp_path / train.CAFFE_LOG_NAME).read_text().splitlines()]
    assert caffe_lines == ["Solving solver", "Learning Rate Policy: from the solver file", "Iteration 2, loss = 2",
                           "Iteration 2, lr = 0.01", "    Train net output #0: accuracy = 0.5",
                           "    Train net output #1: loss = 2"]
    log.add({"loss": 5.0})
    log.close_window(3, 0.01)
    assert log.rows == [[3, 5.0]] and log.final_outputs() == {"loss": 5.0}   # other outputs: a new table
    resumed = train.TrainingLog(tmp_path, "solver", 2)
    assert resumed.header == ["iteration", "loss"] and resumed.rows == []
    assert "Learning Rate Policy: resumed at iteration 2" in (tmp_path / train.CAFFE_LOG_NAME).read_text()


def test_snapshots_on_schedule_are_rotated(train, tmp_path):
    started = Started(train, tmp_path, "--snapshot-every", "2", "--keep-snapshots", "2", iters=8)
    for expected in ([], [2], [2], [2, 4], [2, 4], [4, 6]):
        started.solver.step(1)
        train.snapshot_on_schedule(started.solver, started.run, started.guard)
        assert started.snapshots(train) == expected


def test_stop_for_signal_snapshots_the_progress_and_writes_the_log(train, tmp_path):
    started = Started(train, tmp_path, "--snapshot-every", "100")
    with pytest.raises(train.Stopped, match="stopped by SIGTERM at iteration 0; snapshot: none taken") as stopped:
        train.stop_for_signal(signal.SIGTERM, started.solver, started.run, started.log)
    assert stopped.value.signum == signal.SIGTERM and started.snapshots(train) == []
    started.solver.step(3)
    started.log.add({"loss": 1.5})
    started.log.close_window(3, 0.05)
    (started.out / train.LOG_NAME).unlink()
    state = started.prefix.parent / "solver_iter_3.solverstate"
    with pytest.raises(train.Stopped, match=f"stopped by SIGINT at iteration 3; snapshot: {state}; a rerun") as stopped:
        train.stop_for_signal(signal.SIGINT, started.solver, started.run, started.log)
    assert stopped.value.signum == signal.SIGINT and started.snapshots(train) == [3]
    assert train.read_log(started.out / train.LOG_NAME, 10)[1] == [[3, 1.5]]


def test_run_iterations_logs_snapshots_and_stops_on_the_guards(train, tmp_path, capsys):
    started = Started(train, tmp_path, "--snapshot-every", "2", "--log-every", "4", iters=6)
    train.run_iterations(started.solver, started.run, started.log, started.guard)
    assert started.solver.iter == 6 and started.snapshots(train) == [4, 6]
    assert [row[0] for row in started.log.rows] == [4, 6]
    assert [line.split("  ")[0] for line in capsys.readouterr().out.splitlines()] == ["iter 4/6", "iter 6/6"]
    stuck = write_tiny_experiment(tmp_path / "stuck", base_lr=0.0, momentum=0.0)
    frozen = Started(train, tmp_path / "stuck", "--snapshot-every", "2", "--stuck-iters", "3", solver=stuck, iters=20)
    with pytest.raises(train.TrainingDiverged, match="training stuck at iteration 2 .*snapshots from iteration 0 on"):
        train.run_iterations(frozen.solver, frozen.run, frozen.log, frozen.guard)
    assert frozen.snapshots(train) == []


def test_finish_writes_the_weights_the_record_and_the_closing_line(train, tmp_path, capsys):
    started = Started(train, tmp_path, "--snapshot-every", "4", "--keep-snapshots", "1", "--log-every", "3", iters=5)
    train.run_iterations(started.solver, started.run, started.log, started.guard)
    train.finish(started.solver, started.run, started.log, started.guard, started.resume)
    assert started.snapshots(train) == [5]
    assert (started.out / train.FINAL_WEIGHTS).stat().st_size > 0
    done = json.loads((started.out / train.DONE_NAME).read_text())
    assert done["iterations"] == 5 and done["resumed_from"] is None and done["weights"] is None
    assert done["solver"] == str((tmp_path / "exp" / "solver.prototxt").resolve())
    assert done["final_outputs"] == started.log.final_outputs() and set(done["final_outputs"]) == {"loss"}
    closing = capsys.readouterr().out.splitlines()[-1]
    assert re.search(rf"5 iterations done in \d+ s this run; weights {re.escape(str(started.out))}/final\.caffemodel$",
                     closing), closing
    assert train.already_done(started.out, 5)
