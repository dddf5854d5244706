"""SIGTERM to run.sh during stage 1 (the demo, the generator's cues, on a few synthetic images) stops
the whole pipeline: no tool keeps running, training leaves a snapshot at the iteration it reached,
run.sh exits 143, and a rerun resumes from that snapshot."""
import os
import signal
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def demo_env(run_dir, iters):
    env = dict(os.environ, EXP="demo", RUN_DIR=str(run_dir), DEMO_TRAIN="10", DEMO_VAL="4", STAGE1_ITERS=str(iters),
               LOG_EVERY="1", DSRG_SKIP_SETUP="1", GPU="", CUES="generator")
    for name in ("PASCAL_DIR", "INIT_WEIGHTS"):
        env.pop(name, None)
    return env


def processes_using(path):
    """Command lines of the live processes that name `path`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in command:
            found.append(command)
    return found


def test_sigterm_stops_every_step_process_and_the_rerun_resumes(tmp_path):
    run_dir = tmp_path / "run"
    log = run_dir / "stage1" / "train_log.tsv"
    with open(tmp_path / "out.txt", "w") as out:
        pipeline = subprocess.Popen(["bash", str(REPO / "run.sh"), "data", "prepare", "stage1"], cwd=REPO,
                                    env=demo_env(run_dir, 400), stdout=out, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while time.time() < deadline and pipeline.poll() is None:
            if log.is_file() and len(log.read_text().splitlines()) > 3:
                break
            time.sleep(0.2)
        assert pipeline.poll() is None, (tmp_path / "out.txt").read_text()
        pipeline.send_signal(signal.SIGTERM)
        assert pipeline.wait(timeout=120) == 143
    output = (tmp_path / "out.txt").read_text()
    time.sleep(0.5)
    assert processes_using(run_dir) == []
    stopped = [line for line in output.splitlines() if "stopped by SIGTERM at iteration" in line]
    assert len(stopped) == 1, output
    reached = int(stopped[0].split("at iteration ")[1].split(";")[0])
    assert reached >= 3
    state = run_dir / "stage1" / "snapshots" / f"stage1_solver_iter_{reached}.solverstate"
    assert state.is_file() and str(state) in stopped[0]
    assert "[run] stopped by SIGTERM; a rerun resumes" in output
    assert not (run_dir / ".done" / "stage1").exists()

    rerun = subprocess.run(["bash", str(REPO / "run.sh"), "stage1"], cwd=REPO, env=demo_env(run_dir, reached + 2),
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resumed from {state} at iteration {reached}" in rerun.stdout + rerun.stderr
