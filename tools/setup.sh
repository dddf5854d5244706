#!/usr/bin/env bash
# One-time (and idempotent) set-up: apt packages, .venv with the pinned Python dependencies, Caffe
# (cached outside the clone, see caffe/build.sh), the CRF extension and the training packages.
# Every step is skipped when its inputs have not changed since it last succeeded.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$REPO/.venv
PYTHON_FOR_VENV=${PYTHON_FOR_VENV:-python3}

say() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# Hash of files (or of a folder's files, build outputs excluded); names a stamp in the venv.
inputs_hash() {
  (cd "$REPO" && find "$@" -type f ! -name '*.so' ! -name '*.cpp' ! -path '*/build/*' ! -path '*.egg-info*' \
    ! -path '*__pycache__*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
}

install_apt_packages() {
  local wanted missing=()
  mapfile -t wanted < <(grep -v '^\s*#' "$REPO/tools/apt-packages.txt" | sed '/^\s*$/d')
  local package
  for package in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
  done
  ((${#missing[@]} == 0)) && return
  local sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null || die "apt packages missing (${missing[*]}) and not root without sudo"
    sudo=(sudo)
  fi
  say "apt-get install ${missing[*]}"
  local log
  log=$(mktemp /tmp/dsrg-apt.XXXXXX.log)
  if ! { "${sudo[@]}" apt-get update && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y \
      --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "apt-get install failed (full log: $log)"
  fi
}

# Run `pip ...` only when the stamp for `key` is missing; pip output goes to a log shown on failure.
pip_step() {
  local name=$1 key=$2; shift 2
  local stamp=$VENV/.dsrg-stamps/$name-$key
  [[ -f $stamp ]] && return
  say "$name"
  local log
  log=$(mktemp /tmp/dsrg-pip.XXXXXX.log)
  if ! "$VENV/bin/python" -m pip "$@" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "$name failed (full log: $log)"
  fi
  rm -f "$VENV/.dsrg-stamps/$name-"*
  mkdir -p "$VENV/.dsrg-stamps"
  touch "$stamp"
}

main() {
  install_apt_packages
  if [[ ! -x $VENV/bin/python ]]; then
    say "creating $VENV with $($PYTHON_FOR_VENV --version)"
    "$PYTHON_FOR_VENV" -m venv "$VENV" || die "could not create $VENV"
  fi
  pip_step python-dependencies "$(inputs_hash python-dependencies.txt)" \
    install --disable-pip-version-check -r "$REPO/python-dependencies.txt"
  bash "$REPO/caffe/build.sh" "$VENV"
  pip_step crf-extension "$(inputs_hash CRF)" \
    install --disable-pip-version-check --no-build-isolation --no-deps "$REPO/CRF"
  pip_step training-packages "$(inputs_hash training/pyproject.toml)" \
    install --disable-pip-version-check --no-build-isolation --no-deps -e "$REPO/training"
  "$VENV/bin/python" -c "import caffe, pylayers, krahenbuhl2013" \
    || die "the environment is incomplete: .venv/bin/python cannot import caffe, pylayers and krahenbuhl2013"
  say "environment ready: $VENV"
}

main "$@"
