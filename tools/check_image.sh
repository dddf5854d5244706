#!/usr/bin/env bash
# Build the Docker image and check it on a machine with no container registry and no Docker engine
# (Debian 12, root, Debian's mirror and PyPI reachable), with podman and buildah:
#
#   sudo bash tools/check_image.sh [--tag NAME] [--rebuild-base] [--skip-tests] [--skip-demo]
#
#   1. base     debian:12 made locally: debootstrap --variant=minbase bookworm, imported with
#               `podman import` as docker.io/library/debian:12 (kept; --rebuild-base makes it again)
#   2. build    `podman build` of this checkout's Dockerfile, unchanged (CUDA build of Caffe inside)
#   3. tests    the README's test command inside the image, with ../shared mounted read-only when present
#   4. demo     `bash run.sh` inside the image, in CPU mode (GPU=) with the CUDA-built Caffe
#
# The image runs through `buildah from` + `buildah run --isolation chroot`: podman run needs a runtime
# that may set rlimits, which sandboxes like the development machine refuse. When the host's pip
# reaches PyPI through a CA of its own (pip's `cert`, PIP_CERT, SSL_CERT_FILE), that CA file is
# mounted into the build's RUN steps only, with a pip configuration naming it; the Dockerfile and the
# image stay as a user's `docker build` makes them.
#
# Logs and figures go to $CHECK_DIR (default /var/tmp/dsrg-check-image.XXXXXX). A failure names the
# step, its exit status and its log. The last line gives the demo's final val mIoU from inside the image.
set -Eeuo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TAG=localhost/dsrg:check
BASE=docker.io/library/debian:12
REBUILD_BASE=0
RUN_TESTS=1
RUN_DEMO=1
while (($#)); do
  case $1 in
    --tag) TAG=$2; shift ;;
    --rebuild-base) REBUILD_BASE=1 ;;
    --skip-tests) RUN_TESTS=0 ;;
    --skip-demo) RUN_DEMO=0 ;;
    -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

CHECK_DIR=${CHECK_DIR:-$(mktemp -d /var/tmp/dsrg-check-image.XXXXXX)}
CHECK_NAME=check-image
# shellcheck source=tools/check_steps.sh
source "$REPO/tools/check_steps.sh"

((EUID == 0)) || die "run as root (podman and buildah keep their storage under /var/lib/containers)"
for tool in podman buildah debootstrap; do
  command -v "$tool" >/dev/null || die "$tool is missing: apt-get install podman buildah debootstrap"
done
podman_cmd=(podman --cgroup-manager=cgroupfs)

# The Debian mirror apt's own sources name (deb822 or one-line format), else deb.debian.org.
debian_mirror() {
  local mirror
  mirror=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
    | grep -v security | sed -E 's/^URIs:[[:space:]]*//; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//' \
    | awk '{print $1}' | head -n 1)
  echo "${mirror:-http://deb.debian.org/debian}"
}

build_base() {
  local root=$CHECK_DIR/debian12-root
  debootstrap --variant=minbase bookworm "$root" "$(debian_mirror)"
  tar -C "$root" -c . | "${podman_cmd[@]}" import - "$BASE"
  rm -rf "$root"
}

# podman build's extra volumes: the host's pip CA (when it has one of its own) and a pip.conf naming it.
pip_ca_volumes=()
host_pip_ca() {
  local ca=${PIP_CERT:-}
  [[ -z $ca ]] && ca=$(python3 -m pip config get global.cert 2>/dev/null || true)
  [[ -z $ca ]] && ca=${SSL_CERT_FILE:-}
  [[ -n $ca && -f $ca ]] || return 0
  printf '[global]\ncert = /run/dsrg-host-ca.crt\n' >"$CHECK_DIR/pip.conf"
  pip_ca_volumes=(-v "$ca:/run/dsrg-host-ca.crt:ro" -v "$CHECK_DIR/pip.conf:/etc/pip.conf:ro")
  record "pip CA for the build: $ca (mounted into RUN steps only)"
}

build_image() {
  "${podman_cmd[@]}" build --isolation chroot --network host --pull=never "${pip_ca_volumes[@]}" \
    -t "$TAG" -f "$REPO/Dockerfile" "$REPO"
}

CONTAINER=
cleanup() { [[ -n $CONTAINER ]] && buildah rm "$CONTAINER" >/dev/null 2>&1 || true; }
trap cleanup EXIT

# Run a command in the image's working directory (/opt/dsrg), with ../shared mounted when present.
in_image() {
  buildah run --isolation chroot --network host "${shared_volume[@]}" "$@"
}

shared_volume=()
[[ -d $REPO/../shared ]] && shared_volume=(-v "$(cd "$REPO/../shared" && pwd):/opt/shared:ro")

record "check of $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "an unversioned tree") in $CHECK_DIR"
if ((REBUILD_BASE)) || ! "${podman_cmd[@]}" image exists "$BASE"; then
  timed_step base build_base
else
  record "base: $BASE exists (--rebuild-base makes it again)"
fi
host_pip_ca
timed_step build build_image
size=$("${podman_cmd[@]}" image inspect --format '{{.Size}}' "$TAG")
record "image $TAG: $((size / 1000000)) MB"

CONTAINER=$(buildah from --pull-never "$TAG")
in_image "$CONTAINER" -- .venv/bin/python -c "import caffe, pylayers, krahenbuhl2013; print(caffe.__file__)" \
  >"$CHECK_DIR/logs/import.log" 2>&1 || die "step import failed: the image's .venv cannot import caffe, pylayers, krahenbuhl2013 (log: $CHECK_DIR/logs/import.log)"
if ((RUN_TESTS)); then
  timed_step tests in_image "$CONTAINER" -- bash tools/test.sh -q -rs
  record "tests: $(grep -E '[0-9]+ passed' "$CHECK_DIR/logs/tests.log" | tail -n 1)"
fi
if ((RUN_DEMO)); then
  timed_step demo in_image --env GPU= "$CONTAINER" -- bash run.sh
  final=$(grep -E '^final val mIoU' "$CHECK_DIR/logs/demo.log" | tail -n 1)
  [[ -n $final ]] || die "step demo printed no final val mIoU (log: $CHECK_DIR/logs/demo.log)"
  record "summary: $SUMMARY"
  echo "$final (bash run.sh inside $TAG, CPU mode)"
fi
