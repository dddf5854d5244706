"""tools/slurm/ and tools/check_slurm.sh without a cluster: the scripts parse, --help works, submit.sh's
chain (dependencies, arrays) as --dry-run prints it, and a job's shard from Slurm's array variables.
The cluster itself is checked by tools/check_slurm.sh (docs/scaling.md), not here."""
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = [REPO / "tools" / "slurm" / "submit.sh", REPO / "tools" / "slurm" / "run_steps.sbatch",
           REPO / "tools" / "check_slurm.sh"]


def bash(*args, **environ):
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("SLURM_") and key not in ("WORKERS", "DSRG_SHARD", "OPENBLAS_NUM_THREADS",
                                                            "OMP_NUM_THREADS", "PASCAL_DIR")}
    return subprocess.run(["bash", *map(str, args)], env={**env, **environ}, capture_output=True, text=True,
                          timeout=60, cwd=REPO)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_the_scripts_parse_and_use_strict_mode(script):
    assert bash("-n", script).returncode == 0
    assert "set -euo pipefail" in script.read_text() or "set -Eeuo pipefail" in script.read_text()


@pytest.mark.parametrize("script", [SCRIPTS[0], SCRIPTS[2]], ids=lambda path: path.name)
def test_help(script):
    done = bash(script, "--help")
    assert done.returncode == 0 and "--shards" in done.stdout
    assert bash(script, "--bogus").returncode == 2


def test_submit_dry_run_prints_the_chain(tmp_path):
    done = bash(REPO / "tools" / "slurm" / "submit.sh", "--dry-run", "--shards", "3", "--", "--partition=gpu",
                EXP="demo", RUN_DIR=str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr
    calls = [line for line in done.stderr.splitlines() if line.startswith("sbatch ")]
    assert len(calls) == 5 and all("--partition=gpu" in call for call in calls)
    assert calls[0].endswith("run_steps.sbatch setup data prepare cues stage1 seeds ")
    assert "--dependency=afterok:\\<train\\>" in calls[1] and "--array=0-2" in calls[1]
    assert calls[2].endswith("run_steps.sbatch pseudo stage2list stage2 ")
    assert "--array=0-2" in calls[3] and calls[4].endswith("test evaluate visualize summary ")
    assert done.stdout == "<finish>\n"
    refused = bash(REPO / "tools" / "slurm" / "submit.sh", "--dry-run", "--skip-training", EXP="demo",
                   RUN_DIR=str(tmp_path / "run"))
    assert refused.returncode == 1
    assert refused.stderr == f"submit.sh: --skip-training: no {tmp_path / 'run'}/stage1/final.caffemodel\n"


def test_an_array_task_runs_its_shard_with_one_blas_thread(tmp_path):
    (tmp_path / "run.sh").write_text('echo "$DSRG_SHARD|${OPENBLAS_NUM_THREADS:-}|$WORKERS|$*"\n')
    job = REPO / "tools" / "slurm" / "run_steps.sbatch"
    task = bash(job, "pseudo", DSRG_REPO=str(tmp_path), SLURM_ARRAY_TASK_ID="2", SLURM_ARRAY_TASK_MAX="3")
    assert task.stdout == "2/4|1|1|pseudo\n", task.stderr
    task = bash(job, "test", DSRG_REPO=str(tmp_path), SLURM_ARRAY_TASK_ID="0", SLURM_ARRAY_TASK_COUNT="2",
                SLURM_CPUS_PER_TASK="4")
    assert task.stdout == "0/2|4|1|test\n"
    single = bash(job, "stage2", DSRG_REPO=str(tmp_path))
    assert single.stdout == "||1|stage2\n"
