#!/usr/bin/env bash
# Build BVLC Caffe 1.0 for DSRG, cached outside the clone, and expose pycaffe to a virtualenv.
#
#   bash caffe/build.sh [VENV]          (VENV defaults to <repo>/.venv)
#
# Source: Debian's own source package caffe 1.0.0+git20180821.99bd997-8 (bullseye), fetched with
# `apt-get source` through a temporary sources list (the system's apt sources are not touched; apt
# verifies the checksums against the signed bullseye index). dpkg-source applies Debian's patch
# series; then caffe/patches/*.patch (ours, in name order) are applied and the layer sources in
# caffe/layers/ (Interp, SegAccuracy) are copied into the tree.
#
# The installed result lives in $DSRG_CACHE_DIR/caffe-<hash> (default ~/.cache/dsrg), where the hash
# covers the source version, this script, every patch and layer source, the build options and the
# versions of the interpreter, numpy and the system libraries it compiles against. A second run with
# nothing changed only re-links the virtualenv (editing this script or a patch gives every option set,
# the CPU build's too, a new entry). The build tree is kept per option set, and the source is
# synchronised into it file by file, so that a changed layer recompiles only what depends on it.
#
# Environment:
#   CAFFE_GPU=1           build with CUDA (cuBLAS/cuRAND from PyPI's NVIDIA wheels), cuDNN off
#   CAFFE_NCCL            with CAFFE_GPU=1: 1 (default) builds with NCCL, taken from NVIDIA's PyPI wheel
#                         (NVIDIA_NCCL_WHEEL below; nccl.h and libnccl.so.2 gathered into the cache like
#                         cuBLAS), which pycaffe's caffe.NCCL and tools/train.py --gpus need (one process
#                         per GPU; see docs/multi-gpu.md); 0 builds without. The CPU build never has it.
#   CAFFE_CUDA_ARCH       "80 90" by default (sm_80, sm_90)
#   CAFFE_CUDA_LIBS_DIR   a folder with cuBLAS/cuRAND (include/ and lib/) instead of the wheels
#   CAFFE_CUDA_TOOLKIT    where nvcc and the CUDA runtime come from: "system" (the nvcc on PATH), "wheels"
#                         (NVIDIA's PyPI wheels of nvcc, cudart, CCCL, CRT and NVVM, installed into the
#                         cache and assembled into a toolkit root), or "auto" (default: system when nvcc
#                         is on PATH, else wheels). The Docker image uses the wheels.
#   CAFFE_JOBS            parallel compile jobs (default: number of cores)
#   DSRG_CACHE_DIR        cache root (default ${XDG_CACHE_HOME:-~/.cache}/dsrg)
#
# Sourced (`source caffe/build.sh`), the script only defines its settings and functions and builds
# nothing: `install_nccl_library` alone, say, fetches NCCL and lays out $NCCL_DIR/{include,lib}.
set -euo pipefail

readonly CAFFE_SOURCE_PACKAGE=caffe
readonly CAFFE_SOURCE_VERSION=1.0.0+git20180821.99bd997-8
readonly CAFFE_SOURCE_DIRNAME=caffe-1.0.0+git20180821.99bd997
readonly BULLSEYE_DEB_SRC="deb-src http://deb.debian.org/debian bullseye main contrib"
readonly NVIDIA_WHEELS=(nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35)
readonly NVIDIA_TOOLKIT_WHEELS=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85
  nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-culibos==13.0.85)
readonly NVIDIA_NCCL_WHEEL=nvidia-nccl-cu13==2.32.6

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
VENV=$(realpath -m "${1:-$REPO/.venv}")
PYTHON=$VENV/bin/python
CACHE_ROOT=${DSRG_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dsrg}
CAFFE_GPU=${CAFFE_GPU:-0}
CAFFE_CUDA_ARCH=${CAFFE_CUDA_ARCH:-80 90}
CAFFE_CUDA_TOOLKIT=${CAFFE_CUDA_TOOLKIT:-auto}
CAFFE_NCCL=${CAFFE_NCCL:-1}
CAFFE_JOBS=${CAFFE_JOBS:-$(nproc)}
LOG_DIR=$CACHE_ROOT/logs
mkdir -p "$CACHE_ROOT" "$LOG_DIR"
LOG=$LOG_DIR/caffe-build-$(date +%Y%m%d-%H%M%S).log

say() { printf '[caffe] %s\n' "$*" >&2; }
die() { printf '[caffe] ERROR: %s\n' "$*" >&2; exit 1; }

# Run a build step with its output in the log; on failure show the tail and the log's path.
step() {
  local what=$1; shift
  say "$what"
  if ! "$@" >>"$LOG" 2>&1; then
    tail -n 40 "$LOG" >&2 || true
    die "step failed: $what (full log: $LOG)"
  fi
}

require_tools() {
  local missing=() tool
  for tool in apt-get dpkg-source cmake make g++ protoc patch sha256sum; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if [[ $CAFFE_GPU == 1 ]]; then
    command -v nvcc >/dev/null 2>&1 || missing+=(nvcc)
  fi
  ((${#missing[@]} == 0)) || die "missing tools: ${missing[*]} (tools/setup.sh installs the apt packages)"
  [[ -x $PYTHON ]] || die "no Python interpreter at $PYTHON (create the virtualenv first: bash tools/setup.sh)"
  "$PYTHON" -c "import numpy" 2>/dev/null || die "$PYTHON cannot import numpy (pip install -r python-dependencies.txt)"
}

# Everything the build result depends on, one line each; its hash names the cache entry.
build_fingerprint() {
  echo "source $CAFFE_SOURCE_PACKAGE $CAFFE_SOURCE_VERSION"
  echo "options gpu=$CAFFE_GPU"
  if [[ $CAFFE_GPU == 1 ]]; then
    echo "cuda arch=${CAFFE_CUDA_ARCH// /,} wheels=${NVIDIA_WHEELS[*]} cuda_libs=${CAFFE_CUDA_LIBS_DIR:-}"
    echo "nvcc $(nvcc --version | tail -n 1)"
    if [[ $CAFFE_NCCL == 1 ]]; then echo "nccl $NVIDIA_NCCL_WHEEL"; fi
  fi
  echo "python $("$PYTHON" -c 'import sys, numpy; print(sys.version.split()[0], numpy.__version__)')"
  dpkg-query -W -f='${Package} ${Version}\n' libprotobuf-dev libopencv-dev libboost-python-dev \
    libgoogle-glog-dev libhdf5-dev libopenblas-dev liblmdb-dev 2>/dev/null || true
  (cd "$HERE" && find build.sh patches layers -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
}

fetch_source() {
  local downloads=$CACHE_ROOT/downloads
  local dsc=$downloads/${CAFFE_SOURCE_PACKAGE}_${CAFFE_SOURCE_VERSION}.dsc
  if [[ -f $dsc ]]; then return; fi
  local apt_dir
  apt_dir=$(mktemp -d)
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/parts" "$downloads"
  echo "$BULLSEYE_DEB_SRC" >"$apt_dir/sources.list"
  local apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=$apt_dir/parts"
    -o "Dir::State::Lists=$apt_dir/lists")
  step "apt-get update (temporary bullseye deb-src list)" apt-get "${apt_opts[@]}" update
  download_source() { (cd "$downloads" && apt-get "${apt_opts[@]}" source --download-only \
    "$CAFFE_SOURCE_PACKAGE=$CAFFE_SOURCE_VERSION"); }
  step "apt-get source --download-only $CAFFE_SOURCE_PACKAGE=$CAFFE_SOURCE_VERSION" download_source
  rm -rf "$apt_dir"
  [[ -f $dsc ]] || die "apt-get source did not produce $dsc (full log: $LOG)"
}

# Unpack (Debian patches applied by dpkg-source), apply our patches and copy our layers.
prepare_source() {
  local dest=$1
  rm -rf "$dest"
  mkdir -p "$dest"
  step "dpkg-source -x (applies Debian's patch series)" \
    dpkg-source --no-check -x "$CACHE_ROOT/downloads/${CAFFE_SOURCE_PACKAGE}_${CAFFE_SOURCE_VERSION}.dsc" \
    "$dest/$CAFFE_SOURCE_DIRNAME"
  local patch_file
  for patch_file in "$HERE"/patches/*.patch; do
    step "patch $(basename "$patch_file")" patch -d "$dest/$CAFFE_SOURCE_DIRNAME" -p1 --forward -i "$patch_file"
  done
  step "copy project layers (Interp, SegAccuracy)" cp -r "$HERE/layers/." "$dest/$CAFFE_SOURCE_DIRNAME/"
}

# Copy files whose content changed into the persistent build source, keeping unchanged files' mtimes.
sync_tree() {
  local from=$1 to=$2
  mkdir -p "$to"
  "$PYTHON" - "$from" "$to" <<'PY'
import filecmp, os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
wanted = set()
for root, dirs, files in os.walk(src):
    rel = os.path.relpath(root, src)
    os.makedirs(os.path.join(dst, rel), exist_ok=True)
    for name in files:
        a, b = os.path.join(root, name), os.path.normpath(os.path.join(dst, rel, name))
        wanted.add(b)
        if not (os.path.exists(b) and filecmp.cmp(a, b, shallow=False)):
            shutil.copy2(a, b)
for root, dirs, files in os.walk(dst):
    for name in files:
        path = os.path.normpath(os.path.join(root, name))
        if path not in wanted:
            os.unlink(path)
PY
}

# pip install the wheels $2... into the cache folder $1 once (a .complete marker records success).
install_wheels_once() {
  local target=$1; shift
  [[ -f $target/.complete ]] && return
  rm -rf "$target"
  step "pip install $* into $target" "$PYTHON" -m pip install --no-deps --no-cache-dir --target "$target" "$@"
  touch "$target/.complete"
}

# CAFFE_CUDA_TOOLKIT=wheels (or auto without nvcc on PATH): NVIDIA's compiler and runtime wheels, laid
# out as the toolkit root nvcc.profile expects (targets/x86_64-linux/{include,lib}, lib64) with the
# unversioned library names the linker and CMake's FindCUDA look for; nvcc goes first on PATH, where
# FindCUDA finds the root. (Passing -DCUDA_TOOLKIT_ROOT_DIR instead makes FindCUDA's first configure
# drop the cuBLAS/cuRAND paths given next to it, which lie outside that root.)
use_cuda_toolkit_wheels() {
  case $CAFFE_CUDA_TOOLKIT in
    system) return ;;
    auto) command -v nvcc >/dev/null 2>&1 && return ;;
    wheels) ;;
    *) die "CAFFE_CUDA_TOOLKIT must be auto, system or wheels (got '$CAFFE_CUDA_TOOLKIT')" ;;
  esac
  local target
  target=$CACHE_ROOT/cuda-toolkit-$(echo "${NVIDIA_TOOLKIT_WHEELS[*]}" | sha256sum | cut -c1-12)
  install_wheels_once "$target" "${NVIDIA_TOOLKIT_WHEELS[@]}"
  local root=$target/nvidia/cu13 library
  [[ -x $root/bin/nvcc ]] || die "the wheels ${NVIDIA_TOOLKIT_WHEELS[*]} gave no $root/bin/nvcc"
  mkdir -p "$root/targets/x86_64-linux"
  ln -sfn ../../include "$root/targets/x86_64-linux/include"
  ln -sfn ../../lib "$root/targets/x86_64-linux/lib"
  ln -sfn lib "$root/lib64"
  for library in "$root"/lib/lib*.so.*; do
    ln -sf "$(basename "$library")" "$root/lib/$(basename "$library" | sed 's/\.so\..*/.so/')"
  done
  export PATH=$root/bin:$PATH
  say "CUDA toolkit from NVIDIA's wheels: $root ($(nvcc --version | tail -n 1))"
}

# The wheels $2... installed once into $CACHE_ROOT/nvidia-wheels-<hash of their names>, and the headers
# <stem>.h and libraries lib<stem>.so.* they hold (under nvidia/cu13/{include,lib}, or per-library folders
# such as nvidia/nccl/), for each stem (a glob: "cublas*") in the space-separated list $1, gathered into
# one include/ and lib/ in $WHEEL_LIBS_DIR, with the unversioned library names the linker wants beside the
# versioned ones the loader wants.
install_wheel_libraries() {
  local stems
  read -ra stems <<<"$1"
  shift
  local target
  target=$CACHE_ROOT/nvidia-wheels-$(echo "$*" | sha256sum | cut -c1-12)
  install_wheels_once "$target" "$@"
  WHEEL_LIBS_DIR=$target/merged
  rm -rf "$WHEEL_LIBS_DIR"
  mkdir -p "$WHEEL_LIBS_DIR/include" "$WHEEL_LIBS_DIR/lib"
  local stem header library
  for stem in "${stems[@]}"; do
    while IFS= read -r header; do ln -sf "$header" "$WHEEL_LIBS_DIR/include/"; done \
      < <(find "$target/nvidia" -path '*/include/*' -name "$stem.h")
    while IFS= read -r library; do
      ln -sf "$library" "$WHEEL_LIBS_DIR/lib/"
      ln -sf "$library" "$WHEEL_LIBS_DIR/lib/$(basename "$library" | sed 's/\.so\..*/.so/')"
    done < <(find "$target/nvidia" -name "lib$stem.so.*")
  done
}

install_cuda_libraries() {
  if [[ -n ${CAFFE_CUDA_LIBS_DIR:-} ]]; then
    CUDA_LIBS_DIR=$CAFFE_CUDA_LIBS_DIR
    return
  fi
  install_wheel_libraries "cublas* curand*" "${NVIDIA_WHEELS[@]}"
  CUDA_LIBS_DIR=$WHEEL_LIBS_DIR
  [[ -e $CUDA_LIBS_DIR/lib/libcublas.so && -e $CUDA_LIBS_DIR/lib/libcurand.so \
    && -e $CUDA_LIBS_DIR/include/cublas_v2.h ]] || die "cuBLAS/cuRAND not found in ${CUDA_LIBS_DIR%/merged}"
}

# NCCL from $NVIDIA_NCCL_WHEEL: nccl.h (which includes only CUDA's headers) and libnccl.so(.2) in
# $NCCL_DIR/{include,lib}. The image's pruning (tools/image_tree.sh) keeps lib/ and drops the headers.
install_nccl_library() {
  install_wheel_libraries "nccl" "$NVIDIA_NCCL_WHEEL"
  NCCL_DIR=$WHEEL_LIBS_DIR
  [[ -e $NCCL_DIR/lib/libnccl.so && -e $NCCL_DIR/lib/libnccl.so.2 && -e $NCCL_DIR/include/nccl.h ]] \
    || die "NCCL not found in ${NCCL_DIR%/merged}"
}

configure_and_build() {
  local source_dir=$1 build_dir=$2 prefix=$3
  local cmake_args=(
    -DCMAKE_BUILD_TYPE=Release
    -DCMAKE_POLICY_VERSION_MINIMUM=3.5
    -DCMAKE_INSTALL_PREFIX="$prefix"
    -DCMAKE_INSTALL_RPATH="$prefix/lib"
    -DCMAKE_INSTALL_RPATH_USE_LINK_PATH=ON
    -DBUILD_SHARED_LIBS=ON
    -DBUILD_docs=OFF
    -DBUILD_matlab=OFF
    -DBUILD_python=ON
    -DBUILD_python_layer=ON
    -Dpython_version=3
    -DPYTHON_EXECUTABLE="$PYTHON"
    -DPYTHON_INCLUDE_DIR="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
    -DPYTHON_LIBRARY="$("$PYTHON" -c 'import os, sysconfig as s; print(os.path.join(s.get_config_var("LIBDIR"), s.get_config_var("LDLIBRARY")))')"
    -DBLAS=Open
    -DUSE_OPENCV=ON
    -DUSE_HDF5=ON
    -DUSE_LMDB=ON
    -DUSE_LEVELDB=OFF
    -DUSE_CUDNN=OFF
    -DUSE_NCCL=OFF
  )
  if [[ $CAFFE_GPU == 1 ]]; then
    install_cuda_libraries
    cmake_args+=(
      -DCPU_ONLY=OFF
      -DCUDA_ARCH_NAME=Manual
      -DCUDA_ARCH_BIN="$CAFFE_CUDA_ARCH"
      -DCUDA_ARCH_PTX=""
      -DCUDA_cublas_LIBRARY="$CUDA_LIBS_DIR/lib/libcublas.so"
      -DCUDA_curand_LIBRARY="$CUDA_LIBS_DIR/lib/libcurand.so"
      -DCMAKE_CXX_FLAGS="-I$CUDA_LIBS_DIR/include"
      -DCUDA_NVCC_FLAGS="-I$CUDA_LIBS_DIR/include;-std=c++17"
      -DCMAKE_CXX_STANDARD=17
    )
    if [[ $CAFFE_NCCL == 1 ]]; then
      install_nccl_library
      # cmake/Modules/FindNCCL.cmake's cache variables; the later -DUSE_NCCL wins over the OFF above.
      cmake_args+=(-DUSE_NCCL=ON -DNCCL_INCLUDE_DIR="$NCCL_DIR/include" -DNCCL_LIBRARIES="$NCCL_DIR/lib/libnccl.so")
    fi
  else
    cmake_args+=(-DCPU_ONLY=ON)
  fi
  mkdir -p "$build_dir"
  step "cmake configure (gpu=$CAFFE_GPU)" cmake -S "$source_dir" -B "$build_dir" "${cmake_args[@]}"
  step "make -j$CAFFE_JOBS (several minutes on a cold build)" make -C "$build_dir" -j"$CAFFE_JOBS"
  rm -rf "$prefix"
  step "make install -> $prefix" make -C "$build_dir" install
}

# pycaffe lands in <prefix>/lib/python3/dist-packages (Debian's layout): point the virtualenv at it.
link_into_venv() {
  local prefix=$1
  local site
  site=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  local pycaffe_dir=$prefix/lib/python3/dist-packages
  [[ -f $pycaffe_dir/caffe/__init__.py ]] || die "pycaffe missing under $pycaffe_dir"
  printf '%s\n' "$pycaffe_dir" >"$site/dsrg-caffe.pth"
  mkdir -p "$VENV/bin"
  ln -sf "$prefix/bin/caffe" "$VENV/bin/caffe"
  "$PYTHON" - <<'PY' || die "the installed pycaffe does not import or lacks a layer (see above)"
import caffe
required = {"Python", "Interp", "SegAccuracy", "ImageData"}
missing = required - set(caffe.layer_type_list())
if missing:
    raise SystemExit(f"caffe {caffe.__file__} lacks layer types {sorted(missing)}")
PY
  say "pycaffe from $prefix linked into $VENV"
}

main() {
  [[ $CAFFE_NCCL == 0 || $CAFFE_NCCL == 1 ]] || die "CAFFE_NCCL must be 0 or 1 (got '$CAFFE_NCCL')"
  [[ $CAFFE_GPU == 1 ]] && use_cuda_toolkit_wheels
  require_tools
  local fingerprint key prefix
  fingerprint=$(build_fingerprint)
  key=$(printf '%s\n' "$fingerprint" | sha256sum | cut -c1-16)
  prefix=$CACHE_ROOT/caffe-$key
  if [[ -f $prefix/.complete ]]; then
    say "cached build $prefix"
    link_into_venv "$prefix"
    rm -f "$LOG"
    return
  fi
  say "building Caffe into $prefix (log: $LOG)"
  local started=$SECONDS
  fetch_source
  local staging
  staging=$(mktemp -d "$CACHE_ROOT/staging.XXXXXX")
  prepare_source "$staging"
  local option_key
  option_key=$(printf 'gpu=%s arch=%s python=%s\n' "$CAFFE_GPU" "$CAFFE_CUDA_ARCH" "$PYTHON" | sha256sum | cut -c1-12)
  local work=$CACHE_ROOT/work-$option_key
  step "synchronise source into $work/src" sync_tree "$staging/$CAFFE_SOURCE_DIRNAME" "$work/src"
  rm -rf "$staging"
  configure_and_build "$work/src" "$work/build" "$prefix"
  printf '%s\n' "$fingerprint" >"$prefix/fingerprint.txt"
  touch "$prefix/.complete"
  say "built in $((SECONDS - started)) s"
  link_into_venv "$prefix"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  main "$@"
fi
