#!/usr/bin/env bash
# FUSE read benchmark: the same generated tree served three ways, in one run —
#   squashfuse    mksquashfs -comp zstd image under `squashfuse` (FUSE, multi-threaded libfuse)
#   kernel EROFS  the Damselfly bootstrap mounted by the kernel (`mount -t erofs`) with the exported
#                 uncompressed blob views as extra devices on loop devices: uncompressed data
#                 straight from the page cache, no user space at all (the local limit)
#   Damselfly     the Damselfly image (RAFS v6, zstd, 1 MiB chunks) under `damselfly mount`, with
#                 and without --cache-dir (FUSE, one Node process)
# and three lines, each measured cold and warm:
#   seq read      cat of the large files (> 8 MiB, or > 1 MiB in small trees; exact copies left
#                 out) to /dev/null
#   tar           tar -cf - of the whole tree, piped into wc -c (so that file data is really read:
#                 GNU tar skips reading data when the archive itself is /dev/null)
#   stat          find -type f -print0 | xargs -0 stat > /dev/null (metadata only)
# Prints seconds, MB/s (files/s for stat), Damselfly's speed ratios (> 1: Damselfly is faster) to
# squashfuse and to kernel EROFS, Damselfly's process CPU time, and whether the goals are met:
# Damselfly at least as fast as squashfuse on every line, and within 2x of kernel EROFS warm.
#
# Usage: scripts/bench/fuse.sh          (as root: mount, losetup, /proc/sys/vm/drop_caches)
#   BENCH_DIR=/var/tmp/damselfly-bench  work dir: the generated tree (shared with build.sh and
#                                       reused when its size, seed and generator match), the
#                                       images (the squashfs image is reused while the tree and
#                                       mksquashfs are the same) and fuse/logs/
#   BENCH_SIZE_MB=512                   tree size in MiB (scripts/bench/gen-tree.ts: ~22% of the
#                                       bytes in thousands of 1-64 KiB files in nested
#                                       directories, most of the rest in files of 10 MiB or more)
#   BENCH_SEED=1                        generator seed
#   BENCH_RUNS=3                        repetitions of every measurement; the best is reported
#   BENCH_PROFILE=0                     1: afterwards, profile damselfly mount (node --cpu-prof,
#                                       and perf record when perf works) over a cold tar with an
#                                       empty chunk cache, and a cold then a warm tar with the
#                                       populated one, and print where the time goes
#   BENCH_KEEP=0                        1: keep the Damselfly image, blob views and chunk caches
#   BENCH_NO_SETUP=0                    1: skip scripts/setup.sh
#
# What cold means: `sync; echo 3 > /proc/sys/vm/drop_caches` right before the measurement, and for
# the FUSE systems a fresh mount (unmounted before the drop, mounted after it), so that the
# kernel's FUSE page cache, dentries and attributes and the daemon's own memory are all empty.
# Damselfly is measured cold three times: without a chunk cache (no --cache-dir, as squashfuse
# serves its image: every chunk is read from the local blob directory, decompressed and verified),
# with an empty chunk cache (a new --cache-dir: each chunk is also written to the cache) and with
# a chunk cache populated once beforehand by reading the whole tree (chunks come from the cache
# file, whose page cache was dropped too). Kernel EROFS is not remounted: the drop empties its
# page cache, the loop devices' and the view files'. Mounting (Damselfly loads the whole bootstrap
# at mount) is not inside the timed region; its time is printed separately.
# Warm: the same command again right after the cold one, on the same mount (for Damselfly, right
# after the cold run with the populated chunk cache).
# Wall time includes the reading tools themselves (cat, tar, wc, find, xargs, stat). Machines are
# shared and noisy: only the ratios mean something. Exits non-zero on errors only, not on missed
# goals. Mounts, the FUSE daemons it started and its loop devices are cleaned up on exit.
set -euo pipefail
export LC_ALL=C

# shellcheck source=scripts/bench/common.sh
. "$(dirname "$0")/common.sh"
BENCH_DIR=${BENCH_DIR:-/var/tmp/damselfly-bench}
BENCH_SIZE_MB=${BENCH_SIZE_MB:-512}
BENCH_SEED=${BENCH_SEED:-1}
BENCH_RUNS=${BENCH_RUNS:-3}
BENCH_PROFILE=${BENCH_PROFILE:-0}
BENCH_KEEP=${BENCH_KEEP:-0}
BENCH_NO_SETUP=${BENCH_NO_SETUP:-0}

need_int BENCH_SIZE_MB "$BENCH_SIZE_MB" 16
need_int BENCH_RUNS "$BENCH_RUNS" 1
need_int BENCH_SEED "$BENCH_SEED" 0
[ "$(id -u)" = 0 ] || die "run as root (mount, losetup and drop_caches need it)"

run_setup
need_tools node mksquashfs squashfuse losetup mount umount mountpoint tar xargs stat md5sum awk sync
[ -e /dev/fuse ] || die "/dev/fuse is missing"
grep -qw erofs /proc/filesystems || modprobe erofs 2>/dev/null || die "this kernel has no EROFS"
{ sync && echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null || die "cannot drop page caches (/proc/sys/vm/drop_caches)"
DAMSELFLY=(node "$ROOT/bin/damselfly.js")

# --- clean-up of everything this script mounts or starts, on any exit ---
mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd -P) # as /proc/self/mountinfo spells it
WORK="$BENCH_DIR/fuse"
MNT="$WORK/mnt"
LOGS="$WORK/logs"
LOOPS=()
SQ_PID=
DF_PID=
DF_LAST_PID=
PERF_PID=
# Whether a mount sits on the path (also a dead FUSE mount, which `mountpoint` cannot stat).
cleanup() {
  set +e
  if [ -n "$PERF_PID" ] && kill -0 "$PERF_PID" 2>/dev/null; then
    kill -INT "$PERF_PID" 2>/dev/null
    wait "$PERF_PID" 2>/dev/null
  fi
  for m in "$MNT/sq" "$MNT/erofs" "$MNT/dfly"; do
    if is_mounted "$m"; then umount "$m" 2>/dev/null || umount -l "$m"; fi
  done
  for p in "$SQ_PID" "$DF_PID"; do
    if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
      kill "$p" 2>/dev/null
      wait "$p" 2>/dev/null
    fi
  done
  for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the tree (scripts/bench/gen-tree.ts, shared with build.sh) ---
TREE_HOME="$BENCH_DIR/tree-${BENCH_SIZE_MB}m-seed$BENCH_SEED"
TREE="$TREE_HOME/tree"
mkdir -p "$TREE_HOME" "$WORK" "$LOGS"
node --import tsx "$ROOT/scripts/bench/gen-tree.ts" "$TREE_HOME" "$BENCH_SIZE_MB" "$BENCH_SEED" >/dev/null
read -r IN_BYTES IN_FILES < <(find "$TREE" -type f -printf '%s\n' | awk '{ s += $1; n++ } END { printf "%d %d\n", s, n }')
IN_DIRS=$(find "$TREE" -type d | wc -l)

pick_seq_files "$TREE" # SEQ_MIN, SEQ_FILES, SEQ_BYTES (common.sh)

# --- the images ---
IMG="$WORK/img"
mkdir -p "$IMG"
SQ_IMG="$IMG/tree.sqfs"
SQ_STAMP="$IMG/tree.sqfs.stamp"
sq_key="$(cat "$TREE_HOME/manifest.json") $(mksquashfs -version 2>&1 | head -n 1) -comp zstd"
if [ -f "$SQ_IMG" ] && [ -f "$SQ_STAMP" ] && [ "$(cat "$SQ_STAMP")" = "$sq_key" ]; then
  log "reusing $SQ_IMG"
else
  log "mksquashfs -comp zstd → $SQ_IMG"
  rm -f "$SQ_IMG" "$SQ_STAMP"
  mksquashfs "$TREE" "$SQ_IMG" -comp zstd -noappend -quiet >"$LOGS/mksquashfs.log" 2>&1 || { cat "$LOGS/mksquashfs.log" >&2; die "mksquashfs failed"; }
  printf '%s' "$sq_key" >"$SQ_STAMP"
fi
# The Damselfly image is built every run, so that it reflects the current builder.
DF_BOOT="$IMG/dfly.boot"
DF_BLOBS="$IMG/dfly-blobs"
VIEWS="$IMG/dfly-views"
rm -rf "$DF_BOOT" "$DF_BLOBS" "$VIEWS"
log "damselfly build (zstd) → $DF_BOOT, $DF_BLOBS"
"${DAMSELFLY[@]}" build --bootstrap "$DF_BOOT" --blob-dir "$DF_BLOBS" --compressor zstd "$TREE" >"$LOGS/damselfly-build.log" 2>&1 ||
  { cat "$LOGS/damselfly-build.log" >&2; die "damselfly build failed"; }
log "damselfly export → $VIEWS"
mapfile -t VIEW_FILES < <("${DAMSELFLY[@]}" export --bootstrap "$DF_BOOT" --blob-dir "$DF_BLOBS" --blob-views "$VIEWS" --json 2>"$LOGS/damselfly-export.log" |
  node -e 'for (const p of JSON.parse(require("fs").readFileSync(0, "utf8"))) console.log(p)')
[ ${#VIEW_FILES[@]} -gt 0 ] || { cat "$LOGS/damselfly-export.log" >&2; die "damselfly export wrote no blob view"; }
sync
dir_bytes() { find "$@" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d\n", s }'; }
SQ_SIZE=$(stat -c %s "$SQ_IMG")
DF_SIZE=$(dir_bytes "$DF_BOOT" "$DF_BLOBS")
VIEW_SIZE=$(dir_bytes "$VIEWS")

# --- mounts ---
mkdir -p "$MNT/sq" "$MNT/erofs" "$MNT/dfly"
for m in sq erofs dfly; do
  ! is_mounted "$MNT/$m" || umount "$MNT/$m" || umount -l "$MNT/$m" || die "$MNT/$m is mounted and cannot be unmounted"
done
CACHE_EMPTY="$WORK/cache-empty"
CACHE_FULL="$WORK/cache-full"
CLK_TCK=$(getconf CLK_TCK)
declare -A MOUNT_SECS

# CPU seconds (user + system) a live process has used, from /proc/PID/stat.
cpu_secs() {
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || {
    echo 0
    return
  }
  # Fields after "pid (comm) ": state is 1, utime 12, stime 13.
  awk -v t="$CLK_TCK" '{ printf "%.3f\n", ($12 + $13) / t }' <<<"${s##*) }"
}

wait_mounted() { # mountpoint pid log name
  local i
  for ((i = 0; i < 1200; i++)); do
    if mountpoint -q "$1" && stat "$1" >/dev/null 2>&1; then return 0; fi
    kill -0 "$2" 2>/dev/null || {
      cat "$3" >&2
      die "$4 exited before mounting $1 (log above)"
    }
    sleep 0.05
  done
  cat "$3" >&2
  die "$4 did not mount $1 within 60 s"
}


mount_sq() {
  local t0=$EPOCHREALTIME
  squashfuse -f "$SQ_IMG" "$MNT/sq" >"$LOGS/squashfuse.log" 2>&1 &
  SQ_PID=$!
  wait_mounted "$MNT/sq" "$SQ_PID" "$LOGS/squashfuse.log" squashfuse
  MOUNT_SECS[sq]=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
}
umount_sq() {
  [ -n "$SQ_PID" ] || return 0
  umount "$MNT/sq"
  wait_exit "$SQ_PID" squashfuse "the unmount"
  SQ_PID=
}

# mount_df CACHE_DIR LOG [extra node options...]
mount_df() {
  local cache=$1 dlog=$2 t0=$EPOCHREALTIME
  shift 2
  local cache_opts=()
  [ -z "$cache" ] || cache_opts=(--cache-dir "$cache")
  node "$@" "$ROOT/bin/damselfly.js" mount --bootstrap "$DF_BOOT" --blob-dir "$DF_BLOBS" "${cache_opts[@]}" --stats "$MNT/dfly" >"$dlog" 2>&1 &
  DF_PID=$!
  DF_LAST_PID=$DF_PID
  wait_mounted "$MNT/dfly" "$DF_PID" "$dlog" "damselfly mount"
  MOUNT_SECS[dfly]=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')
}
umount_df() {
  [ -n "$DF_PID" ] || return 0
  umount "$MNT/dfly"
  wait_exit "$DF_PID" "damselfly mount" "the unmount"
  DF_PID=
}

mount_erofs() {
  local boot dev opts=ro v
  boot=$(losetup -f --show -r "$DF_BOOT")
  LOOPS+=("$boot")
  for v in "${VIEW_FILES[@]}"; do
    dev=$(losetup -f --show -r "$v")
    LOOPS+=("$dev")
    opts+=",device=$dev"
  done
  mount -t erofs -o "$opts" "$boot" "$MNT/erofs"
}

drop_caches() {
  sync
  echo 3 >/proc/sys/vm/drop_caches
}

# --- the lines ---
LINES=(seq tar stat)
declare -A LINE_NAME=([seq]="seq read" [tar]="tar" [stat]="find|stat")
TAR_BYTES_FILE="$WORK/.tar-bytes"
run_line() { # line mountpoint
  case $1 in
    seq) (cd "$2" && cat "${SEQ_FILES[@]}" >/dev/null) ;;
    tar) tar -C "$2" -cf - . | wc -c >"$TAR_BYTES_FILE" ;;
    stat) find "$2" -type f -print0 | xargs -0 stat >/dev/null ;;
  esac
}

declare -A BEST BEST_CPU TAR_BYTES
RESULTS="$WORK/results.tsv"
printf 'system\tline\tcache\trun\twall_s\tdaemon_cpu_s\n' >"$RESULTS"
# measure system line cache run [daemon pid]
measure() {
  local sys=$1 line=$2 cache=$3 run=$4 pid=${5:-} mnt c0=0 c1=0 t0 t1 wall cpu key="$1/$2/$3"
  case $sys in sq) mnt="$MNT/sq" ;; erofs) mnt="$MNT/erofs" ;; dfly) mnt="$MNT/dfly" ;; esac
  if [ -n "$pid" ]; then c0=$(cpu_secs "$pid"); fi
  t0=$EPOCHREALTIME
  run_line "$line" "$mnt" || die "$line on $sys failed"
  t1=$EPOCHREALTIME
  if [ -n "$pid" ]; then c1=$(cpu_secs "$pid"); fi
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  if [ -n "$pid" ]; then cpu=$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.3f", b - a }'); else cpu=-; fi
  if [ "$line" = tar ]; then TAR_BYTES[$sys]=$(cat "$TAR_BYTES_FILE"); fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$sys" "$line" "$cache" "$run" "$wall" "$cpu" >>"$RESULTS"
  log "$(printf 'run %d  %-5s %-9s %-10s %8.3f s  (daemon CPU %s s)' "$run" "$sys" "${LINE_NAME[$line]}" "$cache" "$wall" "$cpu")"
  if [ -z "${BEST[$key]:-}" ] || awk -v a="$wall" -v b="${BEST[$key]}" 'BEGIN { exit !(a < b) }'; then
    BEST[$key]=$wall
    BEST_CPU[$key]=$cpu
  fi
}

log "tree $TREE: $IN_FILES files, $IN_DIRS directories, $IN_BYTES bytes; seq read: ${#SEQ_FILES[@]} files, $SEQ_BYTES bytes"
mount_erofs

# Populate the chunk cache once: read the whole tree through Damselfly.
rm -rf "$CACHE_FULL"
log "priming the chunk cache $CACHE_FULL (tar of the whole tree through damselfly mount)"
drop_caches
mount_df "$CACHE_FULL" "$LOGS/damselfly-prime.log"
prime_t0=$EPOCHREALTIME
run_line tar "$MNT/dfly"
PRIME_SECS=$(awk -v a="$prime_t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
umount_df
CACHE_SIZE=$(dir_bytes "$CACHE_FULL")

for ((run = 1; run <= BENCH_RUNS; run++)); do
  for line in "${LINES[@]}"; do
    # squashfuse: fresh mount after the drop, then the same again (warm).
    drop_caches
    mount_sq
    measure sq "$line" cold "$run" "$SQ_PID"
    measure sq "$line" warm "$run" "$SQ_PID"
    umount_sq
    # kernel EROFS: the drop empties its caches.
    drop_caches
    measure erofs "$line" cold "$run"
    measure erofs "$line" warm "$run"
    # Damselfly, cold without a chunk cache.
    drop_caches
    mount_df "" "$LOGS/damselfly-$line-none.log"
    measure dfly "$line" cold-none "$run" "$DF_PID"
    umount_df
    # Damselfly, cold with an empty chunk cache.
    rm -rf "$CACHE_EMPTY"
    drop_caches
    mount_df "$CACHE_EMPTY" "$LOGS/damselfly-$line-empty.log"
    measure dfly "$line" cold-empty "$run" "$DF_PID"
    umount_df
    # Damselfly, cold with the populated chunk cache, then warm.
    drop_caches
    mount_df "$CACHE_FULL" "$LOGS/damselfly-$line-full.log"
    measure dfly "$line" cold-full "$run" "$DF_PID"
    measure dfly "$line" warm "$run" "$DF_PID"
    umount_df
  done
done
rm -rf "$CACHE_EMPTY"

# --- report ---
CORES=$(nproc)
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
pkgver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo '?'; }
DMF_VERSION="$(node -p "require('$ROOT/package.json').version") ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no git')$(git -C "$ROOT" diff --quiet HEAD -- src native 2>/dev/null || echo ', with uncommitted changes'))"
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

echo
echo "== Damselfly FUSE read benchmark =="
echo "machine: $CORES cores ($CPU_MODEL), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r)"
echo "versions: damselfly $DMF_VERSION on node $(node --version); squashfuse $(pkgver squashfuse) (libfuse3 $(pkgver libfuse3-3)); $(mksquashfs -version 2>&1 | head -n 1)"
echo "tree: $TREE (seed $BENCH_SEED)"
echo "      $IN_FILES files, $IN_DIRS directories, $IN_BYTES bytes ($(mib "$IN_BYTES"))"
echo "seq read: ${#SEQ_FILES[@]} files > $SEQ_MIN without exact copies, $SEQ_BYTES bytes ($(mib "$SEQ_BYTES"))"
echo "images: squashfs zstd $(mib "$SQ_SIZE"); damselfly zstd (bootstrap + blobs) $(mib "$DF_SIZE"); blob views (EROFS devices) $(mib "$VIEW_SIZE"); chunk cache $(mib "$CACHE_SIZE")"
echo "mount time (last cold mount, not in the timings): squashfuse ${MOUNT_SECS[sq]} s, damselfly ${MOUNT_SECS[dfly]} s; priming the chunk cache: $PRIME_SECS s"
tar_check="tar stream bytes: squashfuse ${TAR_BYTES[sq]:-?}, EROFS ${TAR_BYTES[erofs]:-?}, damselfly ${TAR_BYTES[dfly]:-?}"
if [ "${TAR_BYTES[sq]:-}" = "${TAR_BYTES[dfly]:-}" ] && [ "${TAR_BYTES[erofs]:-}" = "${TAR_BYTES[dfly]:-}" ]; then echo "$tar_check (equal)"; else echo "$tar_check (DIFFERENT!)"; fi
echo "cold: sync + drop_caches (+ a fresh FUSE mount); warm: the same command again right after;"
echo "      damselfly cold, no cache: no --cache-dir (chunks read from the blob dir, decompressed, verified);"
echo "      damselfly cold, empty cache: new --cache-dir (chunks read from the blob dir, decompressed, verified, cached);"
echo "      damselfly cold, full cache: --cache-dir populated beforehand (page cache of the cache file dropped too)"
echo "runs: $BENCH_RUNS, best wall time shown; MB = 10^6 bytes; speed ratio x > 1: Damselfly is faster;"
echo "      dfly CPU: user + system CPU of the damselfly process in that run (squashfuse's in brackets)"
echo

rate() { # line seconds
  case $1 in
    seq) awk -v b="$SEQ_BYTES" -v s="$2" 'BEGIN { printf "%.0f", b / s / 1e6 }' ;;
    tar) awk -v b="$IN_BYTES" -v s="$2" 'BEGIN { printf "%.0f", b / s / 1e6 }' ;;
    stat) awk -v b="$IN_FILES" -v s="$2" 'BEGIN { printf "%.0f", b / s }' ;;
  esac
}
declare -A UNIT=([seq]="MB/s" [tar]="MB/s" [stat]="files/s")
printf '%-10s %-7s %-11s %9s %8s %9s %8s %9s %8s %7s %8s %8s  %s\n' line unit cache 'sqfuse s' rate 'EROFS s' rate 'dfly s' rate 'x sqfs' 'x EROFS' 'dfly CPU' goals
MISS_SQ=()
MISS_EROFS=()
for line in "${LINES[@]}"; do
  for cache in cold-none cold-empty cold-full warm; do
    case $cache in
      cold-none) other=cold label="cold,none" ;;
      cold-empty) other=cold label="cold,empty" ;;
      cold-full) other=cold label="cold,full" ;;
      warm) other=warm label="warm" ;;
    esac
    sq=${BEST[sq/$line/$other]}
    er=${BEST[erofs/$line/$other]}
    df=${BEST[dfly/$line/$cache]}
    xs=$(awk -v o="$sq" -v d="$df" 'BEGIN { printf "%.2f", o / d }')
    xe=$(awk -v o="$er" -v d="$df" 'BEGIN { printf "%.2f", o / d }')
    goals=""
    if awk -v x="$xs" 'BEGIN { exit !(x >= 1) }'; then goals=">=sqfs ok"; else
      goals=">=sqfs MISS"
      MISS_SQ+=("${LINE_NAME[$line]} $label")
    fi
    if [ "$cache" = warm ]; then
      if awk -v x="$xe" 'BEGIN { exit !(x >= 0.5) }'; then goals+=", <=2x EROFS ok"; else
        goals+=", <=2x EROFS MISS"
        MISS_EROFS+=("${LINE_NAME[$line]} $label")
      fi
    fi
    printf '%-10s %-7s %-11s %9.3f %8s %9.3f %8s %9.3f %8s %7s %8s %8s  %s\n' "${LINE_NAME[$line]}" "${UNIT[$line]}" "$label" \
      "$sq" "$(rate "$line" "$sq")" "$er" "$(rate "$line" "$er")" "$df" "$(rate "$line" "$df")" "$xs" "$xe" \
      "$(printf '%.2f' "${BEST_CPU[dfly/$line/$cache]}") ($(printf '%.2f' "${BEST_CPU[sq/$line/$other]}"))" "$goals"
  done
done
echo
if [ ${#MISS_SQ[@]} -eq 0 ]; then
  echo "goal: Damselfly at least as fast as squashfuse on every line: met"
else
  echo "goal: Damselfly at least as fast as squashfuse on every line: NOT met ($(IFS=';'; echo "${MISS_SQ[*]}" | sed 's/;/; /g'))"
fi
if [ ${#MISS_EROFS[@]} -eq 0 ]; then
  echo "goal: Damselfly within 2x of kernel EROFS on warm reads: met"
else
  echo "goal: Damselfly within 2x of kernel EROFS on warm reads: NOT met ($(IFS=';'; echo "${MISS_EROFS[*]}" | sed 's/;/; /g'))"
fi
# Requests the kernel sent and what the chunk path did, from --stats of the last run's mounts.
df_stats() { # log
  sed -n '/^{$/,/^}$/p' "$1" 2>/dev/null | node -e '
    const s = JSON.parse(require("fs").readFileSync(0, "utf8") || "{}");
    const g = (k) => s[k] ?? 0;
    const r = (k) => g(`fuse.requests.${k}`);
    console.log(`READ ${r("READ")}, OPEN+FLUSH+RELEASE ${r("OPEN") + r("FLUSH") + r("RELEASE")}, ` +
      `LOOKUP+GETATTR ${r("LOOKUP") + r("GETATTR")}, READDIR(PLUS) ${r("READDIR") + r("READDIRPLUS")}, ` +
      `chunks fetched ${g("storage.chunks_fetched")}, backend reads ${g("storage.backend_requests")}, cache hits ${g("storage.cache_hits")}`);' 2>/dev/null || true
}
echo "damselfly --stats (run $BENCH_RUNS):"
for line in "${LINES[@]}"; do
  printf '  %-9s cold,none:        %s\n' "${LINE_NAME[$line]}" "$(df_stats "$LOGS/damselfly-$line-none.log")"
  printf '  %-9s cold,empty:       %s\n' "${LINE_NAME[$line]}" "$(df_stats "$LOGS/damselfly-$line-empty.log")"
  printf '  %-9s cold,full + warm: %s\n' "${LINE_NAME[$line]}" "$(df_stats "$LOGS/damselfly-$line-full.log")"
done
echo "(every run: $RESULTS; logs: $LOGS)"

# --- optional profile ---
# V8's sampling profiler sees only the main thread's JavaScript; where perf works, a perf profile
# of the whole process (every thread, kernel included; JIT frames named by --perf-basic-prof)
# follows it.
perf_ok=0
if command -v perf >/dev/null && perf record -q -e cpu-clock -o /dev/null true >/dev/null 2>&1; then perf_ok=1; fi
profile_df() { # kind description cache-dir lines...
  local kind=$1 desc=$2 cache=$3 dir="$WORK/prof/$1" l
  shift 3
  mkdir -p "$dir"
  drop_caches
  local opts=(--cpu-prof --cpu-prof-dir="$dir")
  [ "$perf_ok" = 1 ] && opts+=(--perf-basic-prof)
  mount_df "$cache" "$LOGS/damselfly-prof-$kind.log" "${opts[@]}"
  if [ "$perf_ok" = 1 ]; then
    perf record -q -e cpu-clock -F 999 -g -p "$DF_PID" -o "$dir/perf.data" >"$dir/perf.log" 2>&1 &
    PERF_PID=$!
    sleep 0.5
  fi
  for l in "$@"; do run_line "$l" "$MNT/dfly"; done
  if [ -n "$PERF_PID" ]; then
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    PERF_PID=
  fi
  umount_df
  echo
  echo "profile of damselfly mount: $desc"
  for f in "$dir"/*.cpuprofile; do node --import tsx "$ROOT/scripts/bench/cpuprof-top.ts" "$f" 15; done
  if [ -f "$dir/perf.data" ]; then
    echo "perf (all threads; cpu-clock samples): by object, then the top symbols (self):"
    perf report -i "$dir/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null | awk '/^ +[0-9]/ && n++ < 8'
    perf report -i "$dir/perf.data" --no-children --sort sym --stdio -g none 2>/dev/null | awk '/^ +[0-9]/ && n++ < 15'
    echo "perf (inclusive) for the main stages:"
    perf report -i "$dir/perf.data" --children --sort sym --stdio -g none 2>/dev/null |
      grep -E '\] (uv__io_poll|worker|__libc_pread|__libc_pwrite|fuse_dev_write|fuse_dev_do_read|schedule|__x64_sys_futex|asm_exc_page_fault|node::fs::WriteBuffers?|damselfly::.*Decompress.*|v8::internal::OptimizedCompilationJob::ExecuteJob)$' | head -20
  fi
  rm -f "/tmp/perf-$DF_LAST_PID.map"
}
if [ "$BENCH_PROFILE" = 1 ]; then
  rm -rf "$WORK/prof" "$CACHE_EMPTY"
  log "profiling damselfly mount: cold tar with an empty chunk cache"
  profile_df empty "cold tar, empty chunk cache" "$CACHE_EMPTY" tar
  log "profiling damselfly mount: cold tar with the populated chunk cache, then a warm tar"
  profile_df full "cold tar then warm tar, populated chunk cache" "$CACHE_FULL" tar tar
  rm -rf "$CACHE_EMPTY"
fi

if [ "$BENCH_KEEP" != 1 ]; then
  umount "$MNT/erofs"
  for l in "${LOOPS[@]}"; do losetup -d "$l"; done
  LOOPS=()
  rm -rf "$CACHE_FULL" "$CACHE_EMPTY" "$VIEWS" "$DF_BOOT" "$DF_BLOBS"
fi
