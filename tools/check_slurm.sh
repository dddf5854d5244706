#!/usr/bin/env bash
# Check tools/slurm/ on this machine: a one-node Slurm cluster on loopback runs the demo's pseudo and test
# steps as arrays (tools/slurm/submit.sh --skip-training), and their label maps must be byte-identical to
# those of a single-process run (root, Debian 12, Debian's mirror reachable):
#
#   sudo bash tools/check_slurm.sh [--run-dir DIR] [--shards N] [--keep-cluster]
#
#   1. packages   Debian's slurm-wlm and munge (apt-get; skipped when slurmctld, slurmd and munged exist)
#   2. reference  a demo run folder with stages 1 and 2 trained and pseudo_labels, val_stage1, val_stage2
#                 made by one process: DIR (--run-dir), else `bash run.sh` up to step test with WORKERS=1
#                 and tiny settings (20 + 8 images, 3 iterations a stage) in $CHECK_DIR/reference
#   3. cluster    munged, slurmctld and slurmd on 127.0.0.1 with a generated slurm.conf in $CHECK_DIR/slurm
#                 (NodeName=localhost CPUs=<cores>, ports 16817/16818, no accounting, no cgroups)
#   4. slurm      a copy of the run folder without those outputs; submit.sh --skip-training --shards N
#                 (default 2): two arrays of N tasks, then the finish job (merge checks, evaluation)
#   5. compare    the PNGs of pseudo_labels, val_stage1 and val_stage2, byte for byte, and the same names
#
# The daemons are stopped at exit, on failure too (--keep-cluster leaves them running). Logs and
# figures go to $CHECK_DIR (default /var/tmp/dsrg-check-slurm.XXXXXX); a failure names the step and its
# log. The last line says whether the outputs are identical and how long the Slurm part took.
set -Eeuo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_DIR_GIVEN=
SHARDS=2
KEEP_CLUSTER=0
while (($#)); do
  case $1 in
    --run-dir) RUN_DIR_GIVEN=${2:?--run-dir needs a folder}; shift ;;
    --shards) SHARDS=${2:?--shards needs a number}; shift ;;
    --keep-cluster) KEEP_CLUSTER=1 ;;
    -h | --help) sed -n '2,/^set -Eeuo pipefail$/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "check_slurm.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ $SHARDS =~ ^[1-9][0-9]*$ ]] || { echo "check_slurm.sh: --shards expects an integer ≥ 1" >&2; exit 2; }

CHECK_DIR=${CHECK_DIR:-$(mktemp -d /var/tmp/dsrg-check-slurm.XXXXXX)}
CHECK_NAME=check-slurm
# shellcheck source=tools/check_steps.sh
source "$REPO/tools/check_steps.sh"

((EUID == 0)) || die "run as root (it installs packages and starts the Slurm and MUNGE daemons)"
OUTPUTS=(pseudo_labels val_stage1 val_stage2)

install_packages() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends slurm-wlm munge
}

# The demo run as one process, up to the test predictions, with tiny settings.
DEMO_ENV=(EXP=demo DEMO_TRAIN=20 DEMO_VAL=8 STAGE1_ITERS=3 STAGE2_ITERS=3 CAM_ITERS=3 LOG_EVERY=1 GPU=)
make_reference() {
  env -u PASCAL_DIR -u CUES -u INIT_WEIGHTS -u DSRG_SHARD "${DEMO_ENV[@]}" RUN_DIR="$REFERENCE" WORKERS=1 \
    DSRG_SKIP_SETUP=1 bash "$REPO/run.sh" setup data prepare cues stage1 seeds pseudo stage2list stage2 test
}

SLURM_DIR=$CHECK_DIR/slurm
DAEMON_PIDS=()
stop_cluster() {
  local pid
  for pid in "${DAEMON_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${DAEMON_PIDS[@]}"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  done
  DAEMON_PIDS=()
}
# Cancel the jobs still queued or running and let their slurmstepd report to slurmd before the
# daemons go (a slurmstepd left without its slurmd would wait for it).
cancel_jobs() {
  local _
  scancel --full --quiet --user="$(id -un)" 2>/dev/null || return 0
  for _ in $(seq 60); do
    [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break
    sleep 1
  done
}
cleanup() {
  local status=$?
  if ((KEEP_CLUSTER == 0 && ${#DAEMON_PIDS[@]})); then
    say "cancelling what is left of the jobs and stopping the cluster's daemons"
    cancel_jobs
    stop_cluster
  fi
  return "$status"
}
trap cleanup EXIT

# pid_of FILE: the pid a daemon wrote, waiting up to 20 s for it.
pid_of() {
  local _
  for _ in $(seq 40); do
    [[ -s $1 ]] && { cat "$1"; return 0; }
    sleep 0.5
  done
  return 1
}

start_cluster() {
  mkdir -p "$SLURM_DIR"/{munge,spool,state}
  chmod 700 "$SLURM_DIR/munge"
  dd if=/dev/urandom of="$SLURM_DIR/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$SLURM_DIR/munge/munge.key"
  munged --force --key-file="$SLURM_DIR/munge/munge.key" --socket="$SLURM_DIR/munge/munge.socket" \
    --pid-file="$SLURM_DIR/munge/munged.pid" --log-file="$SLURM_DIR/munge/munged.log" \
    --seed-file="$SLURM_DIR/munge/munged.seed"
  DAEMON_PIDS+=("$(pid_of "$SLURM_DIR/munge/munged.pid")") || { cat "$SLURM_DIR/munge/munged.log"; return 1; }
  cat >"$SLURM_DIR/slurm.conf" <<CONF
ClusterName=dsrgcheck
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SLURM_DIR/munge/munge.socket
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MinJobAge=3600
SlurmctldPidFile=$SLURM_DIR/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/slurmd.pid
SlurmdSpoolDir=$SLURM_DIR/spool
StateSaveLocation=$SLURM_DIR/state
SlurmctldLogFile=$SLURM_DIR/slurmctld.log
SlurmdLogFile=$SLURM_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=check Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF=$SLURM_DIR/slurm.conf
  slurmctld -i -f "$SLURM_CONF"
  DAEMON_PIDS+=("$(pid_of "$SLURM_DIR/slurmctld.pid")") || { tail "$SLURM_DIR/slurmctld.log"; return 1; }
  slurmd -f "$SLURM_CONF" -N localhost
  DAEMON_PIDS+=("$(pid_of "$SLURM_DIR/slurmd.pid")") || { tail "$SLURM_DIR/slurmd.log"; return 1; }
  local _
  for _ in $(seq 60); do
    sinfo -h -n localhost -o '%T' 2>/dev/null | grep -qE '^idle' && { sinfo; return 0; }
    sleep 1
  done
  sinfo -N -l || true
  tail -n 20 "$SLURM_DIR/slurmctld.log" "$SLURM_DIR/slurmd.log"
  return 1
}

# The reference run folder, copied without the outputs the arrays make and without their steps' marks.
copy_run() {
  rm -rf "$SLURM_RUN"
  cp -a "$REFERENCE" "$SLURM_RUN"
  local output
  for output in "${OUTPUTS[@]}"; do rm -rf "${SLURM_RUN:?}/$output"; done
  rm -f "$SLURM_RUN"/.done/{pseudo,test,evaluate,visualize,summary}
}

# Submit the chain and wait for its finish job; any job that failed fails the step.
submit_and_wait() {
  local finish state _
  finish=$(env -u PASCAL_DIR -u CUES -u INIT_WEIGHTS "${DEMO_ENV[@]}" RUN_DIR="$SLURM_RUN" DSRG_SKIP_SETUP=1 \
    bash "$REPO/tools/slurm/submit.sh" --skip-training --shards "$SHARDS" | tail -n 1)
  say "finish job: $finish"
  while :; do
    state=$(scontrol show job "$finish" 2>/dev/null | grep -oE 'JobState=[A-Z_]+' | head -n 1 | cut -d= -f2)
    case $state in
      COMPLETED) break ;;
      PENDING | RUNNING | CONFIGURING | COMPLETING | "") sleep 2 ;;
      *) break ;;
    esac
  done
  squeue -a -o '%i %j %T %r' || true
  scontrol show job | grep -E 'JobId=|JobName=|JobState=' || true
  local logs=("$SLURM_RUN"/logs/slurm/*.out)
  tail -n 5 "${logs[@]}" || true
  [[ $state == COMPLETED ]] || { echo "finish job $finish ended $state"; return 1; }
}

# Every PNG of the outputs byte-identical between the reference and the Slurm run.
compare_outputs() {
  local output differ=0 names
  for output in "${OUTPUTS[@]}"; do
    names=$(cd "$REFERENCE/$output" && ls ./*.png | wc -l)
    diff <(cd "$REFERENCE/$output" && ls ./*.png) <(cd "$SLURM_RUN/$output" && ls ./*.png) ||
      { echo "$output: other file names"; differ=1; continue; }
    (cd "$REFERENCE/$output" && for png in ./*.png; do cmp "$png" "$SLURM_RUN/$output/$png" || exit 1; done) ||
      differ=1
    echo "$output: $names label maps, byte-identical: $( ((differ)) && echo no || echo yes)"
  done
  return "$differ"
}

record "check of $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "an unversioned tree") in $CHECK_DIR"
if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
  record "packages: slurmctld, slurmd and munged present"
else
  timed_step packages install_packages
fi
record "slurm: $(slurmctld -V 2>/dev/null || echo '?'), $(munged -V 2>/dev/null | head -n 1 || echo 'munge ?')"
if [[ -n $RUN_DIR_GIVEN ]]; then
  REFERENCE=$(cd "$RUN_DIR_GIVEN" && pwd)
  for output in "${OUTPUTS[@]}" stage1/final.caffemodel stage2/final.caffemodel; do
    [[ -e $REFERENCE/$output ]] || die "--run-dir $REFERENCE has no $output (run bash run.sh up to step test first)"
  done
  record "reference: $REFERENCE (given)"
else
  REFERENCE=$CHECK_DIR/reference
  timed_step reference make_reference
fi
SLURM_RUN=$CHECK_DIR/slurm-run
copy_run
timed_step cluster start_cluster
started=$SECONDS
timed_step slurm submit_and_wait
slurm_seconds=$((SECONDS - started))
timed_step compare compare_outputs
cat "$CHECK_DIR/logs/compare.log" >&2
record "summary: $SUMMARY"
echo "Slurm arrays of $SHARDS: pseudo_labels, val_stage1, val_stage2 byte-identical to one process; the Slurm jobs took ${slurm_seconds} s"
