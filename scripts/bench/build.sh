#!/usr/bin/env bash
# Build benchmark: Damselfly (RAFS v6, zstd) against `mksquashfs -comp zstd` and `mkfs.erofs`
# (uncompressed, and lz4hc when this erofs-utils has it) on the same generated tree, in one run.
# Prints wall time, throughput, CPU time and output size of each, and Damselfly's ratios to the
# others, and says whether the goals are met: at least mksquashfs's throughput on all cores, and
# a smaller output than mksquashfs on a tree where files repeat (chunk dedup).
#
# Usage: scripts/bench/build.sh
#   BENCH_DIR=/var/tmp/damselfly-bench  work dir: the generated tree (reused when its size, seed
#                                       and generator match) and the outputs
#   BENCH_SIZE_MB=1024                  tree size in MiB (about 20% of the bytes repeat)
#   BENCH_SEED=1                        generator seed
#   BENCH_RUNS=1                        runs of each tool; the shortest wall time is reported
#   BENCH_WARM=0                        1: also run each tool again right away, caches warm
#   BENCH_PROFILE=0                     1: then profile a Damselfly build (node --cpu-prof) and
#                                       print its top self-time functions
#   BENCH_KEEP=0                        1: keep the outputs of the last run
#   BENCH_NO_SETUP=0                    1: skip scripts/setup.sh
#
# Page caches are dropped before each run when /proc/sys/vm/drop_caches is writable (cold runs);
# otherwise every file of the tree is read first and all runs are warm (and labelled so). The
# timed region of each tool ends with `sync` of its output, so every tool pays for its writes.
# Machines are shared and noisy: only the ratios mean something. Exits non-zero on errors only,
# not on missed goals.
set -euo pipefail
export LC_ALL=C

# shellcheck source=scripts/bench/common.sh
. "$(dirname "$0")/common.sh"
BENCH_DIR=${BENCH_DIR:-/var/tmp/damselfly-bench}
BENCH_SIZE_MB=${BENCH_SIZE_MB:-1024}
BENCH_SEED=${BENCH_SEED:-1}
BENCH_RUNS=${BENCH_RUNS:-1}
BENCH_WARM=${BENCH_WARM:-0}
BENCH_PROFILE=${BENCH_PROFILE:-0}
BENCH_KEEP=${BENCH_KEEP:-0}
BENCH_NO_SETUP=${BENCH_NO_SETUP:-0}

need_int BENCH_SIZE_MB "$BENCH_SIZE_MB" 16
need_int BENCH_RUNS "$BENCH_RUNS" 1
need_int BENCH_SEED "$BENCH_SEED" 0

run_setup
need_tools node mksquashfs mkfs.erofs awk sync

# --- the tree ---
TREE_HOME="$BENCH_DIR/tree-${BENCH_SIZE_MB}m-seed$BENCH_SEED"
TREE="$TREE_HOME/tree"
OUT="$BENCH_DIR/out"
mkdir -p "$TREE_HOME" "$OUT"
gen_start=$EPOCHREALTIME
manifest=$(node --import tsx "$ROOT/scripts/bench/gen-tree.ts" "$TREE_HOME" "$BENCH_SIZE_MB" "$BENCH_SEED")
gen_secs=$(awk -v a="$gen_start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
json_field() { node -e 'const m = JSON.parse(process.argv[1]); console.log(m[process.argv[2]]);' "$manifest" "$1"; }
read -r IN_BYTES IN_FILES < <(find "$TREE" -type f -printf '%s\n' | awk '{ s += $1; n++ } END { printf "%d %d\n", s, n }')
IN_DIRS=$(find "$TREE" -type d | wc -l)
DUP_FRACTION=$(json_field duplicateFraction)

# --- timing ---
# CPU time (user + sys) of waited-for children, from the `times` builtin: it must run in this
# shell, not in a $(...) subshell, whose children are its own; its output goes to a file.
children_cpu() { # file written by `times`
  awk 'NR == 2 {
    n = split($0, f, " "); s = 0
    for (i = 1; i <= n; i++) { split(f[i], p, "m"); sub("s", "", p[2]); s += p[1] * 60 + p[2] }
    printf "%.3f\n", s
  }' "$1"
}

CAN_DROP=0
if [ -w /proc/sys/vm/drop_caches ] && { sync && echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then CAN_DROP=1; fi
prepare_cache() { # cold|warm
  if [ "$1" = cold ]; then
    sync
    echo 3 >/proc/sys/vm/drop_caches
  fi
}
warm_tree() { find "$TREE" -type f -print0 | xargs -0 -n 256 cat >/dev/null; }

# The tools: label, then a function that builds into $OUT/$label and prints the output files.
ENCODERS=$(mkfs.erofs --help 2>&1 | sed -n 's/^Available compressors are: *//p')
TOOLS=(damselfly mksquashfs erofs)
if [[ " ${ENCODERS//,/ } " == *" lz4hc "* ]]; then TOOLS+=(erofs-lz4hc); fi
declare -A LABEL=(
  [damselfly]="damselfly zstd"
  [mksquashfs]="mksquashfs zstd"
  [erofs]="mkfs.erofs (none)"
  [erofs-lz4hc]="mkfs.erofs lz4hc"
)
run_tool() { # tool dir log
  local dir=$2
  case $1 in
    damselfly)
      node "$ROOT/bin/damselfly.js" build --bootstrap "$dir/boot" --blob-dir "$dir/blobs" --compressor zstd "$TREE" >"$3" 2>&1
      sync "$dir/boot" "$dir"/blobs/*
      ;;
    mksquashfs)
      mksquashfs "$TREE" "$dir/out.sqfs" -comp zstd -noappend -quiet >"$3" 2>&1
      sync "$dir/out.sqfs"
      ;;
    erofs)
      mkfs.erofs "$dir/out.erofs" "$TREE" >"$3" 2>&1
      sync "$dir/out.erofs"
      ;;
    erofs-lz4hc)
      mkfs.erofs -zlz4hc "$dir/out.erofs" "$TREE" >"$3" 2>&1
      sync "$dir/out.erofs"
      ;;
  esac
}
output_bytes() { # dir
  find "$1" -type f ! -name '*.log' -printf '%s\n' | awk '{ s += $1 } END { printf "%d\n", s }'
}

declare -A BEST_WALL BEST_CPU SIZE
RESULTS="$BENCH_DIR/results.tsv"
printf 'tool\tcache\trun\twall_s\tcpu_s\toutput_bytes\tinput_bytes\n' >"$RESULTS"
measure() { # tool mode run
  local tool=$1 mode=$2 dir="$OUT/$1" cpu0 cpu1 t0 t1 wall cpu size key="$1/$2"
  rm -rf "$dir"
  mkdir -p "$dir"
  prepare_cache "$mode"
  times >"$OUT/.times0"
  t0=$EPOCHREALTIME
  if ! run_tool "$tool" "$dir" "$OUT/$tool.log"; then
    cat "$OUT/$tool.log" >&2 || true
    die "$tool failed (log above)"
  fi
  t1=$EPOCHREALTIME
  times >"$OUT/.times1"
  cpu0=$(children_cpu "$OUT/.times0")
  cpu1=$(children_cpu "$OUT/.times1")
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  cpu=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.3f", b - a }')
  size=$(output_bytes "$dir")
  SIZE[$tool]=$size
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$mode" "$3" "$wall" "$cpu" "$size" "$IN_BYTES" >>"$RESULTS"
  log "$(printf '%-18s %-4s run %d: %8.2f s wall, %8.2f s CPU, %d bytes' "${LABEL[$tool]}" "$mode" "$3" "$wall" "$cpu" "$size")"
  if [ -z "${BEST_WALL[$key]:-}" ] || awk -v a="$wall" -v b="${BEST_WALL[$key]}" 'BEGIN { exit !(a < b) }'; then
    BEST_WALL[$key]=$wall
    BEST_CPU[$key]=$cpu
  fi
}

# How busy the machine is (other tenants), for judging the noise: load and CPU pressure (PSI).
busy() {
  local psi=''
  [ -r /proc/pressure/cpu ] && psi=", CPU pressure $(awk '/^some/ { sub("avg60=", "", $3); print $3 "%"; exit }' /proc/pressure/cpu) (some, avg60)"
  echo "load $(cut -d' ' -f1-3 /proc/loadavg)$psi"
}
BUSY_BEFORE=$(busy)

MODES=()
if [ "$CAN_DROP" = 1 ]; then
  MODES+=(cold)
  [ "$BENCH_WARM" = 1 ] && MODES+=(warm)
else
  log "cannot drop page caches (/proc/sys/vm/drop_caches is not writable): every run is warm"
  MODES+=(warm)
fi
log "tree $TREE: $IN_FILES files, $IN_BYTES bytes; tools: ${TOOLS[*]}; runs: $BENCH_RUNS; modes: ${MODES[*]}"
for ((run = 1; run <= BENCH_RUNS; run++)); do
  for tool in "${TOOLS[@]}"; do
    for mode in "${MODES[@]}"; do
      # Without dropping caches, read the tree first so that every tool starts equally warm.
      if [ "$CAN_DROP" = 0 ]; then warm_tree; fi
      measure "$tool" "$mode" "$run"
    done
  done
done
BUSY_AFTER=$(busy)
DMF_LOG_SUMMARY=$(grep -E '^chunks:' "$OUT/damselfly.log" || true)

# --- report ---
CORES=$(nproc)
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
pkgver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo '?'; }
DMF_VERSION="$(node -p "require('$ROOT/package.json').version") ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no git'))"
SQ_VERSION=$(mksquashfs -version 2>&1 | head -n 1)
EROFS_VERSION=$(grep -m1 -o 'mkfs.erofs [0-9][^ ]*' "$OUT/erofs.log" || echo "mkfs.erofs (erofs-utils $(pkgver erofs-utils))")
ZSTD_LIB=$(pkgver libzstd1)

echo
echo "== Damselfly build benchmark =="
echo "machine: $CORES cores ($CPU_MODEL), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r)"
echo "versions: damselfly $DMF_VERSION on node $(node --version); $SQ_VERSION; $EROFS_VERSION; libzstd $ZSTD_LIB"
echo "tree: $TREE"
echo "      $IN_FILES files, $IN_DIRS directories, $IN_BYTES bytes ($(awk -v b="$IN_BYTES" 'BEGIN { printf "%.1f", b / 1048576 }') MiB); $(awk -v f="$DUP_FRACTION" 'BEGIN { printf "%.1f", f * 100 }')% of the bytes repeat (exact copies + near-duplicates); seed $BENCH_SEED; generated or checked in $gen_secs s"
echo "settings: damselfly --compressor zstd (level 3, 1 MiB chunks, blake3, chunk dedup);"
echo "          mksquashfs -comp zstd (level 15 default, 128 KiB blocks, file dedup, all $CORES cores by default);"
echo "          mkfs.erofs uncompressed (single-threaded, no dedup)$([[ " ${TOOLS[*]} " == *" erofs-lz4hc "* ]] && echo "; mkfs.erofs -zlz4hc (compressed variant)")"
if [ "$CAN_DROP" = 1 ]; then
  echo "cache: page caches dropped before each cold run$([ "$BENCH_WARM" = 1 ] && echo '; warm runs follow each cold run')"
else
  echo "cache: could not drop page caches; the tree was read before each run (warm)"
fi
echo "machine load: before the runs $BUSY_BEFORE; after $BUSY_AFTER"
echo "runs: $BENCH_RUNS per tool and mode, best (shortest wall) shown; output sizes include sync; MB = 10^6 bytes"
[ -n "$DMF_LOG_SUMMARY" ] && echo "damselfly: $DMF_LOG_SUMMARY"
echo
printf '%-18s %-5s %9s %9s %9s %14s %9s\n' tool cache 'wall s' 'MB/s' 'CPU s' 'output bytes' 'out/in'
for tool in "${TOOLS[@]}"; do
  for mode in "${MODES[@]}"; do
    key="$tool/$mode"
    awk -v t="${LABEL[$tool]}" -v m="$mode" -v w="${BEST_WALL[$key]}" -v c="${BEST_CPU[$key]}" -v o="${SIZE[$tool]}" -v i="$IN_BYTES" \
      'BEGIN { printf "%-18s %-5s %9.2f %9.1f %9.2f %14d %9.3f\n", t, m, w, i / w / 1e6, c, o, o / i }'
  done
done

MODE=${MODES[0]}
ratio_line() { # other-tool
  local o=$1
  awk -v dw="${BEST_WALL[damselfly/$MODE]}" -v ow="${BEST_WALL[$o/$MODE]}" -v ds="${SIZE[damselfly]}" -v os="${SIZE[$o]}" \
    -v dc="${BEST_CPU[damselfly/$MODE]}" -v oc="${BEST_CPU[$o/$MODE]}" -v name="${LABEL[$o]}" \
    'BEGIN { printf "damselfly vs %-18s throughput x%.2f, output size x%.3f, CPU time x%.2f\n", name ":", ow / dw, ds / os, dc / oc }'
}
echo
echo "ratios ($MODE runs; throughput > 1: Damselfly is faster; size < 1: Damselfly is smaller):"
for tool in "${TOOLS[@]}"; do
  [ "$tool" = damselfly ] || ratio_line "$tool"
done
echo
thr_ok=$(awk -v dw="${BEST_WALL[damselfly/$MODE]}" -v ow="${BEST_WALL[mksquashfs/$MODE]}" 'BEGIN { print (ow / dw >= 1) ? "met" : "NOT met" }')
size_ok=$(awk -v ds="${SIZE[damselfly]}" -v os="${SIZE[mksquashfs]}" 'BEGIN { print (ds < os) ? "met" : "NOT met" }')
echo "goal: throughput >= mksquashfs on $CORES cores: $thr_ok"
echo "goal: output smaller than mksquashfs on a tree with repeated files: $size_ok"
echo "(results of every run: $RESULTS)"

if [ "$BENCH_PROFILE" = 1 ]; then
  PROF="$BENCH_DIR/prof"
  rm -rf "$PROF" "$OUT/damselfly-prof"
  mkdir -p "$PROF" "$OUT/damselfly-prof"
  log "profiling a warm Damselfly build into $PROF"
  node --cpu-prof --cpu-prof-dir="$PROF" "$ROOT/bin/damselfly.js" build --bootstrap "$OUT/damselfly-prof/boot" \
    --blob-dir "$OUT/damselfly-prof/blobs" --compressor zstd "$TREE" >"$OUT/damselfly-prof.log" 2>&1 ||
    { cat "$OUT/damselfly-prof.log" >&2; die "profiled damselfly build failed"; }
  echo
  for f in "$PROF"/*.cpuprofile; do node --import tsx "$ROOT/scripts/bench/cpuprof-top.ts" "$f" 25; done
  rm -rf "$OUT/damselfly-prof"
fi

if [ "$BENCH_KEEP" != 1 ]; then
  for tool in "${TOOLS[@]}"; do rm -rf "${OUT:?}/$tool"; done
fi
