"""tools/train.py snapshots (pylayers.snapshots): written atomically, checked before a resume with a
fallback to the previous one, read from the run folder they are in, refused up front when the disk
lacks the space, and taken when SIGTERM or SIGINT stops the run."""
import os
import shutil
import signal
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import caffe
import numpy as np
import pytest
from caffe.proto import caffe_pb2

from caffe_helpers import REPO_ROOT, load_tool, write_tiny_experiment
from pylayers import snapshots

COMMON = ["--snapshot-every", "2", "--log-every", "1", "--no-progress"]


@pytest.fixture
def train():
    return load_tool("train")


def final_weights(tmp_path, folder, train):
    net = caffe.Net(str(tmp_path / "exp" / "net.prototxt"), str(folder / train.FINAL_WEIGHTS), caffe.TEST)
    return [blob.data.copy() for blob in net.params["ip"]]


def straight_run(tmp_path, train, solver, iters=6):
    out = tmp_path / "straight"
    assert train.main(["--solver", str(solver), "--out", str(out), "--iters", str(iters)] + COMMON) == 0
    return final_weights(tmp_path, out, train)


def assert_same(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_snapshots_are_renamed_into_place_and_leftovers_are_cleared(tmp_path, train):
    solver = write_tiny_experiment(tmp_path / "exp", base_lr=0.05, momentum=0.9)
    out = tmp_path / "run"
    assert train.main(["--solver", str(solver), "--out", str(out), "--iters", "4"] + COMMON) == 0
    staging = out / "snapshots" / snapshots.STAGING_NAME
    assert sorted(train.snapshot_files(out / "snapshots" / "solver")) == [2, 4]
    assert list(staging.iterdir()) == []
    assert "snapshot: 0" in (out / "solver.prototxt").read_text().replace("snapshot_prefix", "")
    (staging / "solver_iter_6.solverstate").write_bytes(b"half")
    assert train.main(["--solver", str(solver), "--out", str(out), "--iters", "6"] + COMMON) == 0
    assert list(staging.iterdir()) == []


def cut_short(state_path, keep):
    """Rewrite a .solverstate with only its first `keep` history blobs: a write cut at a field boundary
    still parses, as the 954,368-byte file of a full disk did (29 of 68 blobs)."""
    state = caffe_pb2.SolverState()
    state.ParseFromString(state_path.read_bytes())
    del state.history[keep:]
    state_path.write_bytes(state.SerializeToString())


def test_an_unusable_snapshot_is_set_aside_and_the_previous_one_resumed(tmp_path, train, capsys):
    solver = write_tiny_experiment(tmp_path / "exp", base_lr=0.05, momentum=0.9)
    expected = straight_run(tmp_path, train, solver)
    out = tmp_path / "run"
    assert train.main(["--solver", str(solver), "--out", str(out), "--iters", "4"] + COMMON) == 0
    prefix = out / "snapshots" / "solver"
    cut_short(prefix.with_name("solver_iter_4.solverstate"), keep=1)
    capsys.readouterr()
    assert train.main(["--solver", str(solver), "--out", str(out), "--iters", "6"] + COMMON) == 0
    captured = capsys.readouterr()
    assert ("snapshot at iteration 4 is unusable: " in captured.err and "1 history blobs, the net and a SGD solver "
            "need 2 (a file cut short); set aside as *.unusable, falling back to the snapshot at iteration 2"
            in captured.err)
    assert "resumed from " + str(prefix) + "_iter_2.solverstate at iteration 2" in captured.out
    assert prefix.with_name("solver_iter_4.solverstate.unusable").is_file()
    assert_same(final_weights(tmp_path, out, train), expected)


def test_an_explicit_unusable_snapshot_is_an_error(tmp_path, train):
    solver = write_tiny_experiment(tmp_path / "exp", base_lr=0.05, momentum=0.9)
    out = tmp_path / "run"
    assert train.main(["--solver", str(solver), "--out", str(out), "--iters", "2"] + COMMON) == 0
    state = out / "snapshots" / "solver_iter_2.solverstate"
    state.write_bytes(state.read_bytes()[:-5])
    with pytest.raises(snapshots.SnapshotError, match=r"cannot resume: .*solver_iter_2\.solverstate: not a complete"):
        train.main(["--solver", str(solver), "--out", str(tmp_path / "other"), "--iters", "4",
                    "--snapshot", str(state)] + COMMON)


def test_a_copied_run_folder_resumes_from_its_own_weights(tmp_path, train):
    solver = write_tiny_experiment(tmp_path / "exp", base_lr=0.05, momentum=0.9)
    expected = straight_run(tmp_path, train, solver)
    original = tmp_path / "original"
    assert train.main(["--solver", str(solver), "--out", str(original), "--iters", "4"] + COMMON) == 0
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    shutil.rmtree(original)
    assert train.main(["--solver", str(solver), "--out", str(copy), "--iters", "6"] + COMMON) == 0
    assert_same(final_weights(tmp_path, copy, train), expected)


def test_too_little_space_stops_before_writing_and_the_rerun_resumes(tmp_path, train, monkeypatch):
    solver = write_tiny_experiment(tmp_path / "exp", base_lr=0.05, momentum=0.9)
    expected = straight_run(tmp_path, train, solver)
    out = tmp_path / "run"
    real_usage = shutil.disk_usage
    Usage = namedtuple("Usage", "total used free")
    calls = []

    def full_after_first(path):
        calls.append(path)
        usage = real_usage(path)
        return usage if len(calls) == 1 else Usage(usage.total, usage.total - 100, 100)

    monkeypatch.setattr(snapshots.shutil, "disk_usage", full_after_first)
    with pytest.raises(snapshots.SnapshotError, match=r"cannot write the snapshot at iteration 4 to .*snapshots: it "
                                                      r"needs about .* MB, 0\.0 MB are free \(No space left on "
                                                      r"device\); the earlier snapshots are kept"):
        train.main(["--solver", str(solver), "--out", str(out), "--iters", "6"] + COMMON)
    assert sorted(train.snapshot_files(out / "snapshots" / "solver")) == [2]
    assert list((out / "snapshots" / snapshots.STAGING_NAME).iterdir()) == []
    monkeypatch.setattr(snapshots.shutil, "disk_usage", real_usage)
    assert train.main(["--solver", str(solver), "--out", str(out), "--iters", "6"] + COMMON) == 0
    assert_same(final_weights(tmp_path, out, train), expected)


SELF_SIGNAL_MODULE = """
import os

import caffe
import numpy as np


class SquaredErrorSignallingItself(caffe.Layer):
    \"\"\"Mean squared error that sends its own process signal number `param_str` on its third forward
    call (0: never).\"\"\"

    def setup(self, bottom, top):
        self.signum = int(self.param_str)
        self.calls = 0

    def reshape(self, bottom, top):
        top[0].reshape(1)

    def forward(self, bottom, top):
        top[0].data[0] = 0.5 * np.mean((bottom[0].data - bottom[1].data) ** 2)
        self.calls += 1
        if self.signum and self.calls == 3:
            os.kill(os.getpid(), self.signum)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            difference = bottom[0].data - bottom[1].data
            bottom[0].diff[...] = top[0].diff[0] * difference / difference.size
"""


def self_signalling_experiment(folder, signum):
    solver = write_tiny_experiment(folder, base_lr=0.05, momentum=0.9)
    net_path = folder / "net.prototxt"
    net_path.write_text(net_path.read_text().replace(
        'layer { name: "loss" type: "EuclideanLoss" bottom: "p" bottom: "y" top: "loss" }',
        'layer { name: "loss" type: "Python" bottom: "p" bottom: "y" top: "loss" loss_weight: 1\n'
        f'  python_param {{ module: "selfsignal_module" layer: "SquaredErrorSignallingItself" '
        f'param_str: "{signum}" }} }}'))
    return solver


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_training_with_a_snapshot_and_the_rerun_resumes(tmp_path, train, signum, status):
    (tmp_path / "selfsignal_module.py").write_text(SELF_SIGNAL_MODULE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path)] + sys.path), GLOG_minloglevel="2",
               DSRG_EXTRA_LAYER_MODULES="selfsignal_module")

    def run(solver, out):
        return subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "train.py"), "--solver", str(solver),
                               "--out", str(out), "--iters", "8", "--snapshot-every", "4", "--log-every", "1",
                               "--no-progress"], capture_output=True, text=True, timeout=120, env=env)

    assert run(self_signalling_experiment(tmp_path / "quiet", 0), tmp_path / "straight").returncode == 0
    solver = self_signalling_experiment(tmp_path / "exp", int(signum))
    out = tmp_path / "run"
    done = run(solver, out)
    assert done.returncode == status, done.stderr
    state = out / "snapshots" / "solver_iter_3.solverstate"
    assert (f"train.py: stopped by {signum.name} at iteration 3; snapshot: {state}; a rerun resumes from it"
            in done.stderr)
    assert sorted(train.snapshot_files(out / "snapshots" / "solver")) == [3]
    # Each run's layer signals on its own third forward call: the rerun goes from 3 to 6, the third finishes.
    done = run(solver, out)
    assert done.returncode == status and f"resumed from {state} at iteration 3" in done.stdout
    assert f"stopped by {signum.name} at iteration 6" in done.stderr
    assert run(solver, out).returncode == 0
    plain = write_tiny_experiment(tmp_path / "plain", base_lr=0.05, momentum=0.9).with_name("net.prototxt")

    def weights(path):
        return [blob.data.copy() for blob in caffe.Net(str(plain), str(path), caffe.TEST).params["ip"]]

    assert_same(weights(tmp_path / "straight" / train.FINAL_WEIGHTS), weights(out / train.FINAL_WEIGHTS))


def test_caffe_log_is_read_by_caffes_parse_log(tmp_path, train):
    """OUT/caffe.log holds Caffe's solver-log lines; Caffe's own parse_log.py, where the Caffe build
    kept its sources, reads the same iterations, learning rates and outputs as train_log.tsv."""
    import re

    solver = write_tiny_experiment(tmp_path / "exp", base_lr=0.05, momentum=0.9)
    out = tmp_path / "run"
    assert train.main(["--solver", str(solver), "--out", str(out), "--iters", "4"] + COMMON) == 0
    assert train.main(["--solver", str(solver), "--out", str(out), "--iters", "6"] + COMMON) == 0
    lines = (out / "caffe.log").read_text().splitlines()
    prefix = r"^I\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ [a-z_]+\.cpp:\d+\] "
    assert all(re.match(prefix, line) for line in lines)
    assert sum("] Solving solver" in line for line in lines) == 2          # the run and its resumption
    iterations = [int(m.group(1)) for m in map(re.compile(r"Iteration (\d+), lr = 0\.05$").search, lines) if m]
    assert iterations == [1, 2, 3, 4, 5, 6]
    header, rows = train.read_log(out / train.LOG_NAME, 10 ** 9)
    outputs = [float(m.group(1)) for m in map(re.compile(r"Train net output #0: loss = (\S+)$").search, lines) if m]
    np.testing.assert_allclose(outputs, [row[1] for row in rows], rtol=1e-5)
    parse_logs = sorted(Path.home().glob(".cache/dsrg/work-*/src/tools/extra/parse_log.py"))
    if not parse_logs:
        return
    # Caffe 1.0's parse_log.py is Python 2 only in its one print statement; its parse_log() is read
    # as it is, with that statement made a call.
    source = re.sub(r"print '([^']*)' % (\w+)", r"print('\1' % \2)", parse_logs[-1].read_text())
    sys.path.insert(0, str(parse_logs[-1].parent))
    try:
        namespace = {"__name__": "caffe_parse_log"}
        exec(compile(source, str(parse_logs[-1]), "exec"), namespace)
        train_rows, test_rows = namespace["parse_log"](str(out / "caffe.log"))
    finally:
        sys.path.remove(str(parse_logs[-1].parent))
    assert test_rows == []
    assert [row["NumIters"] for row in train_rows] == [1, 2, 3, 4, 5, 6]
    assert [row["LearningRate"] for row in train_rows] == [0.05] * 6
    np.testing.assert_allclose([row["loss"] for row in train_rows], [row[1] for row in rows], rtol=1e-5)
