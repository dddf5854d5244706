#!/usr/bin/env bash
# Proves the README's two commands on a fresh Debian 12 that has only python3, git and ca-certificates:
# builds a root with `debootstrap --variant=minbase` from the Debian mirror the host's apt sources
# name, adds those three packages (no recommends), clones this repository's HEAD commit into it and
# runs, in a chroot as root, `bash tools/test.sh` and then `bash run.sh`. Prints both results and
# wall times; exits non-zero if either fails. Needs root on a Debian host (installs debootstrap with
# apt-get when it is missing); takes about 20 minutes on 2 cores (Caffe is built cold in the root).
#
#   bash tools/check_fresh_machine.sh [options]
#
#   --dir DIR               work folder (default: a new /var/tmp/dsrg-fresh-machine.XXXXXX); the root
#                           is DIR/root, one log per step in DIR/logs
#   --keep                  keep DIR/root afterwards (default: removed once everything is unmounted;
#                           the logs stay)
#   --copy-host-pip-config  copy the host's pip configuration and the CA files the host's environment
#                           names (PIP_CERT, SSL_CERT_FILE, REQUESTS_CA_BUNDLE, /etc/pip.conf, ...) to
#                           the same paths in the root, and set those variables in the chroot; needed
#                           behind a proxy with its own certificate authority. Nothing else is copied.
#   --no-shared             do not bind-mount the host's ../shared (tests that need it then skip)
#   --mirror URL            Debian mirror (default: the first bookworm source of the host's apt)
#   -h, --help              this text
#
# The repository's sibling ../shared, when it exists, is bind-mounted read-only at the clone's
# ../shared inside the root, so that the real-data tests run as they do here. Proxy variables
# (http_proxy, https_proxy, no_proxy, all_proxy, either case) pass into the chroot when set.
# /proc, /sys, /dev, /dev/pts, /dev/shm (and ../shared) are unmounted again on every exit.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SUITE=bookworm
WORK_DIR=
KEEP=0
COPY_PIP=0
USE_SHARED=1
MIRROR=
CHROOT_REPO=/src/dsrg

say() { printf '[fresh] %s\n' "$*" >&2; }
die() { printf '[fresh] ERROR: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

while (($#)); do
  case $1 in
    --dir) (($# >= 2)) || die "--dir needs a folder"; WORK_DIR=$2; shift ;;
    --dir=*) WORK_DIR=${1#--dir=} ;;
    --keep) KEEP=1 ;;
    --copy-host-pip-config) COPY_PIP=1 ;;
    --no-shared) USE_SHARED=0 ;;
    --mirror) (($# >= 2)) || die "--mirror needs a URL"; MIRROR=$2; shift ;;
    --mirror=*) MIRROR=${1#--mirror=} ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done

((EUID == 0)) || die "needs root (debootstrap, mount, chroot)"
for tool in git mount umount chroot apt-get; do
  command -v "$tool" >/dev/null || die "missing $tool on the host"
done

# ---------------------------------------------------------------------------------------------------
# The Debian mirror: the first URI whose suites include $SUITE in the host's apt sources, one-line
# (*.list) or deb822 (*.sources) format.
host_mirror() {
  local file
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $file ]] || continue
    # deb [options] URI suite component...
    awk -v suite="$SUITE" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
      if ($(i + 1) == suite) { print $i; exit } }' "$file"
  done
  for file in /etc/apt/sources.list.d/*.sources; do
    [[ -f $file ]] || continue
    awk -v suite="$SUITE" '
      function flush() { if (types ~ /(^| )deb( |$)/ && enabled != "no" && (" " suites " ") ~ (" " suite " ") && uris != "")
                           { split(uris, u, " "); print u[1]; found = 1; exit }
                         types = ""; suites = ""; uris = ""; enabled = "" }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      { key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^ +/, "")
        if (key == "types") types = $0; else if (key == "suites") suites = $0
        else if (key == "uris") uris = $0; else if (key == "enabled") enabled = tolower($0) }
      END { if (!found) flush() }' "$file"
  done
}

# The host's debian-security URI for $SUITE-security, if any (same two formats).
host_security_mirror() {
  local file
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f $file ]] || continue
    grep -v '^[[:space:]]*#' "$file" | grep -o -E '(https?|ftp)://[^][ ]*debian-security[^ ]*' | head -n 1
  done | head -n 1
}

fmt_time() { printf '%d min %02d s' $(($1 / 60)) $(($1 % 60)); }

# ---------------------------------------------------------------------------------------------------
# Mounts and the trap that undoes them.
MOUNTED=()
ROOT=

mount_in_root() { # mount_in_root TARGET mount-arguments...
  local target=$1; shift
  mkdir -p "$target"
  mount "$@" "$target"
  MOUNTED+=("$target")
}

mounts_under() { # the mount points at or below $1, deepest first
  awk -v root="$1" '{ gsub(/\\040/, " ", $5); if ($5 == root || index($5, root "/") == 1) print $5 }' \
    /proc/self/mountinfo | sort -r
}

unmount_all() {
  local i target
  for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
    target=${MOUNTED[i]}
    umount "$target" 2>/dev/null || umount -l "$target" 2>/dev/null || say "could not unmount $target"
  done
  MOUNTED=()
  if [[ -n $ROOT ]]; then
    # Anything still mounted in the root (e.g. by a package's script) goes too.
    for target in $(mounts_under "$ROOT"); do
      umount "$target" 2>/dev/null || umount -l "$target" 2>/dev/null || say "could not unmount $target"
    done
  fi
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  unmount_all
  if [[ -n $ROOT && -d $ROOT ]]; then
    if [[ -n $(mounts_under "$ROOT") ]]; then
      say "something is still mounted under $ROOT: not removing it"
    elif ((KEEP)); then
      say "root kept: $ROOT"
    else
      rm -rf --one-file-system "$ROOT"
      say "root removed (--keep keeps it); logs: $LOG_DIR"
    fi
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The end of a log, progress bars (carriage returns) as lines of their own.
show_tail() { tr '\r' '\n' <"$1" | sed '/^[[:space:]]*$/d' | tail -n 30 | cut -c1-300 >&2; }

# Run a host step with its output in a log of its own.
STEP_NO=0
step() {
  local name=$1; shift
  STEP_NO=$((STEP_NO + 1))
  local log
  log=$LOG_DIR/$(printf '%02d' "$STEP_NO")-$name.log
  say "$name (log: $log)"
  if ! "$@" >"$log" 2>&1; then
    show_tail "$log"
    die "step failed: $name (full log: $log)"
  fi
}

# The chroot's environment: a clean root login, plus proxies and (with --copy-host-pip-config) the
# host's pip and CA variables.
CHROOT_ENV=(HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
  TERM=dumb DEBIAN_FRONTEND=noninteractive)
for name in http_proxy https_proxy ftp_proxy no_proxy all_proxy HTTP_PROXY HTTPS_PROXY FTP_PROXY NO_PROXY ALL_PROXY; do
  [[ -n ${!name:-} ]] && CHROOT_ENV+=("$name=${!name}")
done

in_root() { chroot "$ROOT" /usr/bin/env -i "${CHROOT_ENV[@]}" "$@"; }

# ---------------------------------------------------------------------------------------------------
# --copy-host-pip-config: the files the host's environment names, at the same paths in the root.
CA_FILE_VARIABLES=(PIP_CERT PIP_CLIENT_CERT PIP_CONFIG_FILE SSL_CERT_FILE REQUESTS_CA_BUNDLE CURL_CA_BUNDLE
  GIT_SSL_CAINFO)
CA_DIR_VARIABLES=(SSL_CERT_DIR)

declare -A COPIED=()
copy_into_root() { # copy_into_root HOST_PATH [ROOT_PATH]
  local from=$1 to=$ROOT${2:-$1}
  [[ -n ${COPIED[$from]:-} ]] && return
  COPIED[$from]=1
  mkdir -p "$(dirname "$to")"
  if [[ -d $from ]]; then
    mkdir -p "$to"
    cp -rL --remove-destination "$from/." "$to/"
  else
    cp -L --remove-destination "$from" "$to"
  fi
  say "  copied ${from}${2:+ -> $2}"
}

copy_host_pip_config() {
  say "copying the host's pip configuration and CA files into the root"
  local name value
  for name in "${CA_FILE_VARIABLES[@]}" "${CA_DIR_VARIABLES[@]}"; do
    value=${!name:-}
    [[ -n $value && $value == /* && -e $value ]] && copy_into_root "$value"
  done
  # pip's configuration files (global, per-user; the chroot's user is root) and the files they name.
  local configs=() dir dirs
  IFS=: read -r -a dirs <<<"${XDG_CONFIG_DIRS:-/etc/xdg}"
  for dir in "${dirs[@]}"; do [[ -f $dir/pip/pip.conf ]] && configs+=("$dir/pip/pip.conf:$dir/pip/pip.conf"); done
  [[ -f /etc/pip.conf ]] && configs+=("/etc/pip.conf:/etc/pip.conf")
  [[ -f ${XDG_CONFIG_HOME:-$HOME/.config}/pip/pip.conf ]] \
    && configs+=("${XDG_CONFIG_HOME:-$HOME/.config}/pip/pip.conf:/root/.config/pip/pip.conf")
  [[ -f $HOME/.pip/pip.conf ]] && configs+=("$HOME/.pip/pip.conf:/root/.pip/pip.conf")
  local entry config path
  for entry in "${configs[@]}"; do
    config=${entry%%:*}
    copy_into_root "$config" "${entry#*:}"
    # cert, client-cert and constraint name files pip must read (a missing one is an error).
    while read -r path; do
      [[ $path == /* && -f $path ]] && copy_into_root "$path"
    done < <(sed -n -E 's/^[[:space:]]*(cert|client-cert|constraint|requirement)[[:space:]]*[=:][[:space:]]*//p' "$config" \
      | tr ' ' '\n' | sed '/^$/d')
  done
  for name in $(compgen -e); do
    case $name in
      PIP_* | SSL_CERT_FILE | SSL_CERT_DIR | REQUESTS_CA_BUNDLE | CURL_CA_BUNDLE | GIT_SSL_CAINFO)
        CHROOT_ENV+=("$name=${!name}")
        say "  chroot environment: $name=${!name}" ;;
    esac
  done
}

# ---------------------------------------------------------------------------------------------------
COMMIT=$(git -C "$REPO" rev-parse HEAD)
[[ -n $(git -C "$REPO" status --porcelain --untracked-files=no) ]] \
  && say "note: $REPO has uncommitted changes; the check uses the commit $COMMIT only"
[[ -n $MIRROR ]] || MIRROR=$(host_mirror | head -n 1)
[[ -n $MIRROR ]] || die "no '$SUITE' source in the host's apt sources: pass --mirror URL"
SECURITY_MIRROR=$(host_security_mirror || true)

if [[ -z $WORK_DIR ]]; then
  WORK_DIR=$(mktemp -d /var/tmp/dsrg-fresh-machine.XXXXXX)
else
  mkdir -p "$WORK_DIR"
  [[ ! -e $WORK_DIR/root ]] || die "$WORK_DIR/root exists already: remove it or pick another --dir"
fi
WORK_DIR=$(realpath "$WORK_DIR")
LOG_DIR=$WORK_DIR/logs
mkdir -p "$LOG_DIR"
ROOT=$WORK_DIR/root
SHARED_HOST=$(cd "$REPO/.." && pwd)/shared
say "repository $REPO at commit $COMMIT"
say "mirror $MIRROR${SECURITY_MIRROR:+ (security: $SECURITY_MIRROR)}; work folder $WORK_DIR; logs in $LOG_DIR"

if ! command -v debootstrap >/dev/null; then
  step install-debootstrap bash -c 'apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap'
fi

step debootstrap debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR"
{
  echo "deb $MIRROR $SUITE main"
  echo "deb $MIRROR $SUITE-updates main"
  [[ -n $SECURITY_MIRROR ]] && echo "deb $SECURITY_MIRROR $SUITE-security main"
} >"$ROOT/etc/apt/sources.list"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
cp -L /etc/hosts "$ROOT/etc/hosts"

mount_in_root "$ROOT/proc" -t proc proc
mount_in_root "$ROOT/sys" -t sysfs sysfs
mount_in_root "$ROOT/dev" --bind /dev
mount_in_root "$ROOT/dev/pts" --bind /dev/pts
mount_in_root "$ROOT/dev/shm" -t tmpfs -o mode=1777 tmpfs

step add-git-python3-ca-certificates in_root bash -c 'apt-get update &&
  apt-get install -y --no-install-recommends git python3 ca-certificates'
if ((COPY_PIP)); then copy_host_pip_config; fi

step clone bash -c "mkdir -p '$ROOT$(dirname "$CHROOT_REPO")' &&
  git clone --quiet --no-hardlinks --no-checkout '$REPO' '$ROOT$CHROOT_REPO' &&
  git -C '$ROOT$CHROOT_REPO' checkout --quiet --detach '$COMMIT'"
say "cloned $COMMIT into $CHROOT_REPO in the root"

SHARED_NOTE="not mounted ($SHARED_HOST does not exist): the tests that read ../shared skip"
if ((!USE_SHARED)); then
  SHARED_NOTE="not mounted (--no-shared): the tests that read ../shared skip"
elif [[ -d $SHARED_HOST ]]; then
  target=$ROOT$(dirname "$CHROOT_REPO")/shared
  mount_in_root "$target" --bind "$SHARED_HOST"
  mount -o remount,bind,ro "$target"
  SHARED_NOTE="$SHARED_HOST bind-mounted read-only at $(dirname "$CHROOT_REPO")/shared"
fi
say "../shared: $SHARED_NOTE"

# The README's two commands, as root in the chroot; both run even if the first fails.
run_in_root() { # run_in_root NAME COMMAND: sets RESULT_STATUS and RESULT_SECONDS
  local name=$1 command=$2
  STEP_NO=$((STEP_NO + 1))
  RESULT_LOG=$LOG_DIR/$(printf '%02d' "$STEP_NO")-$name.log
  say "$command (in the chroot; log: $RESULT_LOG)"
  local started=$SECONDS
  RESULT_STATUS=0
  in_root bash -c "cd $CHROOT_REPO && $command" >"$RESULT_LOG" 2>&1 || RESULT_STATUS=$?
  RESULT_SECONDS=$((SECONDS - started))
}

run_in_root test "bash tools/test.sh"
TEST_STATUS=$RESULT_STATUS TEST_SECONDS=$RESULT_SECONDS TEST_LOG=$RESULT_LOG
TEST_LINE=$(grep -E '^=+ .*[0-9]+ (passed|failed|errors?|skipped).* in [0-9.]+s' "$TEST_LOG" | tail -n 1 \
  | sed -E 's/^=+ //; s/ =+$//' || true)
((TEST_STATUS == 0)) || show_tail "$TEST_LOG"

run_in_root run "bash run.sh"
RUN_STATUS=$RESULT_STATUS RUN_SECONDS=$RESULT_SECONDS RUN_LOG=$RESULT_LOG
RUN_LINE=$(grep -E '^final val mIoU' "$RUN_LOG" | tail -n 1 || true)
((RUN_STATUS == 0)) || show_tail "$RUN_LOG"

verdict() { (($1 == 0)) && echo ok || echo "FAILED (exit $1)"; }
cat <<EOF

Fresh Debian 12 (debootstrap --variant=minbase $SUITE, $MIRROR; + git python3 ca-certificates)
commit      $COMMIT
../shared   $SHARED_NOTE
pip config  $( ((COPY_PIP)) && echo "host's pip configuration and CA files copied in" || echo "none copied from the host")
tests       bash tools/test.sh: $(verdict "$TEST_STATUS"), $(fmt_time "$TEST_SECONDS"): ${TEST_LINE:-no pytest summary line}
            log: $TEST_LOG
run.sh      bash run.sh: $(verdict "$RUN_STATUS"), $(fmt_time "$RUN_SECONDS"): ${RUN_LINE:-no 'final val mIoU' line}
            log: $RUN_LOG
total       $(fmt_time "$SECONDS") (debootstrap and clone included)
EOF
((TEST_STATUS == 0 && RUN_STATUS == 0)) && [[ -n $RUN_LINE ]]
