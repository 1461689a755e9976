# Shared by the benchmark scripts (sourced, not run): messages, checks of the environment and of
# BENCH_* numbers, stopping processes, mount checks, and the choice of large files for the
# sequential-read lines. Sourcing it sets ROOT (the repository) and changes into it.
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

die() {
  echo "bench: $*" >&2
  exit 1
}
log() { echo "bench: $*" >&2; }

# need_int NAME VALUE MIN: VALUE must be a whole number >= MIN.
need_int() {
  [[ $2 =~ ^[0-9]+$ ]] && [ "$2" -ge "$3" ] || die "$1 must be an integer >= $3"
}

# run_setup: scripts/setup.sh, unless BENCH_NO_SETUP=1.
run_setup() {
  if [ "${BENCH_NO_SETUP:-0}" != 1 ]; then
    log "running scripts/setup.sh (BENCH_NO_SETUP=1 skips it)"
    "$ROOT/scripts/setup.sh" >&2
  fi
}

# need_tools TOOL...: each must be on PATH; dist/ must be built.
need_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || die "$tool is missing (scripts/setup.sh installs it)"
  done
  [ -f "$ROOT/dist/bundle/main.js" ] || die "dist/bundle/main.js is missing: run npm run build (or scripts/setup.sh)"
}

is_mounted() { awk -v m="$1" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; }

# stop_pid PID: SIGTERM, up to 5 s, then SIGKILL; reaps it when it is our child.
stop_pid() {
  local p=$1 i
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 0
  kill -TERM "$p" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$p" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}

# wait_exit PID NAME EVENT: waits up to 30 s for a daemon to end after EVENT (its unmount, QEMU's
# exit), then sends SIGTERM; logs a non-zero exit status.
wait_exit() {
  local i
  for ((i = 0; i < 300; i++)); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$1" 2>/dev/null; then
    log "$2 (pid $1) still runs 30 s after $3; sending SIGTERM"
    kill "$1" 2>/dev/null || true
  fi
  wait "$1" 2>/dev/null || log "$2 exited with status $?"
}

# descendants PID: the pids of a process's descendants (found by PPid in /proc/*/stat).
descendants() {
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$1" '
    { s = $0; pid = $1; sub(/^.*\) /, "", s); split(s, f, " "); parent[pid] = f[2] }
    END {
      want[root] = 1
      do { added = 0; for (p in parent) if (!(p in want) && (parent[p] in want)) { want[p] = 1; added = 1 } } while (added)
      for (p in want) if (p != root) print p
    }'
}

# pick_seq_files TREE: the large files for the sequential read, relative to TREE: > 8 MiB, one of
# each set of identical files (a system would otherwise serve the copies from data it has just
# read); near-duplicates stay. Trees under ~64 MiB have no such file: then files > 1 MiB.
# Sets SEQ_MIN, SEQ_FILES (array) and SEQ_BYTES.
pick_seq_files() {
  local tree=$1
  large_files() { # find size argument
    (cd "$tree" && find . -type f -size "$1" -print0 | sort -z | xargs -0 -r md5sum | awk '!seen[$1]++ { print substr($0, 35) }')
  }
  SEQ_MIN="8 MiB"
  mapfile -t SEQ_FILES < <(large_files +8M)
  if [ ${#SEQ_FILES[@]} -eq 0 ]; then
    SEQ_MIN="1 MiB"
    mapfile -t SEQ_FILES < <(large_files +1M)
  fi
  [ ${#SEQ_FILES[@]} -gt 0 ] || die "the tree has no file of 1 MiB or more"
  SEQ_BYTES=$(cd "$tree" && stat -c %s "${SEQ_FILES[@]}" | awk '{ s += $1 } END { printf "%d\n", s }')
}
