#!/usr/bin/env bash
# Submit an experiment as a chain of Slurm jobs on a shared run folder (docs/scaling.md):
#
#   EXP=voc12-vgg16 PASCAL_DIR=/shared/voc12 RUN_DIR=/shared/runs/vgg16 \
#     bash tools/slurm/submit.sh [--shards N] [--skip-training] [--dry-run] [-- SBATCH_OPTION ...]
#
#   1. train   one job: run.sh setup data prepare cues stage1 seeds
#   2. pseudo  an array of N tasks, task K: run.sh pseudo with DSRG_SHARD=K/N          (after 1)
#   3. stage2  one job: run.sh pseudo stage2list stage2 (pseudo: the merge check)       (after 2)
#   4. test    an array of N tasks: run.sh test, shard K of N                          (after 3)
#   5. finish  one job: run.sh test evaluate visualize summary (test: the merge check) (after 4)
#
# Each job starts only when the one before it has succeeded (--dependency=afterok); the jobs run
# tools/slurm/run_steps.sbatch with this environment (sbatch's --export=ALL), and write their logs to
# RUN_DIR/logs/slurm/. --shards: array tasks per inference step (default: WORKERS when set, else 4).
# --skip-training: RUN_DIR has stage1/final.caffemodel and stage2/final.caffemodel already; only the
# two arrays (at once) and then the finish job, run.sh pseudo test evaluate visualize summary.
# Options after -- go to every sbatch call (a partition, --gres=gpu:1 with GPU=0, --cpus-per-task,
# --time). --dry-run prints the sbatch calls instead of making them. The last line printed is the
# finish job's id.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARDS=${WORKERS:-4}
SKIP_TRAINING=0
DRY_RUN=0
SBATCH_OPTIONS=()
usage() { sed -n '2,/^set -euo pipefail$/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }
while (($#)); do
  case $1 in
    --shards) SHARDS=${2:-}; shift ;;
    --skip-training) SKIP_TRAINING=1 ;;
    --dry-run) DRY_RUN=1 ;;
    -h | --help) usage; exit 0 ;;
    --) shift; SBATCH_OPTIONS=("$@"); break ;;
    *) echo "submit.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ $SHARDS =~ ^[1-9][0-9]*$ ]] || { echo "submit.sh: --shards expects an integer ≥ 1, got '$SHARDS'" >&2; exit 2; }
die() { printf 'submit.sh: %s\n' "$*" >&2; exit 1; }

# The experiment's settings as run.sh resolves them (RUN_DIR above all); an error stops here, not in a job.
PY=$REPO/.venv/bin/python
[[ -x $PY ]] || PY=python3
settings=$("$PY" "$REPO/tools/resolve_settings.py" --no-json) || exit 1
eval "$settings"
if ((SKIP_TRAINING)); then
  for model in stage1 stage2; do
    [[ -f $RUN_DIR/$model/final.caffemodel ]] || die "--skip-training: no $RUN_DIR/$model/final.caffemodel"
  done
fi
((DRY_RUN)) || command -v sbatch >/dev/null || die "sbatch not found: run this on a Slurm submit node"
LOGS=$RUN_DIR/logs/slurm
((DRY_RUN)) || mkdir -p "$LOGS"
export DSRG_REPO=$REPO EXP RUN_DIR
unset DSRG_SHARD

JOB_COUNT=0
# submit NAME DEPENDENCY ARRAY STEP...: the job's id (DEPENDENCY: ids joined by ':', or empty).
submit() {
  local name=$1 after=$2 array=$3 options=() output="$LOGS/%x-%j.out" id
  shift 3
  [[ -n $after ]] && options+=(--dependency="afterok:$after" --kill-on-invalid-dep=yes)
  if [[ -n $array ]]; then
    options+=(--array="$array")
    output="$LOGS/%x-%A_%a.out"
  fi
  local call=(sbatch --parsable --job-name="dsrg-$EXP-$name" --output="$output" "${options[@]}"
              "${SBATCH_OPTIONS[@]}" "$REPO/tools/slurm/run_steps.sbatch" "$@")
  JOB_COUNT=$((JOB_COUNT + 1))
  if ((DRY_RUN)); then
    printf '%q ' "${call[@]}" >&2
    printf '\n' >&2
    id="<$name>"
  else
    id=$("${call[@]}") || die "sbatch failed for job $name"
    id=${id%%;*}
  fi
  printf 'submit.sh: %-7s job %s: run.sh %s%s\n' "$name" "$id" "$*" "${array:+ (array $array)}" >&2
  LAST_JOB=$id
}

ARRAY=0-$((SHARDS - 1))
if ((SKIP_TRAINING)); then
  submit pseudo "" "$ARRAY" pseudo
  pseudo=$LAST_JOB
  submit test "" "$ARRAY" test
  submit finish "$pseudo:$LAST_JOB" "" pseudo test evaluate visualize summary
else
  submit train "" "" setup data prepare cues stage1 seeds
  submit pseudo "$LAST_JOB" "$ARRAY" pseudo
  submit stage2 "$LAST_JOB" "" pseudo stage2list stage2
  submit test "$LAST_JOB" "$ARRAY" test
  submit finish "$LAST_JOB" "" test evaluate visualize summary
fi
echo "submit.sh: $JOB_COUNT jobs for EXP=$EXP, $SHARDS shards per inference step, run folder $RUN_DIR (logs: $LOGS)" >&2
echo "$LAST_JOB"
