#!/usr/bin/env bash
# The project's test command: sets everything up on first use (tools/setup.sh), then runs pytest.
# Extra arguments go to pytest. "No tests collected" (pytest exit 5) is a failure, never a pass.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$REPO/tools/setup.sh"
cd "$REPO"
status=0
.venv/bin/python -m pytest tests "$@" || status=$?
if ((status == 5)); then
  echo "[test] ERROR: pytest collected no tests: the suite is missing or filtered away" >&2
  exit 1
fi
exit "$status"
