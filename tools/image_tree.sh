#!/usr/bin/env bash
# Helpers of the Dockerfile's two stages (not needed outside the image build):
#
#   bash tools/image_tree.sh runtime-packages OUT   the Debian packages that own the shared libraries the
#                                                   built environment loads (Caffe, pycaffe, the CRF
#                                                   extension, every extension module in .venv, the
#                                                   interpreter), one per line, into OUT
#   bash tools/image_tree.sh prune                  delete what only building needed: Caffe's build trees,
#                                                   source packages and logs, the CUDA compiler, headers
#                                                   and static libraries, the CRF build folder
#
# Both read DSRG_CACHE_DIR (the cache caffe/build.sh fills) and act on this checkout's .venv.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE_ROOT=${DSRG_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dsrg}

die() { printf '[image] ERROR: %s\n' "$*" >&2; exit 1; }

# The Caffe install prefix .venv's pycaffe points at (caffe/build.sh writes it into dsrg-caffe.pth).
caffe_prefix() {
  local pth
  pth=$(find "$REPO/.venv/lib" -name dsrg-caffe.pth -print -quit)
  [[ -n $pth ]] || die "no dsrg-caffe.pth in $REPO/.venv: run tools/setup.sh first"
  local pycaffe_dir
  pycaffe_dir=$(head -n 1 "$pth")
  (cd "$pycaffe_dir/../../.." && pwd)
}

runtime_packages() {
  local out=$1 prefix
  prefix=$(caffe_prefix)
  local objects=("$prefix/bin/caffe" "$(realpath "$REPO/.venv/bin/python")")
  mapfile -t -O "${#objects[@]}" objects < <(find "$prefix/lib" "$REPO/.venv/lib" -name '*.so*' -type f)
  local libraries missing bundled resolved
  resolved=$(for object in "${objects[@]}"; do ldd "$object" 2>/dev/null; done)
  # ldd prints "name => path (address)"; a library no path resolves to is an error, except libcuda
  # (the driver, which the host's NVIDIA container runtime provides and cudart loads on demand) and
  # the libraries wheels bundle (numpy.libs/, scipy.libs/ ...), which ldd cannot resolve when it reads
  # one of them alone: the loader finds them through the extension module that loads them.
  bundled=$(printf '%s\n' "${objects[@]}" | xargs -n 1 basename | sort -u)
  missing=$(awk '/=> not found/ {print $1}' <<<"$resolved" \
    | sort -u | grep -v '^libcuda\.so' | grep -vxF -f <(echo "$bundled") || true)
  [[ -z $missing ]] || die "libraries no path resolves to: $(echo $missing)"
  libraries=$(awk '$2 == "=>" && $3 ~ /^\// {print $3}' <<<"$resolved" | sort -u | xargs -r realpath | sort -u)
  # Libraries under the cache (cuBLAS, cuRAND, cudart from PyPI) or bundled by wheels belong to no package.
  local tmp
  tmp=$(mktemp)
  for library in $libraries; do
    dpkg-query -S "$library" 2>/dev/null || dpkg-query -S "${library/#\/usr\/lib/\/lib}" 2>/dev/null || true
  done | cut -d: -f1 | sort -u >"$tmp"
  [[ -s $tmp ]] || die "no Debian package owns any library of the environment (is Caffe built?)"
  mv "$tmp" "$out"
}

prune() {
  rm -rf "$CACHE_ROOT"/work-* "$CACHE_ROOT"/staging.* "$CACHE_ROOT/downloads" "$CACHE_ROOT/logs"
  local prefix
  prefix=$(caffe_prefix)
  rm -rf "$prefix/include" "$prefix/share"
  find "$prefix/lib" -name '*.a' -delete
  # The CUDA toolkit from the wheels keeps only its runtime library; cuBLAS/cuRAND keep their libraries.
  local toolkit
  for toolkit in "$CACHE_ROOT"/cuda-toolkit-*/nvidia/cu13; do
    [[ -d $toolkit ]] || continue
    rm -rf "$toolkit/bin" "$toolkit/nvvm" "$toolkit/include" "$toolkit/targets" "$toolkit/lib/cmake"
    find "$toolkit/lib" \( -name '*.a' -o -name 'libnvvm*' \) -delete
  done
  find "$CACHE_ROOT" -path '*/nvidia/*' -type d -name include -prune -exec rm -rf {} +
  rm -rf "$CACHE_ROOT"/nvidia-wheels-*/merged/include
  rm -rf "$REPO/CRF/build" "$HOME/.cache/pip"
}

case ${1:-} in
  runtime-packages) [[ $# == 2 ]] || die "usage: $0 runtime-packages OUT"; runtime_packages "$2" ;;
  prune) prune ;;
  *) die "usage: $0 runtime-packages OUT | prune" ;;
esac
