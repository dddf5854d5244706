# The step runner of the machine checks (tools/check_image.sh, tools/check_slurm.sh), sourced by them
# after they set CHECK_NAME (the log prefix) and CHECK_DIR (their folder of logs and figures).
mkdir -p "$CHECK_DIR/logs"
SUMMARY=$CHECK_DIR/summary.txt
: >"$SUMMARY"
say() { printf '[%s] %s\n' "$CHECK_NAME" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$CHECK_NAME" "$*" >&2; exit 1; }
record() { printf '%s\n' "$*" | tee -a "$SUMMARY" >&2; }

# Run step $1 with its output in logs/$1.log; a failure names the step, the exit status and the log.
timed_step() {
  local name=$1; shift
  local log=$CHECK_DIR/logs/$name.log started=$SECONDS status=0
  say "step $name (log: $log)"
  "$@" >"$log" 2>&1 || status=$?
  if ((status != 0)); then
    tail -n 30 "$log" >&2 || true
    die "step $name failed with exit status $status (full log: $log)"
  fi
  record "$name: $((SECONDS - started)) s"
}
