"""run.sh --help and --list (no side effects, no data set needed) and tools/summary.py, the run's last step."""
import json
import os
import re
import subprocess
import time
from pathlib import Path

from caffe_helpers import load_tool

REPO = Path(__file__).resolve().parents[1]


def run_sh(*args, **env):
    return subprocess.run(["bash", str(REPO / "run.sh"), *args], env=dict(os.environ, **env), capture_output=True,
                          text=True, timeout=60)


def test_help_prints_the_usage_and_list_the_steps_without_touching_anything(tmp_path):
    done = run_sh("--help")
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith("DSRG end to end")
    assert "bash run.sh --list" in done.stdout and "PASCAL_DIR" in done.stdout and "#" not in done.stdout[:200]
    steps = re.search(r"^STEPS=\((.*)\)$", (REPO / "run.sh").read_text(), re.M).group(1).split()
    run_dir = tmp_path / "never"
    done = run_sh("--list", EXP="voc12-vgg16", RUN_DIR=str(run_dir))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == steps + ["ablation", "probe"]
    assert all(len(line.split(None, 1)) == 2 for line in lines)
    assert not run_dir.exists()


def write_run(folder, with_final=True):
    folder.mkdir()
    (folder / "seeds_cues.json").write_text(json.dumps({"cues": {"precision": 87.3, "recall": 18.6,
                                                                  "coverage": 21.3}}))
    (folder / "eval_train_pseudo_labels.json").write_text(json.dumps({"miou": 32.591}))
    (folder / "eval_val_stage1.json").write_text(json.dumps({"miou": 27.125}))
    if with_final:
        (folder / "eval_val_stage2.json").write_text(json.dumps({"miou": 24.4149,
                                                                 "confusion_matrix": [[6, 2], [1, 1]]}))
    (folder / "step_times.tsv").write_text("data\t4\nstage1\t1627\n")


def test_summary_prints_every_figure_and_the_final_line(tmp_path, capsys):
    summary = load_tool("summary")
    write_run(tmp_path / "run")
    assert summary.main(["--run-dir", str(tmp_path / "run")]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"== DSRG run {tmp_path / 'run'}",
        "  raw cues                  precision  87.30  recall  18.60  coverage  21.30",
        "  train pseudo labels mIoU    32.59",
        # background is 8 of the 10 ground-truth pixels, over 2 present classes: 100 * 0.8 / 2
        "  val all-background mIoU     40.00",
        "  val stage 1 mIoU            27.12",
        "  val stage 2 (final) mIoU    24.41",
        "  time per step (s): data 4, stage1 1627",
        "final val mIoU: 24.41",
    ]


def test_summary_without_the_final_evaluation_exits_1(tmp_path, capsys):
    summary = load_tool("summary")
    write_run(tmp_path / "run", with_final=False)
    assert summary.main(["--run-dir", str(tmp_path / "run")]) == 1
    captured = capsys.readouterr()
    assert "  val stage 2 (final) mIoU    n/a" in captured.out and "final val mIoU" not in captured.out
    assert "no final evaluation" in captured.err
    assert summary.main(["--run-dir", str(tmp_path / "absent")]) == 1


def expected_error_calls(tmp_path):
    """{tool: arguments} that name a missing file: each tool stops with an expected error."""
    (tmp_path / "ids.txt").write_text("a\n")
    return {
        "render_experiment": ["--exp", str(tmp_path / "no_such_experiment"), "--out", str(tmp_path / "out")],
        "make_cues": ["--input-list", str(tmp_path / "missing.txt"), "--labels", str(tmp_path / "l.txt"),
                      "--cams", str(tmp_path), "--saliency", str(tmp_path), "--out", str(tmp_path / "c.pickle")],
        "extract_cams": ["--deploy", str(tmp_path / "missing.prototxt"), "--weights", str(tmp_path / "w"),
                         "--images", str(tmp_path), "--ids", str(tmp_path / "ids.txt"), "--out", str(tmp_path / "o")],
    }


def test_expected_errors_are_one_line_and_exit_1(tmp_path):
    import sys

    for tool, args in expected_error_calls(tmp_path).items():
        done = subprocess.run([sys.executable, str(REPO / "tools" / f"{tool}.py"), *args], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 1, (tool, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"{tool}.py: "), (tool, done.stderr)
        assert "missing" in lines[0] or "no_such_experiment" in lines[0], (tool, lines[0])


def test_messages_name_the_tool_as_it_was_started(tmp_path):
    """A tool's messages take its name from sys.argv[0] (dsrg.cli.tool_name): a copy run under another
    name says that name, once, whether the message comes from the tool, netio or the exit policy."""
    import shutil
    import sys

    for tool, args in expected_error_calls(tmp_path).items():
        renamed = tmp_path / f"renamed_{tool}.py"
        shutil.copy(REPO / "tools" / f"{tool}.py", renamed)
        done = subprocess.run([sys.executable, str(renamed), *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 1, (tool, done.stderr)
        line = done.stderr.strip()
        assert line.startswith(f"renamed_{tool}.py: ") and f"{tool}.py" not in line.replace(renamed.name, ""), line


def test_a_run_log_keeps_everything_printed_without_carriage_returns(tmp_path):
    run_dir = tmp_path / "run"
    env = dict(os.environ, EXP="demo", RUN_DIR=str(run_dir), DEMO_TRAIN="4", DEMO_VAL="2", DSRG_SKIP_SETUP="1",
               GPU="", DSRG_PROGRESS="bars")
    for name in ("PASCAL_DIR", "CUES", "INIT_WEIGHTS"):
        env.pop(name, None)
    done = subprocess.run(["bash", str(REPO / "run.sh"), "data"], env=env, capture_output=True, timeout=300)
    # bytes: text mode would turn carriage returns into newlines
    output, errors = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, output + errors
    assert "[run] step data done in" in errors and "[run] step data" not in output   # streams kept apart
    logs = sorted((run_dir / "logs").glob("run-*.log"))
    assert len(logs) == 1
    expected = sorted(line.split("\r")[-1] for line in (output + errors).split("\n") if line)
    deadline = time.time() + 5               # the copies' last filters may finish a moment after run.sh
    while sorted(logs[0].read_bytes().decode().splitlines()) != expected and time.time() < deadline:
        time.sleep(0.1)
    text = logs[0].read_bytes().decode()
    assert "\r" not in text and "\r" in output + errors      # the terminal side keeps the bars
    assert f"[run] run log: {logs[0]}" in text and "[run] step data done in" in text
    assert sorted(text.splitlines()) == expected


def test_gpu_with_a_caffe_that_cannot_use_it_stops_before_any_step(tmp_path):
    import sys

    import pytest

    probe = subprocess.run([sys.executable, "-c", "import caffe; caffe.set_device(0); caffe.set_mode_gpu()"],
                           capture_output=True, timeout=60)
    if probe.returncode == 0:
        pytest.skip("this Caffe can use GPU 0")
    run_dir = tmp_path / "run"
    env = dict(os.environ, EXP="demo", RUN_DIR=str(run_dir), GPU="0", DSRG_SKIP_SETUP="1")
    done = subprocess.run(["bash", str(REPO / "run.sh"), "data"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("[run] ERROR: GPU=0, but the Caffe in ") and "CAFFE_GPU=1 bash tools/setup.sh" in last
    assert "Aborted" not in done.stdout + done.stderr
    assert not (run_dir / ".done").exists() and not list((run_dir / "data").iterdir())
