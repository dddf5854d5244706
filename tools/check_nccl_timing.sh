#!/usr/bin/env bash
# The demo's stage 1 on one GPU, ITERS iterations through the plain path (tools/train.py --gpu GPU) and
# ITERS through the multi-GPU path with one process (--gpus GPU: a spawned solver process joined by
# NCCL), then both runs' seconds per iteration side by side (from each run's train_done.json; both
# include one snapshot and one log row at the end). Needs a GPU and a Caffe built with CUDA and NCCL
# (CAFFE_GPU=1 bash tools/setup.sh); see docs/multi-gpu.md.
#
#   bash tools/check_nccl_timing.sh [ITERS [GPU]]      defaults: 40 iterations, GPU 0
#
# RUN_DIR (default runs/nccl-timing) gets the demo's data and prototxts first (run.sh steps data and
# prepare, with the synthetic generator's cues, so that no CAM net is trained), then timing-plain/ and
# timing-nccl/, emptied before each run. DSRG_SKIP_SETUP defaults to 1 here (run.sh leaves the
# environment alone). Exits non-zero when either run fails.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=$REPO/.venv/bin/python
ITERS=${1:-40}
GPU=${2:-0}
RUN_DIR=${RUN_DIR:-$REPO/runs/nccl-timing}
[[ $ITERS =~ ^[1-9][0-9]*$ && $GPU =~ ^[0-9]+$ ]] || { echo "usage: $0 [ITERS [GPU]]" >&2; exit 2; }

EXP=demo RUN_DIR=$RUN_DIR GPU=$GPU CUES=generator DSRG_SKIP_SETUP=${DSRG_SKIP_SETUP:-1} \
  bash "$REPO/run.sh" data prepare

# train NAME ARGS...: stage 1 for ITERS iterations into RUN_DIR/NAME with the device arguments ARGS.
train() {
  local name=$1; shift
  rm -rf "${RUN_DIR:?}/$name"
  "$PY" "$REPO/tools/train.py" --solver "$RUN_DIR/prototxt/stage1_solver.prototxt" --out "$RUN_DIR/$name" \
    --iters "$ITERS" --log-every "$ITERS" --snapshot-every "$ITERS" --no-progress "$@"
}
train timing-plain --gpu "$GPU"
train timing-nccl --gpus "$GPU"

"$PY" - "$RUN_DIR" "$ITERS" "$GPU" <<'PY'
import json
import sys
from pathlib import Path

run_dir, iters, gpu = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
plain, nccl = (json.loads((run_dir / name / "train_done.json").read_text())["seconds_per_iteration"]
               for name in ("timing-plain", "timing-nccl"))
print(f"demo stage 1, {iters} iterations on GPU {gpu}: seconds per iteration")
print(f"  {f'plain (--gpu {gpu})':<30} {plain:.4f}")
print(f"  {f'NCCL, 1 process (--gpus {gpu})':<30} {nccl:.4f}  ({nccl / plain:.2f} x plain)")
PY
