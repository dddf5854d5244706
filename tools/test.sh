#!/usr/bin/env bash
# The project's test command: sets everything up on first use (tools/setup.sh), then runs pytest.
# Extra arguments go to pytest. "No tests collected" (pytest exit 5) is a failure, never a pass.
# DSRG_SKIP_SETUP=1 skips tools/setup.sh (the Docker image: its environment is built in and has no
# compilers left to rebuild it).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ ${DSRG_SKIP_SETUP:-0} == 1 ]]; then
  echo "[test] DSRG_SKIP_SETUP=1: not running tools/setup.sh" >&2
else
  bash "$REPO/tools/setup.sh"
fi
cd "$REPO"
status=0
.venv/bin/python -m pytest tests "$@" || status=$?
if ((status == 5)); then
  echo "[test] ERROR: pytest collected no tests: the suite is missing or filtered away" >&2
  exit 1
fi
exit "$status"
