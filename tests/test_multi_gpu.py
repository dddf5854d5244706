"""tools/train.py --gpus on a CPU: the per-rank seeds (dsrg.params.rank_seed, through a Python layer in
Caffe), the argument checks, the error for a Caffe without NCCL, what each rank does and writes (rank 0
everything a one-process run writes, a rank > 0 nothing: fake Caffe and solver objects stand in for the
GPU and NCCL), and the parent's supervision of the solver processes. Nothing here runs NCCL or a GPU."""
import json
import multiprocessing
import os
import queue
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from caffe_helpers import REPO_ROOT, input_layer, load_tool, make_net, python_layer, write_tiny_experiment
from dsrg.cues import save_cues
from dsrg.params import rank_seed
from pylayers import netio

caffe = netio.import_caffe()
caffe.set_mode_cpu()


@pytest.fixture(scope="module")
def train():
    return load_tool("train")


def test_rank_seed_offsets_a_given_seed_by_the_rank_and_keeps_none():
    assert [rank_seed(4, rank) for rank in range(3)] == [4, 5, 6]
    assert rank_seed(0, 1) == 1 and rank_seed(None, 0) is None and rank_seed(None, 3) is None
    for bad in (-1, True, 1.5, "1"):
        with pytest.raises(ValueError, match="a solver rank is a non-negative int"):
            rank_seed(0, bad)


@pytest.fixture
def solver_rank():
    """Set Caffe's solver rank of this (CPU) process for a test; rank 0 again after it."""
    yield caffe.set_solver_rank
    caffe.set_solver_rank(0)


def test_a_python_layer_seed_becomes_the_seed_of_the_solver_rank(tmp_path, solver_rank):
    save_cues(tmp_path / "cues.npz", {"0_labels": np.array([1]), "0_cues": np.array([[1], [0], [0]])})
    param = f"{{'cues': '{tmp_path / 'cues.npz'}', 'mirror': True, 'num_classes': 3, 'cue_size': 3, 'seed': 4}}"
    prototxt = (input_layer("ids", (2,)) + input_layer("images", (2, 3, 5, 5))
                + python_layer("annotation", "AnnotationLayer", ["ids", "images"], ["labels", "cues", "out"],
                               param_str=param))
    for rank, seed in ((0, 4), (2, 6)):
        solver_rank(rank)
        layer = make_net(caffe, prototxt).layers[2]
        assert layer.params["seed"] == seed
        np.testing.assert_array_equal(layer.rng.integers(0, 1 << 30, 8),
                                      np.random.default_rng(seed).integers(0, 1 << 30, 8))


def test_gpus_takes_distinct_non_negative_ids_and_excludes_gpu(train, capsys):
    base = ["--solver", "s.prototxt", "--out", "o"]
    assert train.parse_args(base + ["--gpus", "0,1"]).gpus == (0, 1)
    assert train.parse_args(base + ["--gpus", "3"]).gpus == (3,)
    assert train.parse_args(base + ["--gpu", "1"]).gpus is None
    for extra, message in ((["--gpus", "0,0"], "must be distinct, got '0,0' (0 more than once)"),
                           (["--gpus", "1,-1"], "must be non-negative"),
                           (["--gpus", "0,a"], "expected comma-separated GPU ids"),
                           (["--gpus", "0,,1"], "expected comma-separated GPU ids"),
                           (["--gpu", "0", "--gpus", "1"], "argument --gpus: not allowed with argument --gpu")):
        with pytest.raises(SystemExit) as stopped:
            train.parse_args(base + extra)
        assert stopped.value.code == 2 and message in capsys.readouterr().err


def started_job(train, tmp_path, *arguments, iters=6):
    """The tiny experiment prepared as train.main prepares it: its TrainingJob."""
    solver_path = tmp_path / "exp" / "solver.prototxt"
    if not solver_path.is_file():
        write_tiny_experiment(tmp_path / "exp", base_lr=0.05, momentum=0.9)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    args = train.parse_args(["--solver", str(solver_path), "--out", str(out), "--iters", str(iters), "--no-progress",
                             *arguments])
    caffe_pb2 = caffe.proto.caffe_pb2
    from google.protobuf import text_format

    param, prefix, period = train.prepare_solver(args, caffe_pb2, text_format, out)
    return train.TrainingJob(args, out, param, prefix, period, train.solver_type_name(param, caffe_pb2))


def no_cuda_device():
    """A caffe.NCCL.new_uid that fails as it would on a machine without a GPU."""
    raise RuntimeError("no CUDA device")


def test_a_caffe_without_nccl_is_a_one_line_error_saying_how_to_rebuild(train, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["train.py"])
    solver = write_tiny_experiment(tmp_path / "exp", base_lr=0.05, momentum=0.9)
    argv = ["--solver", str(solver), "--out", str(tmp_path / "out"), "--iters", "2", "--gpus", "0,1"]
    without = types.SimpleNamespace(proto=caffe.proto, __file__="/nowhere/caffe/__init__.py")
    failing = types.SimpleNamespace(proto=caffe.proto, __file__="/x/caffe/__init__.py", has_nccl=lambda: True,
                                    NCCL=types.SimpleNamespace(new_uid=no_cuda_device))
    for module, problem in ((caffe, "was built without NCCL"),          # this machine's CPU-only build
                            (without, "(/nowhere/caffe/__init__.py) was built without NCCL"),
                            (failing, "cannot start an NCCL session (no CUDA device)")):
        monkeypatch.setattr(train, "import_caffe", lambda log_level=None, module=module: module)
        assert train.exit_status(train.main, argv) == 1
        captured = capsys.readouterr()
        lines = captured.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("train.py: error: --gpus needs a Caffe built with NCCL")
        assert problem in lines[0] and "CAFFE_GPU=1 bash caffe/build.sh" in lines[0]
        assert captured.out == ""
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["snapshots", "solver.prototxt"]


class FakeNet:
    """A net whose after_backward callbacks are recorded."""

    def __init__(self, calls):
        self.calls = calls

    def after_backward(self, callback):
        self.calls.append(("after_backward", callback))


class FakeSolver:
    """What a rank > 0 may use of a solver: iter, param.layer_wise_reduce, net.after_backward,
    add_callback, restore (of a file that must exist when Caffe reads it) and step. No snapshot, no
    net.save: a rank > 0 that tried to write would fail on them."""

    def __init__(self, calls):
        self.calls, self.iter = calls, 0
        self.param = types.SimpleNamespace(layer_wise_reduce=True)
        self.net = FakeNet(calls)

    def add_callback(self, callback):
        self.calls.append(("add_callback", callback))

    def restore(self, path):
        assert os.path.isfile(path)
        self.calls.append(("restore", path))
        self.iter = 4

    def step(self, iterations):
        self.calls.append(("step", iterations))
        self.iter += iterations


class FakeCaffe:
    """The parts of pycaffe a solver process uses, recording the calls; get_solver gives a FakeSolver.
    Its protobuf messages are Caffe's."""

    proto = caffe.proto

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        if name.startswith("set_"):
            return lambda *values: self.calls.append((name, *values))
        raise AttributeError(name)

    def get_solver(self, path):
        self.calls.append(("get_solver", path))
        return FakeSolver(self.calls)

    def NCCL(self, solver, uid):
        communicator = types.SimpleNamespace(bcast=lambda: self.calls.append(("bcast",)), uid=uid)
        self.calls.append(("NCCL", uid))
        return communicator


def tree(folder):
    """{relative path: (size, mtime)} of every file under `folder`."""
    return {str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in folder.rglob("*") if path.is_file()}


def test_rank_zero_writes_what_a_one_process_run_writes_and_other_ranks_write_nothing(
        train, tmp_path, monkeypatch, capsys):
    attach_nccl = train.attach_nccl
    real = FakeCaffe()
    monkeypatch.setattr(real, "get_solver", lambda path: caffe.get_solver(path), raising=False)
    monkeypatch.setattr(netio, "import_caffe", lambda log_level=None: real)
    attached = []
    monkeypatch.setattr(train, "attach_nccl", lambda solver, rank: attached.append((rank.index, solver.iter)) or "c")

    # Rank 0, first 4 iterations of 6: it trains as a one-process run does and tells rank 1 it started afresh.
    job = started_job(train, tmp_path, "--gpus", "2,5", "--snapshot-every", "2", iters=4)
    announced = queue.SimpleQueue()
    keep_alive = []
    assert train.exit_status(train.train_rank, job, train.Rank(0, (2, 5), b"id", announced), keep_alive) == 0
    assert ("set_device", 2) in real.calls and ("set_mode_gpu",) in real.calls
    assert [call for call in real.calls if call[0] in ("set_solver_count", "set_solver_rank", "set_multiprocess")] \
        == [("set_solver_count", 2), ("set_solver_rank", 0), ("set_multiprocess", True)]
    assert attached == [(0, 0)] and keep_alive[1] == "c" and announced.get() is None and announced.empty()
    written = tree(job.out)
    for name in ("train_log.tsv", "loss_curve.png", "caffe.log", "final.caffemodel", "train_done.json",
                 "snapshots/solver_iter_4.solverstate", "snapshots/solver_iter_4.caffemodel"):
        assert name in written, sorted(written)
    assert "4 iterations done" in capsys.readouterr().out

    # Rank 0 again, to 6: it resumes from iteration 4 and says so to rank 1. (Run alone here, it goes on
    # to the end before rank 1 starts; together, NCCL holds it until rank 1 restored, so that snapshot 4,
    # which rotation would remove by then, is kept here.)
    job = started_job(train, tmp_path, "--gpus", "2,5", "--keep-snapshots", "9", iters=6)
    train.exit_status(train.train_rank, job, train.Rank(0, (2, 5), b"id", announced), [])
    state = job.prefix.parent / "solver_iter_4.solverstate"
    assert attached[-1] == (0, 4) and announced.get() == str(state)

    # Rank 1 from that snapshot: it restores it through a copy outside OUT, joins, steps, writes nothing.
    before = tree(job.out)
    fake = FakeCaffe()
    monkeypatch.setattr(netio, "import_caffe", lambda log_level=None: fake)
    monkeypatch.setattr(train, "import_caffe", lambda log_level=None: fake)
    monkeypatch.setattr(train, "attach_nccl", attach_nccl)
    announced.put(str(state))
    keep_alive = []
    rank = train.Rank(1, (2, 5), b"id", announced)
    assert train.exit_status(train.train_rank, job, rank, keep_alive) == 0
    names = [call[0] for call in fake.calls]
    assert names == ["set_device", "set_mode_gpu", "set_solver_count", "set_solver_rank", "set_multiprocess",
                     "get_solver", "restore", "NCCL", "bcast", "add_callback", "after_backward", "step"]
    assert fake.calls[0] == ("set_device", 5) and fake.calls[3] == ("set_solver_rank", 1)
    restored = fake.calls[names.index("restore")][1]
    assert not restored.startswith(str(job.out)) and not os.path.exists(restored)
    assert fake.calls[-1] == ("step", 6 - 4) and fake.calls[names.index("NCCL")][1] == b"id"
    assert fake.calls[names.index("add_callback")][1] is keep_alive[1]
    assert tree(job.out) == before


def test_a_rank_that_fails_to_step_names_itself_and_exits_4(train, tmp_path, monkeypatch, capsys):
    fake = FakeCaffe()
    monkeypatch.setattr(netio, "import_caffe", lambda log_level=None: fake)
    monkeypatch.setattr(train, "import_caffe", lambda log_level=None: fake)

    def broken_step(self, iterations):
        raise RuntimeError("bad.jpg does not decode")

    monkeypatch.setattr(FakeSolver, "step", broken_step)
    job = started_job(train, tmp_path, "--gpus", "0,1", iters=3)
    announced = queue.SimpleQueue()
    announced.put(None)
    assert train.exit_status(train.train_rank, job, train.Rank(1, (0, 1), b"id", announced), []) == 4
    assert "rank 1 (GPU 1) stopped at iteration 0" in capsys.readouterr().err


def supervised(train, *targets):
    """train.supervise over processes (spawned as the tool spawns its ranks) running `targets` (a
    function and its arguments each); returns (status, seconds, the processes)."""
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=target, args=arguments, name=f"rank {index}")
                 for index, (target, *arguments) in enumerate(targets)]
    for process in processes:
        process.start()
    started = time.monotonic()
    status = train.supervise(processes)
    return status, time.monotonic() - started, processes


def test_supervise_returns_rank_zeros_status_and_stops_the_run_when_any_rank_fails(train, capsys):
    status, seconds, processes = supervised(train, (time.sleep, 60), (os._exit, 4))
    assert status == 4 and seconds < 30 and not any(process.is_alive() for process in processes)
    assert processes[0].exitcode == -9
    assert "rank 1 ended with status 4; stopping the other solver processes" in capsys.readouterr().err
    status, seconds, processes = supervised(train, (os._exit, 3), (time.sleep, 60))
    assert status == 3 and seconds < 30 and processes[1].exitcode == -9
    status, _, processes = supervised(train, (time.sleep, 1), (os._exit, 0))
    assert status == 0 and processes[0].exitcode == 0 and capsys.readouterr().err == ""


STAND_IN_DRIVER = '''
import importlib.util
import os
import sys
import time
from pathlib import Path

sys.path[:0] = [{training!r}, {tools!r}]
from pylayers import netio

caffe = netio.import_caffe(log_level=1)
spec = importlib.util.spec_from_file_location("train_under_test", {train_py!r})
train = importlib.util.module_from_spec(spec)
sys.modules["train_under_test"] = train
spec.loader.exec_module(train)
RECORDS = Path({records!r})


class StandInNCCL:
    """caffe.NCCL without NCCL: a session id, nothing shared."""

    @staticmethod
    def new_uid():
        return bytes(range(128))


class StandInCaffe:
    """Caffe in CPU mode whatever device a rank asks for, with StandInNCCL."""

    NCCL = StandInNCCL

    def __getattr__(self, name):
        return getattr(caffe, name)

    def has_nccl(self):
        return True

    def set_device(self, device):
        pass

    def set_mode_gpu(self):
        caffe.set_mode_cpu()


def attach_stand_in(solver, rank):
    """Record what the rank knows, then wait for every rank, as ncclCommInitRank does."""
    RECORDS.mkdir(exist_ok=True)
    (RECORDS / f"rank{{rank.index}}").write_text(
        f"{{caffe.solver_count()}} {{caffe.solver_rank()}} {{rank.device}} {{solver.iter}} {{rank.uid == bytes(range(128))}} {{os.getpid()}}")
    while len(list(RECORDS.iterdir())) < len(rank.gpus):
        time.sleep(0.05)


stand_in = StandInCaffe()
netio.import_caffe = train.import_caffe = lambda log_level=None: stand_in
train.attach_nccl = attach_stand_in
if __name__ == "__main__":
    sys.exit(train.exit_status(train.main))
'''


def rank_record(tmp_path, index):
    """What the stand-in recorded for rank `index`: (solver count, solver rank, GPU, iteration at join,
    whether the session id arrived whole) as text, and the process id."""
    *fields, pid = (tmp_path / "records" / f"rank{index}").read_text().split()
    return " ".join(fields), int(pid)


def test_the_spawned_ranks_end_to_end_with_nccl_stood_in_for(tmp_path):
    """The real multiprocessing path (spawn, pickled jobs, rank 0 and rank 1 in processes of their own,
    the supervision, the exit status, SIGTERM to the parent) on the CPU, with caffe.NCCL replaced: each
    rank trains alone."""
    solver = write_tiny_experiment(tmp_path / "exp", base_lr=0.05, momentum=0.9)
    driver = tmp_path / "train.py"
    driver.write_text(STAND_IN_DRIVER.format(training=str(REPO_ROOT / "training"), tools=str(REPO_ROOT / "tools"),
                                             train_py=str(REPO_ROOT / "tools" / "train.py"),
                                             records=str(tmp_path / "records")))
    out = tmp_path / "out"
    command = [sys.executable, str(driver), "--solver", str(solver), "--out", str(out), "--no-progress",
               "--gpus", "3,1", "--log-every", "2"]
    first = subprocess.run(command + ["--iters", "4"], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("train.py: 2 solver process(es) on GPU(s) 3,1 joined by NCCL; effective batch 2")
    assert first.stdout.count("4 iterations done") == 1
    assert rank_record(tmp_path, 0)[0] == "2 0 3 0 True" and rank_record(tmp_path, 1)[0] == "2 1 1 0 True"
    assert json.loads((out / "train_done.json").read_text())["iterations"] == 4
    shutil.rmtree(tmp_path / "records")
    again = subprocess.run(command + ["--iters", "6"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "resumed from" in again.stdout and again.stdout.count("6 iterations done") == 1
    assert rank_record(tmp_path, 1)[0] == "2 1 1 4 True"        # restored rank 0's snapshot
    shutil.rmtree(tmp_path / "records")
    log = out / "train_log.tsv"
    rows = len(log.read_text().splitlines())
    with open(tmp_path / "err.txt", "w") as err:
        parent = subprocess.Popen(command + ["--iters", "1000000"], stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(log.read_text().splitlines()) < rows + 3:
            time.sleep(0.1)
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=120) == 143
    stopped = (tmp_path / "err.txt").read_text()
    assert "stopped by SIGTERM at iteration" in stopped and "rank 1" not in stopped, stopped
    for index in (0, 1):
        assert not Path(f"/proc/{rank_record(tmp_path, index)[1]}").exists()
