#!/usr/bin/env bash
# virtio-fs benchmark: one Linux guest (QEMU/TCG, scripts/guest/run-guest.sh) with four
# vhost-user-fs devices. Two of them serve the same generated tree (scripts/bench/gen-tree.ts),
# read-only (the image lines):
#   vfsd   the reference C virtiofsd (/usr/lib/qemu/virtiofsd, qemu-system-common) on the tree
#          itself, with its defaults (cache=auto, sandbox=namespace, no xattr)
#   dfly   `damselfly virtiofs` on the Damselfly image of the tree (RAFS v6, zstd), warm: its
#          --cache-dir chunk cache is populated beforehand (a host FUSE mount reads the whole tree),
#          so the measured run fetches no chunk from the blob dir (checked: storage.chunks_fetched
#          in its --stats must be 0)
# In the guest, for each backend in turn (the order alternates between runs):
#   seq read   cat of the large files (> 8 MiB, or > 1 MiB in small trees; exact copies left
#              out) > /dev/null
#   tar        tar cf - . | wc -c of the whole tree (piped, so that file data is really read;
#              the byte counts of the two backends are compared)
#   find|stat  find . -type f -print0 | xargs -0 stat > /dev/null (metadata only)
# The other two serve a fresh, empty host directory each, read-write (the passthrough lines: the
# shared directory of Kata's `shared_fs = "virtio-fs"`):
#   ptvfsd the C virtiofsd on its directory, its defaults plus -o xattr -o announce_submounts
#          (the same semantics as the Damselfly line; no --thread-pool-size: its default of 0,
#          requests handled on the queue thread, is its faster setting here)
#   ptdfly damselfly started as Kata's runtime starts virtiofsd: --socket-path --shared-dir
#          --cache auto --thread-pool-size=1 -o announce_submounts --xattr
# In the guest, on each of them:
#   create     cp -r of BENCH_PT_FILES files of BENCH_PT_FILE_KB KiB (made beforehand in the
#              guest's tmpfs, so one process creates and writes every file; the count is checked)
#   delete     rm -r of those files
#   write      dd if=/dev/zero bs=1M count=BENCH_PT_MB conv=fsync (the data reaches the host
#              disk within the timing; the size is checked)
#   read       dd of that file to /dev/null (the host has it in its page cache; the guest not)
# Same guest boot rather than a second phase: both kinds of lines then share one TCG guest, one
# set of warm-ups and one timeline of host load, and the run stays a single QEMU start.
# Every line is preceded by `sync; echo 3 > /proc/sys/vm/drop_caches` in the guest (so every line
# goes through virtio-fs) and timed by the guest's clock (busybox adjtimex, microseconds). Every
# line runs BENCH_RUNS times per backend; the best is reported, with Damselfly's speed ratio
# (virtiofsd time / Damselfly time; > 1: Damselfly is faster) and the goal: Damselfly at least
# as fast as virtiofsd on every line. Before the first run, a short unmeasured warm-up reads (and,
# on the passthrough mounts, writes) a little through each backend (the first use of a code path,
# the guest's TCG translations or Damselfly's JIT, would otherwise slow whichever backend goes
# first).
# Host CPU (user + system, from /proc/PID/stat, which counts all threads, exited ones too) of
# each daemon and of its descendants (the C virtiofsd forks into a new PID namespace after the
# VMM connects; its child does the work): the guest prints a sync marker before and after every
# measurement and sleeps 1 s, and the host samples every daemon at each marker (console followed
# with tail -F). CPU of each measurement is its own window; per line and in total it is divided
# by the MiB the guest read from that backend (seq read and tar bytes × runs): CPU ms per MiB,
# with the ratio virtiofsd / Damselfly (> 1: Damselfly uses less CPU per MiB). find|stat reads
# no file data: its CPU is shown per file; so is that of create and delete, while write and read
# are per MiB written or read.
#
# Usage: scripts/bench/virtiofs.sh       (as root: FUSE mount for priming, virtiofsd's sandbox)
#   BENCH_DIR=/var/tmp/damselfly-bench  work dir: the generated tree (shared with build.sh and
#                                       fuse.sh, reused when its size, seed and generator match)
#                                       and virtiofs/ (image, chunk cache, logs, results)
#   BENCH_SIZE_MB=256                   tree size in MiB (gen-tree.ts: ~22% of the bytes in a few
#                                       thousand 1-64 KiB files in nested directories, the rest
#                                       mostly in files of 10 MiB or more). The guest reads about
#                                       100 MB/s under TCG: keep it moderate
#   BENCH_SEED=1                        generator seed
#   BENCH_RUNS=3                        repetitions of every line per backend; best reported
#   BENCH_MEMORY=1G  BENCH_SMP=1        guest RAM and vCPUs
#   BENCH_QUEUE_SIZE=                   virtqueue size of both devices (empty: QEMU's 128)
#   BENCH_TIMEOUT=                      guest timeout in seconds (default: from size and runs)
#   BENCH_PT_FILES=2000 BENCH_PT_FILE_KB=4   the create/delete lines' files
#   BENCH_PT_MB=256                     the write/read lines' file, in MiB (the guest needs the
#                                       RAM for BENCH_PT_FILES x BENCH_PT_FILE_KB in its tmpfs only)
#   BENCH_PT_OPTS=                      compat options given to both passthrough daemons as they
#                                       are (-o killpriv_v2: the guest then drops setuid bits
#                                       through the daemons and stops its GETXATTR before every
#                                       write; Kata passes neither)
#   BENCH_ONLY=                         image or passthrough: only those lines (and devices)
#   BENCH_PROFILE=0                     1: profile the Damselfly daemons during the measured run
#                                       (node --cpu-prof, and perf record -g when perf works) and
#                                       print where their time goes (the timings then include the
#                                       profilers' overhead)
#   BENCH_KEEP=0                        1: keep the Damselfly image and chunk cache
#
# Host page cache: both backends are measured warm on the host too: the tree (virtiofsd's files)
# and the chunk cache and bootstrap (Damselfly's) are read once before the guest boots; the host
# has to have the RAM for that. Wall time in the guest includes the reading tools (cat, tar, wc,
# find, xargs, stat), which under TCG are slow themselves: the ratios understate differences
# between the backends. Machines are shared and noisy: only the ratios mean something, and only
# roughly. Exits non-zero on errors only (including chunks fetched in the measured run, or tar
# byte counts that differ, or passthrough files of the wrong count or size), not on missed goals.
# QEMU, the daemons, the priming FUSE mount, the passthrough directories and the temporary files
# are cleaned up on exit.
set -euo pipefail
export LC_ALL=C

# shellcheck source=scripts/bench/common.sh
. "$(dirname "$0")/common.sh"
BENCH_DIR=${BENCH_DIR:-/var/tmp/damselfly-bench}
BENCH_SIZE_MB=${BENCH_SIZE_MB:-256}
BENCH_SEED=${BENCH_SEED:-1}
BENCH_RUNS=${BENCH_RUNS:-3}
BENCH_MEMORY=${BENCH_MEMORY:-1G}
BENCH_SMP=${BENCH_SMP:-1}
BENCH_QUEUE_SIZE=${BENCH_QUEUE_SIZE:-}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-}
BENCH_PT_FILES=${BENCH_PT_FILES:-2000}
BENCH_PT_FILE_KB=${BENCH_PT_FILE_KB:-4}
BENCH_PT_MB=${BENCH_PT_MB:-256}
BENCH_ONLY=${BENCH_ONLY:-}
read -r -a PT_OPTS <<< "${BENCH_PT_OPTS:-}"
BENCH_PROFILE=${BENCH_PROFILE:-0}
BENCH_KEEP=${BENCH_KEEP:-0}
VIRTIOFSD=/usr/lib/qemu/virtiofsd

need_int BENCH_SIZE_MB "$BENCH_SIZE_MB" 16
need_int BENCH_SEED "$BENCH_SEED" 0
for v in BENCH_RUNS BENCH_SMP BENCH_PT_FILES BENCH_PT_FILE_KB BENCH_PT_MB; do need_int "$v" "${!v}" 1; done
[ -z "$BENCH_QUEUE_SIZE" ] || need_int BENCH_QUEUE_SIZE "$BENCH_QUEUE_SIZE" 1
[ -z "$BENCH_TIMEOUT" ] || need_int BENCH_TIMEOUT "$BENCH_TIMEOUT" 1
case $BENCH_ONLY in '' | image | passthrough) ;; *) die "BENCH_ONLY is image, passthrough or empty" ;; esac
IMAGE=1
PT=1
[ "$BENCH_ONLY" != passthrough ] || IMAGE=0
[ "$BENCH_ONLY" != image ] || PT=0
[ "$(id -u)" = 0 ] || die "run as root (the priming FUSE mount and virtiofsd's namespace sandbox need it)"
need_tools node qemu-system-x86_64 cpio tar xargs stat md5sum awk tail mountpoint umount
[ -x "$VIRTIOFSD" ] || die "$VIRTIOFSD is missing (apt-get install qemu-system-common)"
[ -e /dev/fuse ] || die "/dev/fuse is missing (the chunk cache is primed through a host FUSE mount)"
DAMSELFLY=(node "$ROOT/bin/damselfly.js")
CLK_TCK=$(getconf CLK_TCK)

# --- clean-up of everything this script starts, on any exit ---
mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd -P) # as /proc/self/mountinfo spells it
WORK="$BENCH_DIR/virtiofs"
LOGS="$WORK/logs"
IMG="$WORK/img"
PRIME_MNT="$WORK/prime-mnt"
RUN=$(mktemp -d /tmp/damselfly-vfsbench.XXXXXX) # sockets, guest script, console
PT_VF_DIR="$WORK/pt-vfsd" # the passthrough lines' shared directories
PT_DF_DIR="$WORK/pt-dfly"
GUEST_PID=
DF_PID=
VFSD_PID=
PTV_PID=
PTD_PID=
PRIME_PID=
PERF_PID=
cleanup() {
  set +e
  if [ -n "$PERF_PID" ] && kill -0 "$PERF_PID" 2>/dev/null; then
    kill -INT "$PERF_PID" 2>/dev/null
    wait "$PERF_PID" 2>/dev/null
  fi
  stop_pid "$GUEST_PID" # run-guest.sh stops its QEMU on any exit
  local v kids
  for v in "$VFSD_PID" "$PTV_PID"; do
    if [ -n "$v" ] && kill -0 "$v" 2>/dev/null; then
      kids=$(descendants "$v")
      stop_pid "$v"
      for k in $kids; do stop_pid "$k"; done
    fi
  done
  stop_pid "$DF_PID"
  stop_pid "$PTD_PID"
  rm -rf "$PT_VF_DIR" "$PT_DF_DIR"
  if is_mounted "$PRIME_MNT"; then umount "$PRIME_MNT" 2>/dev/null || umount -l "$PRIME_MNT"; fi
  stop_pid "$PRIME_PID"
  rm -rf "$RUN"
  [ "$BENCH_KEEP" = 1 ] || rm -rf "$IMG"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$WORK" "$LOGS"
dir_bytes() { find "$@" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d\n", s }'; }

# --- the image lines' data: the tree, the Damselfly image, its primed chunk cache ---
prepare_image() {
  # The tree (scripts/bench/gen-tree.ts, shared with build.sh and fuse.sh).
  TREE_HOME="$BENCH_DIR/tree-${BENCH_SIZE_MB}m-seed$BENCH_SEED"
  TREE="$TREE_HOME/tree"
  mkdir -p "$TREE_HOME"
  node --import tsx "$ROOT/scripts/bench/gen-tree.ts" "$TREE_HOME" "$BENCH_SIZE_MB" "$BENCH_SEED" >/dev/null
  read -r IN_BYTES IN_FILES < <(find "$TREE" -type f -printf '%s\n' | awk '{ s += $1; n++ } END { printf "%d %d\n", s, n }')
  IN_DIRS=$(find "$TREE" -type d | wc -l)
  IN_LINKS=$(find "$TREE" ! -type f ! -type d | wc -l)
  [ "$IN_LINKS" = 0 ] || die "the tree has $IN_LINKS entries that are neither files nor directories (names in the guest lists assume plain files)"
  if find "$TREE" -name '*[[:space:]]*' | grep -q .; then die "the tree has names with white space"; fi

  pick_seq_files "$TREE" # SEQ_MIN, SEQ_FILES, SEQ_BYTES (common.sh)
  printf '%s\n' "${SEQ_FILES[@]}" >"$RUN/seq.list"

  # The Damselfly image (built every run, so that it reflects the current builder).
  DF_BOOT="$IMG/dfly.boot"
  DF_BLOBS="$IMG/dfly-blobs"
  DF_CACHE="$IMG/dfly-cache"
  rm -rf "$IMG"
  mkdir -p "$IMG"
  log "damselfly build (zstd) → $DF_BOOT, $DF_BLOBS"
  "${DAMSELFLY[@]}" build --bootstrap "$DF_BOOT" --blob-dir "$DF_BLOBS" --compressor zstd "$TREE" >"$LOGS/damselfly-build.log" 2>&1 ||
    { cat "$LOGS/damselfly-build.log" >&2; die "damselfly build failed"; }
  DF_SIZE=$(dir_bytes "$DF_BOOT" "$DF_BLOBS")

  # Priming the chunk cache: a host FUSE mount reads the whole tree once.
  mkdir -p "$PRIME_MNT"
  ! is_mounted "$PRIME_MNT" || umount "$PRIME_MNT" || umount -l "$PRIME_MNT" || die "$PRIME_MNT is mounted and cannot be unmounted"
  log "priming the chunk cache $DF_CACHE (tar of the whole tree through damselfly mount)"
  "${DAMSELFLY[@]}" mount --bootstrap "$DF_BOOT" --blob-dir "$DF_BLOBS" --cache-dir "$DF_CACHE" --stats "$PRIME_MNT" >"$LOGS/damselfly-prime.log" 2>&1 &
  PRIME_PID=$!
  local i
  for ((i = 0; ; i++)); do
    if mountpoint -q "$PRIME_MNT" && stat "$PRIME_MNT" >/dev/null 2>&1; then break; fi
    kill -0 "$PRIME_PID" 2>/dev/null || { cat "$LOGS/damselfly-prime.log" >&2; die "damselfly mount exited before mounting"; }
    [ $i -lt 1200 ] || die "damselfly mount did not mount $PRIME_MNT within 60 s"
    sleep 0.05
  done
  local prime_t0=$EPOCHREALTIME
  tar -C "$PRIME_MNT" -cf - . | wc -c >/dev/null
  PRIME_SECS=$(awk -v a="$prime_t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  umount "$PRIME_MNT"
  wait "$PRIME_PID" || die "damselfly mount (priming) exited with status $?"
  PRIME_PID=
  CACHE_SIZE=$(dir_bytes "$DF_CACHE")

  # Host page cache: both backends' files warm.
  log "reading the tree, the bootstrap and the chunk cache once (host page cache)"
  find "$TREE" "$DF_BOOT" "$DF_CACHE" -type f -print0 | xargs -0 cat >/dev/null
}
IN_BYTES=0 IN_FILES=0 SEQ_BYTES=0
: >"$RUN/seq.list"
[ "$IMAGE" = 0 ] || prepare_image

# --- the passthrough lines' directories: fresh and empty, on the same host file system ---
if [ "$PT" = 1 ]; then
  rm -rf "$PT_VF_DIR" "$PT_DF_DIR"
  mkdir -p "$PT_VF_DIR" "$PT_DF_DIR"
  PT_FS=$(df -T "$PT_DF_DIR" | awk 'NR == 2 { print $2 " on " $1 }')
fi
PT_BYTES=$((BENCH_PT_MB * 1048576))
PT_SMALL_BYTES=$((BENCH_PT_FILES * BENCH_PT_FILE_KB * 1024))

# --- the guest ---
guest_info=$("$ROOT/scripts/guest/build-initramfs.sh") || die "scripts/guest/build-initramfs.sh failed"
KERNEL=$(sed -n 's/^kernel=//p' <<<"$guest_info")
INITRAMFS=$(sed -n 's/^initramfs=//p' <<<"$guest_info")
KVER=$(sed -n 's/^kver=//p' <<<"$guest_info")

IMAGE_B=()
PT_B=()
[ "$IMAGE" = 0 ] || IMAGE_B=(vfsd dfly)
[ "$PT" = 0 ] || PT_B=(ptvfsd ptdfly)
cat >"$RUN/env" <<EOF
RUNS=$BENCH_RUNS
IMAGE_B="${IMAGE_B[*]}"
PT_B="${PT_B[*]}"
PT_FILES=$BENCH_PT_FILES
PT_KB=$BENCH_PT_FILE_KB
PT_MB=$BENCH_PT_MB
EOF
# The guest's script (busybox ash). Markers, one a line:
#   DFBENCH-SYNC n RUN BACKEND LINE begin|end    the host samples every daemon's CPU here; the
#                                                guest then sleeps 1 s (outside the timings)
#   DFBENCH-RESULT RUN BACKEND LINE MICROSECONDS BYTES    BYTES: tar stream length (tar), the
#                                                file's size (write), else -
#   DFBENCH-FAIL what
# Before the runs, a short unmeasured warm-up reads (and writes) a little through each backend.
cat >"$RUN/guest.sh" <<'GUEST'
set -o pipefail
. /bench/env
n=0
now_us() { adjtimex | awk '/tv_sec/ { s = $2 } /tv_usec/ { u = $2 } END { printf "%d%06d\n", s, u }'; }
sync_point() {
  n=$((n + 1))
  echo "DFBENCH-SYNC $n $*"
  sleep 1
}
fail() {
  echo "DFBENCH-FAIL $*"
  exit 1
}
measure() { # run backend line
  dir=/mnt/$2
  sync
  echo 3 >/proc/sys/vm/drop_caches
  sync_point "$1 $2 $3 begin"
  bytes=-
  t0=$(now_us)
  case $3 in
    seq) (cd "$dir" && xargs cat </bench/seq.list >/dev/null) || fail "seq read on $2" ;;
    tar) bytes=$(cd "$dir" && tar cf - . | wc -c) || fail "tar on $2" ;;
    stat) (cd "$dir" && find . -type f -print0 | xargs -0 stat >/dev/null) || fail "find|stat on $2" ;;
    create) cp -r /tmp/small "$dir/small" || fail "create on $2" ;;
    delete) rm -r "$dir/small" || fail "delete on $2" ;;
    write) dd if=/dev/zero of="$dir/big" bs=1048576 count="$PT_MB" conv=fsync 2>/dev/null || fail "write on $2" ;;
    read) dd if="$dir/big" of=/dev/null bs=1048576 2>/dev/null || fail "read on $2" ;;
  esac
  t1=$(now_us)
  # Checks, outside the timing.
  case $3 in
    create) [ "$(ls "$dir/small" | wc -l)" = "$PT_FILES" ] || fail "create on $2: not $PT_FILES files" ;;
    delete) [ ! -e "$dir/small" ] || fail "delete on $2: $dir/small is still there" ;;
    write) bytes=$(stat -c %s "$dir/big") ;;
    read) rm "$dir/big" || fail "rm $dir/big" ;;
  esac
  echo "DFBENCH-RESULT $1 $2 $3 $((t1 - t0)) $bytes"
  sync_point "$1 $2 $3 end"
}
echo "DFBENCH-GUEST kernel $(uname -r), $(nproc) vCPU, $(awk '/MemTotal/ { printf "%d MiB", $2 / 1024 }' /proc/meminfo) RAM"
for b in $IMAGE_B $PT_B; do
  grep -q " /mnt/$b virtiofs " /proc/mounts || fail "/mnt/$b is not a virtiofs mount"
done
# The passthrough lines' small files, made once in the guest's tmpfs (one process writes them).
if [ -n "$PT_B" ]; then
  mkdir /tmp/small &&
    awk -v n="$PT_FILES" -v kb="$PT_KB" 'BEGIN {
      s = sprintf("%1023s\n", ""); d = ""
      for (i = 0; i < kb; i++) d = d s
      for (i = 0; i < n; i++) { f = sprintf("/tmp/small/f%05d", i); printf "%s", d > f; close(f) }
    }' || fail "making /tmp/small"
  [ "$(ls /tmp/small | wc -l)" = "$PT_FILES" ] || fail "/tmp/small: not $PT_FILES files"
fi
# Warm-up, not measured: the first use of each code path (the guest's TCG translations,
# Damselfly's JIT) would otherwise slow whichever backend runs first.
first=$(head -n 1 /bench/seq.list)
for b in $IMAGE_B; do
  (cd "/mnt/$b" && cat "$first" >/dev/null && find . -type f >/tmp/files && head -n 300 /tmp/files | xargs cat >/dev/null &&
    head -n 300 /tmp/files | xargs stat >/dev/null && head -n 100 /tmp/files | xargs tar cf - | wc -c >/dev/null) || fail "warm-up on $b"
done
for b in $PT_B; do
  (cd "/mnt/$b" && mkdir warm && cp /tmp/small/f000* warm/ &&
    dd if=/dev/zero of=warm/big bs=1048576 count=16 conv=fsync 2>/dev/null && sync && echo 3 >/proc/sys/vm/drop_caches &&
    cat warm/big >/dev/null && rm -r warm) || fail "warm-up on $b"
done
echo "DFBENCH-WARM done"
r=1
while [ "$r" -le "$RUNS" ]; do
  # Alternating order: odd runs virtiofsd first, even runs Damselfly first.
  if [ $((r % 2)) = 1 ]; then order="$IMAGE_B"; pt_order="$PT_B"; else
    order=$(echo "$IMAGE_B" | awk '{ for (i = NF; i > 0; i--) printf "%s ", $i }')
    pt_order=$(echo "$PT_B" | awk '{ for (i = NF; i > 0; i--) printf "%s ", $i }')
  fi
  for line in seq tar stat; do
    for b in $order; do measure "$r" "$b" "$line"; done
  done
  for line in create delete write read; do
    for b in $pt_order; do measure "$r" "$b" "$line"; done
  done
  r=$((r + 1))
done
echo "DFBENCH-DONE"
GUEST

# --- the daemons ---
# Backends: vfsd and dfly (the image lines), ptvfsd and ptdfly (the passthrough lines); each has
# its daemon's pid in DPID, its socket in SOCK, its log in DLOG.
BACKENDS=("${IMAGE_B[@]}" "${PT_B[@]}")
declare -A DPID SOCK DLOG LASTPID KIDS
declare -A PEER=([vfsd]=dfly [dfly]=vfsd [ptvfsd]=ptdfly [ptdfly]=ptvfsd)
declare -A BNAME=([vfsd]="virtiofsd" [dfly]="damselfly virtiofs" [ptvfsd]="virtiofsd (passthrough)" [ptdfly]="damselfly as virtiofsd")
for b in "${BACKENDS[@]}"; do
  SOCK[$b]="$RUN/$b.sock"
  DLOG[$b]="$LOGS/$b.log"
done
DF_NODE_OPTS=()
PERF_OK=0
if [ "$BENCH_PROFILE" = 1 ]; then
  rm -rf "$WORK/prof"
  mkdir -p "$WORK/prof"
  DF_NODE_OPTS=(--cpu-prof --cpu-prof-dir="$WORK/prof")
  if command -v perf >/dev/null && perf record -q -e cpu-clock -o /dev/null true >/dev/null 2>&1; then
    PERF_OK=1
    DF_NODE_OPTS+=(--perf-basic-prof)
  fi
fi
# (In the profile directory: --perf-basic-prof also makes V8 write isolate-*-v8.log to its cwd.)
DF_CWD=$ROOT
[ "$BENCH_PROFILE" != 1 ] || DF_CWD=$WORK/prof
start_daemon() { # backend
  case $1 in
    vfsd) "$VIRTIOFSD" --socket-path="${SOCK[vfsd]}" -o source="$TREE" >"${DLOG[vfsd]}" 2>&1 & ;;
    ptvfsd) "$VIRTIOFSD" --socket-path="${SOCK[ptvfsd]}" -o source="$PT_VF_DIR" -o xattr -o announce_submounts "${PT_OPTS[@]}" >"${DLOG[ptvfsd]}" 2>&1 & ;;
    dfly)
      (cd "$DF_CWD" &&
        exec node "${DF_NODE_OPTS[@]}" "$ROOT/bin/damselfly.js" virtiofs --socket-path "${SOCK[dfly]}" --bootstrap "$DF_BOOT" --blob-dir "$DF_BLOBS" --cache-dir "$DF_CACHE" --stats) >"${DLOG[dfly]}" 2>&1 &
      ;;
    ptdfly)
      (cd "$DF_CWD" &&
        exec node "${DF_NODE_OPTS[@]}" "$ROOT/bin/damselfly.js" --socket-path "${SOCK[ptdfly]}" --shared-dir "$PT_DF_DIR" --cache auto --thread-pool-size=1 -o announce_submounts --xattr "${PT_OPTS[@]}") >"${DLOG[ptdfly]}" 2>&1 &
      ;;
  esac
  DPID[$1]=$!
}
for b in "${BACKENDS[@]}"; do start_daemon "$b"; done
VFSD_PID=${DPID[vfsd]:-}
DF_PID=${DPID[dfly]:-}
PTV_PID=${DPID[ptvfsd]:-}
PTD_PID=${DPID[ptdfly]:-}
listening() { # backend
  case $1 in
    vfsd | ptvfsd) [ -S "${SOCK[$1]}" ] ;;
    *) grep -q 'Waiting for vhost-user socket connection' "${DLOG[$1]}" ;;
  esac
}
for b in "${BACKENDS[@]}"; do
  for ((i = 0; ; i++)); do
    listening "$b" && break
    kill -0 "${DPID[$b]}" 2>/dev/null || { cat "${DLOG[$b]}" >&2; die "${BNAME[$b]} exited before listening"; }
    [ $i -lt 600 ] || die "${BNAME[$b]} did not listen within 30 s"
    sleep 0.05
  done
done
DF_PIDS=()
for b in dfly ptdfly; do [ -z "${DPID[$b]:-}" ] || DF_PIDS+=("${DPID[$b]}"); done
if [ "$PERF_OK" = 1 ]; then
  perf record -q -e cpu-clock -F 999 -g -p "$(IFS=,; echo "${DF_PIDS[*]}")" -o "$WORK/prof/perf.data" >"$WORK/prof/perf.log" 2>&1 &
  PERF_PID=$!
fi

# CPU ticks (user + system) of each process given and its descendants, from /proc/PID/stat, in
# one pass: one number per pid, in order.
tree_ticks() { # pid...
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v roots="$*" '
    { s = $0; pid = $1; sub(/^.*\) /, "", s); split(s, f, " "); parent[pid] = f[2]; ticks[pid] = f[12] + f[13] }
    END {
      n = split(roots, r, " ")
      for (i = 1; i <= n; i++) {
        split("", want)
        want[r[i]] = 1
        do { added = 0; for (p in parent) if (!(p in want) && (parent[p] in want)) { want[p] = 1; added = 1 } } while (added)
        t = 0; for (p in want) t += ticks[p]; printf "%d%s", t, (i < n ? " " : "\n")
      }
    }'
}

# --- the measured guest run ---
if [ -n "$BENCH_TIMEOUT" ]; then TIMEOUT=$BENCH_TIMEOUT; else
  # ~10 MB/s worst case for everything read, plus the syncs, the stat lines and the boot; and
  # ~5 MB/s for the passthrough lines' data, ~100 files/s for their files.
  TIMEOUT=$((120 + BENCH_RUNS * (IMAGE * (2 * (SEQ_BYTES + IN_BYTES) / 10000000 + 6 * 2 + 2 * IN_FILES / 200) +
    PT * (2 * 2 * PT_BYTES / 5000000 + 2 * 2 * BENCH_PT_FILES / 100 + 8 * 2))))
fi
CONSOLE="$RUN/console.log"
fsopt() { if [ -n "$BENCH_QUEUE_SIZE" ]; then echo "$1:$BENCH_QUEUE_SIZE"; else echo "$1"; fi; }
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
[ "$IMAGE" = 0 ] || log "tree $TREE: $IN_FILES files, $IN_DIRS directories, $IN_BYTES bytes; seq read: ${#SEQ_FILES[@]} files, $SEQ_BYTES bytes"
[ "$PT" = 0 ] || log "passthrough: $PT_VF_DIR and $PT_DF_DIR ($PT_FS): $BENCH_PT_FILES files of $BENCH_PT_FILE_KB KiB, a $BENCH_PT_MB MiB file"
LINES_DESC=()
[ "$IMAGE" = 0 ] || LINES_DESC+=("seq read, tar, find|stat")
[ "$PT" = 0 ] || LINES_DESC+=("create, delete, write, read")
log "booting the guest (timeout ${TIMEOUT}s): $BENCH_RUNS runs of $(IFS=';'; echo "${LINES_DESC[*]}" | sed 's/;/; /') on each backend"
FS_ARGS=()
for b in "${BACKENDS[@]}"; do FS_ARGS+=(--fs "$(fsopt "${SOCK[$b]}:$b")"); done
guest_t0=$EPOCHREALTIME
"$ROOT/scripts/guest/run-guest.sh" --kernel "$KERNEL" --initramfs "$INITRAMFS" "${FS_ARGS[@]}" \
  --script "$RUN/guest.sh" --add "$RUN/env:/bench/env" --add "$RUN/seq.list:/bench/seq.list" \
  --memory "$BENCH_MEMORY" --smp "$BENCH_SMP" --timeout "$TIMEOUT" --log "$CONSOLE" --quiet \
  >"$LOGS/run-guest.out" 2>"$LOGS/run-guest.err" &
GUEST_PID=$!

declare -A SYNC # "backend|run backend line phase" -> ticks of that backend's daemon
on_line() {
  local l=$1 f t i
  case $l in
    DFBENCH-SYNC\ *)
      read -ra f <<<"$l"
      local pids=()
      for i in "${BACKENDS[@]}"; do pids+=("${DPID[$i]}"); done
      read -ra t <<<"$(tree_ticks "${pids[@]}")"
      for i in "${!BACKENDS[@]}"; do SYNC["${BACKENDS[$i]}|${f[2]} ${f[3]} ${f[4]} ${f[5]}"]=${t[$i]}; done
      for i in vfsd ptvfsd; do
        [ -z "${DPID[$i]:-}" ] || [ -n "${KIDS[$i]:-}" ] || KIDS[$i]=$(descendants "${DPID[$i]}" | paste -sd, -)
      done
      ;;
    DFBENCH-RESULT\ *)
      read -ra f <<<"$l"
      log "$(printf 'run %s  %-6s  %-6s %8.3f s' "${f[1]}" "${f[2]}" "${f[3]}" "$(awk -v u="${f[4]}" 'BEGIN { print u / 1e6 }')")"
      ;;
    DFBENCH-FAIL\ * | DFBENCH-GUEST\ *) log "guest: ${l#DFBENCH-}" ;;
    DFBENCH-DONE)
      # Every figure is in. The guest then unmounts its shares and powers off; that has been seen
      # to hang in the umount of the C virtiofsd's share (its DESTROY never answered), which would
      # hold the run until the timeout and lose the results: the guest gets a minute, then is stopped.
      (sleep 60 && kill -0 "$GUEST_PID" 2>/dev/null && : >"$RUN/guest-stopped" && kill -TERM "$GUEST_PID") &
      ;;
  esac
}
while IFS= read -r line; do
  on_line "${line%$'\r'}"
done < <(tail -n +1 -F --pid="$GUEST_PID" "$CONSOLE" 2>/dev/null)
GUEST_RC=0
wait "$GUEST_PID" || GUEST_RC=$?
GUEST_PID=
GUEST_SECS=$(awk -v a="$guest_t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
cp "$CONSOLE" "$LOGS/console.log"
if [ "$GUEST_RC" != 0 ] && [ -e "$RUN/guest-stopped" ] && grep -aq '^DFBENCH-DONE' "$CONSOLE"; then
  hung=$(grep -ao 'DAMSELFLY-GUEST-UMOUNT [a-z]* ok' "$CONSOLE" | awk '{print $2}' | paste -sd' ' - || true)
  log "warning: the guest finished its measurements but did not power off within 60 s (shares unmounted before it hung: ${hung:-none}); stopped it"
  GUEST_RC=0
fi
if [ "$GUEST_RC" != 0 ]; then
  tail -n 40 "$CONSOLE" >&2
  cat "$LOGS/run-guest.err" >&2
  die "the guest run failed (run-guest.sh status $GUEST_RC; console: $LOGS/console.log)"
fi
grep -aq '^DFBENCH-DONE' "$CONSOLE" || die "the guest did not finish its measurements (console: $LOGS/console.log)"

# The daemons end when QEMU disconnects; damselfly virtiofs prints its --stats then.
if [ -n "$PERF_PID" ]; then
  kill -INT "$PERF_PID" 2>/dev/null || true
  wait "$PERF_PID" 2>/dev/null || true
  PERF_PID=
fi
for b in "${BACKENDS[@]}"; do
  wait_exit "${DPID[$b]}" "${BNAME[$b]}" "QEMU ended"
  LASTPID[$b]=${DPID[$b]}
done
DF_PID= VFSD_PID= PTV_PID= PTD_PID=

CHUNKS_FETCHED=0
if [ "$IMAGE" = 1 ]; then
  STATS_JSON=$(sed -n '/^{$/,/^}$/p' "${DLOG[dfly]}")
  [ -n "$STATS_JSON" ] || die "damselfly virtiofs printed no --stats (log: ${DLOG[dfly]})"
  stat_of() { node -e 'const s = JSON.parse(process.argv[1]); console.log(s[process.argv[2]] ?? 0)' "$STATS_JSON" "$1"; }
  CHUNKS_FETCHED=$(stat_of storage.chunks_fetched)
fi

# --- results ---
LINES=()
[ "$IMAGE" = 0 ] || LINES+=(seq tar stat)
[ "$PT" = 0 ] || LINES+=(create delete write read)
declare -A LINE_NAME=([seq]="seq read" [tar]="tar" [stat]="find|stat" [create]="create" [delete]="delete" [write]="write" [read]="read")
declare -A BEST ALL CPU TAR_BYTES
RESULTS="$WORK/results.tsv"
printf 'run\tbackend\tline\twall_s\tbytes\tdaemon_cpu_s\tother_daemon_cpu_s\n' >"$RESULTS"
while read -r _ run b line us bytes; do
  key="$b $line"
  s=$(awk -v u="$us" 'BEGIN { printf "%.3f", u / 1e6 }')
  ALL[$key]="${ALL[$key]:-}${ALL[$key]:+ }$s"
  if [ -z "${BEST[$key]:-}" ] || awk -v a="$s" -v b="${BEST[$key]}" 'BEGIN { exit !(a < b) }'; then BEST[$key]=$s; fi
  if [ "$line" = tar ]; then TAR_BYTES[$b]="${TAR_BYTES[$b]:-}${TAR_BYTES[$b]:+ }$bytes"; fi
  [ "$line" != write ] || [ "$bytes" = "$PT_BYTES" ] || die "write on $b left a file of $bytes bytes, not $PT_BYTES (console: $LOGS/console.log)"
  k="$run $b $line"
  peer=${PEER[$b]}
  for v in "$b|$k begin" "$b|$k end" "$peer|$k begin" "$peer|$k end"; do
    [ -n "${SYNC[$v]:-}" ] || die "no CPU sample at the sync marker '$v' (console: $LOGS/console.log)"
  done
  own=$((${SYNC["$b|$k end"]} - ${SYNC["$b|$k begin"]}))
  other=$((${SYNC["$peer|$k end"]} - ${SYNC["$peer|$k begin"]}))
  CPU[$key]=$((${CPU[$key]:-0} + own))
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$b" "$line" "$s" "$bytes" \
    "$(awk -v t="$own" -v h="$CLK_TCK" 'BEGIN { printf "%.2f", t / h }')" \
    "$(awk -v t="$other" -v h="$CLK_TCK" 'BEGIN { printf "%.2f", t / h }')" >>"$RESULTS"
done < <(grep -a '^DFBENCH-RESULT ' "$CONSOLE" | tr -d '\r')
for b in "${BACKENDS[@]}"; do
  for line in "${LINES[@]}"; do
    case "$b/$line" in vfsd/seq | vfsd/tar | vfsd/stat | dfly/seq | dfly/tar | dfly/stat | pt*/create | pt*/delete | pt*/write | pt*/read) ;; *) continue ;; esac
    [ -n "${BEST[$b $line]:-}" ] || die "no result for $b $line (console: $LOGS/console.log)"
  done
done
TAR_ALL=
if [ "$IMAGE" = 1 ]; then
  # The same tar stream from both backends, every run.
  TAR_ALL=$(printf '%s\n' ${TAR_BYTES[vfsd]} ${TAR_BYTES[dfly]} | sort -u)
  [ "$(wc -l <<<"$TAR_ALL")" = 1 ] || die "tar stream lengths differ: virtiofsd ${TAR_BYTES[vfsd]}, damselfly ${TAR_BYTES[dfly]}"
  [ "$CHUNKS_FETCHED" = 0 ] || die "damselfly fetched $CHUNKS_FETCHED chunks from the blob dir in the measured run: the cache was not warm"
fi

CORES=$(nproc)
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
pkgver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo '?'; }
DMF_VERSION="$(node -p "require('$ROOT/package.json').version") ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no git')$(git -C "$ROOT" diff --quiet HEAD -- src native 2>/dev/null || echo ', with uncommitted changes'))"
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
SEQ_MIB=$(awk -v b="$SEQ_BYTES" 'BEGIN { printf "%.6f", b / 1048576 }')
TAR_MIB=$(awk -v b="$IN_BYTES" 'BEGIN { printf "%.6f", b / 1048576 }')
PT_MIB=$BENCH_PT_MB
PT_SMALL_MIB=$(awk -v b="$PT_SMALL_BYTES" 'BEGIN { printf "%.6f", b / 1048576 }')

echo
echo "== Damselfly virtio-fs benchmark (guest under QEMU/TCG) =="
echo "machine: $CORES cores ($CPU_MODEL), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r); load average before $LOAD_BEFORE, after $LOAD_AFTER"
echo "         shared and noisy: only the ratios mean something, and only roughly"
echo "guest: kernel $KVER, $BENCH_SMP vCPU (TCG), $BENCH_MEMORY RAM, queue size ${BENCH_QUEUE_SIZE:-128 (QEMU default)}; guest run ${GUEST_SECS} s"
echo "versions: damselfly $DMF_VERSION on node $(node --version); virtiofsd and QEMU $(pkgver qemu-system-common) ($VIRTIOFSD)"
echo "runs: $BENCH_RUNS per backend, alternating; best guest wall time shown (all runs in brackets); MB = 10^6 bytes;"
echo "      x = virtiofsd time / damselfly time (> 1: Damselfly is faster)"

rate() { # line seconds
  case $1 in
    seq) awk -v b="$SEQ_BYTES" -v s="$2" 'BEGIN { printf "%.0f", b / s / 1e6 }' ;;
    tar) awk -v b="$IN_BYTES" -v s="$2" 'BEGIN { printf "%.0f", b / s / 1e6 }' ;;
    stat) awk -v b="$IN_FILES" -v s="$2" 'BEGIN { printf "%.0f", b / s }' ;;
    create | delete) awk -v b="$BENCH_PT_FILES" -v s="$2" 'BEGIN { printf "%.0f", b / s }' ;;
    write | read) awk -v b="$PT_BYTES" -v s="$2" 'BEGIN { printf "%.0f", b / s / 1e6 }' ;;
  esac
}
declare -A UNIT=([seq]="MB/s" [tar]="MB/s" [stat]="files/s" [create]="files/s" [delete]="files/s" [write]="MB/s" [read]="MB/s")
# time_table VIRTIOFSD_BACKEND DAMSELFLY_BACKEND WHAT LINE...: the timings, ratios and the goal.
time_table() {
  local bv=$1 bd=$2 what=$3 line vf df x goal
  shift 3
  local misses=()
  printf '%-10s %-7s %10s %7s %10s %7s %6s  %-5s  %s\n' line unit 'virtiofsd' rate 'damselfly' rate x goal 'all runs (s): virtiofsd | damselfly'
  for line in "$@"; do
    vf=${BEST[$bv $line]}
    df=${BEST[$bd $line]}
    x=$(awk -v o="$vf" -v d="$df" 'BEGIN { printf "%.2f", o / d }')
    if awk -v o="$vf" -v d="$df" 'BEGIN { exit !(d <= o) }'; then goal=ok; else
      goal=MISS
      misses+=("${LINE_NAME[$line]}")
    fi
    printf '%-10s %-7s %9.3fs %7s %9.3fs %7s %6s  %-5s  %s | %s\n' "${LINE_NAME[$line]}" "${UNIT[$line]}" "$vf" "$(rate "$line" "$vf")" "$df" "$(rate "$line" "$df")" "$x" "$goal" "${ALL[$bv $line]}" "${ALL[$bd $line]}"
  done
  echo
  if [ ${#misses[@]} -eq 0 ]; then
    echo "goal: $what at least as fast as virtiofsd on every line: met"
  else
    echo "goal: $what at least as fast as virtiofsd on every line: NOT met ($(IFS=';'; echo "${misses[*]}" | sed 's/;/; /g'))"
  fi
}

# CPU: ticks summed over all runs of a line, per MiB the guest moved in them (per file for
# find|stat, create and delete).
cpu_s() { awk -v t="$1" -v h="$CLK_TCK" 'BEGIN { printf "%.2f", t / h }'; }
per_mib() { awk -v t="$1" -v h="$CLK_TCK" -v m="$2" -v r="$BENCH_RUNS" 'BEGIN { printf "%.2f", t / h * 1000 / (m * r) }'; }
per_file() { awk -v t="$1" -v h="$CLK_TCK" -v n="$2" -v r="$BENCH_RUNS" 'BEGIN { printf "%.1f", t / h * 1e6 / (n * r) }'; }
per_unit() { # ticks line
  case $2 in
    seq) per_mib "$1" "$SEQ_MIB" ;;
    tar) per_mib "$1" "$TAR_MIB" ;;
    stat) per_file "$1" "$IN_FILES" ;;
    image) per_mib "$1" "$(awk -v a="$SEQ_MIB" -v b="$TAR_MIB" 'BEGIN { print a + b }')" ;;
    create | delete) per_file "$1" "$BENCH_PT_FILES" ;;
    write | read) per_mib "$1" "$PT_MIB" ;;
    passthrough) per_mib "$1" "$(awk -v a="$PT_MIB" -v b="$PT_SMALL_MIB" 'BEGIN { print 2 * a + b }')" ;;
  esac
}
ratio() { awk -v o="$1" -v d="$2" 'BEGIN { if (d > 0) printf "%.2f", o / d; else if (o > 0) print "inf"; else print "-" }'; }
declare -A CPU_UNIT=([seq]="ms/MiB" [tar]="ms/MiB" [stat]="us/file" [image]="ms/MiB" [create]="us/file" [delete]="us/file" [write]="ms/MiB" [read]="ms/MiB" [passthrough]="ms/MiB")
# cpu_table VIRTIOFSD_BACKEND DAMSELFLY_BACKEND ALL_KIND LINE...
cpu_table() {
  local bv=$1 bd=$2 kind=$3 line tv td pv pd tot_v=0 tot_d=0
  shift 3
  printf '%-10s %13s %13s %9s %11s %11s %6s\n' line 'virtiofsd CPU' 'damselfly CPU' unit virtiofsd damselfly x
  for line in "$@"; do
    tv=${CPU[$bv $line]}
    td=${CPU[$bd $line]}
    tot_v=$((tot_v + tv))
    tot_d=$((tot_d + td))
    pv=$(per_unit "$tv" "$line")
    pd=$(per_unit "$td" "$line")
    printf '%-10s %12ss %12ss %9s %11s %11s %6s\n' "${LINE_NAME[$line]}" "$(cpu_s "$tv")" "$(cpu_s "$td")" "${CPU_UNIT[$line]}" "$pv" "$pd" "$(ratio "$pv" "$pd")"
  done
  pv=$(per_unit "$tot_v" "$kind")
  pd=$(per_unit "$tot_d" "$kind")
  printf '%-10s %12ss %12ss %9s %11s %11s %6s\n' "all lines" "$(cpu_s "$tot_v")" "$(cpu_s "$tot_d")" "ms/MiB" "$pv" "$pd" "$(ratio "$pv" "$pd")"
}
kids_note() { # backend
  echo "${KIDS[$1]:+ pid ${KIDS[$1]}} besides pid ${LASTPID[$1]}"
}

if [ "$IMAGE" = 1 ]; then
  echo
  echo "-- image lines: the tree, read-only --"
  echo "virtiofsd defaults: cache=auto, sandbox=namespace, no xattr"
  echo "tree: $TREE (seed $BENCH_SEED): $IN_FILES files, $IN_DIRS directories, $IN_BYTES bytes ($(mib "$IN_BYTES"))"
  echo "seq read: ${#SEQ_FILES[@]} files > $SEQ_MIN without exact copies, $SEQ_BYTES bytes ($(mib "$SEQ_BYTES"))"
  echo "damselfly image: zstd, bootstrap + blobs $(mib "$DF_SIZE"); chunk cache $(mib "$CACHE_SIZE"), primed in $PRIME_SECS s by a host FUSE tar"
  echo "warm: the chunk cache populated and in the host page cache (chunks fetched in the measured run: $CHUNKS_FETCHED);"
  echo "      virtiofsd's files in the host page cache; the guest's page cache dropped before every line"
  echo "tar stream (busybox tar in the guest): $(head -n 1 <<<"$TAR_ALL") bytes from both backends in every run"
  echo
  time_table vfsd dfly Damselfly seq tar stat
  echo
  echo "host CPU of the daemons: user + system of all threads (and, for virtiofsd, of its sandbox child"
  echo "  process$(kids_note vfsd)), within each measurement, summed over the $BENCH_RUNS runs;"
  echo "  per MiB the guest read from that backend (per file for find|stat); x = virtiofsd / damselfly (> 1: Damselfly uses less)"
  cpu_table vfsd dfly image seq tar stat
  ALL_MIB=$(awk -v a="$SEQ_MIB" -v b="$TAR_MIB" -v r="$BENCH_RUNS" 'BEGIN { printf "%.1f", (a + b) * r }')
  echo "  (all lines: every line's CPU, find|stat included, over the $ALL_MIB MiB each backend served: seq read + tar, x $BENCH_RUNS runs)"

  # What the Damselfly daemon did, from its --stats.
  echo
  EXPECT_READ=$(awk -v a="$SEQ_BYTES" -v b="$IN_BYTES" -v r="$BENCH_RUNS" 'BEGIN { printf "%d", (a + b) * r }')
  node -e '
    const s = JSON.parse(process.argv[1]);
    const g = (k) => s[k] ?? 0;
    const r = (k) => g(`fuse.requests.${k}`);
    const mib = (b) => (b / 1048576).toFixed(1);
    console.log(`damselfly --stats (whole guest run): READ ${r("READ")}, LOOKUP ${r("LOOKUP")}, GETATTR ${r("GETATTR")}, ` +
      `READDIR(PLUS) ${r("READDIR") + r("READDIRPLUS")}, OPEN+RELEASE ${r("OPEN") + r("RELEASE")}, FORGET+BATCH_FORGET ${r("FORGET") + r("BATCH_FORGET")};`);
    console.log(`  file data served ${mib(g("fs.read_bytes"))} MiB (measured: seq read + tar x runs, ${mib(Number(process.argv[2]))} MiB; the rest: the warm-up); ` +
      `chunks: ${g("storage.memory_hits")} memory hits, ${g("storage.cache_hits")} cache hits, ${g("storage.chunks_fetched")} fetched from the blob dir`);
  ' "$STATS_JSON" "$EXPECT_READ"
fi

if [ "$PT" = 1 ]; then
  echo
  echo "-- passthrough lines: a fresh host directory each ($PT_FS), read-write --"
  echo "virtiofsd: -o source=DIR -o xattr -o announce_submounts (defaults otherwise: cache=auto, sandbox=namespace,"
  echo "           thread pool 0); damselfly: --shared-dir DIR --cache auto --thread-pool-size=1 -o announce_submounts --xattr"
  [ ${#PT_OPTS[@]} -eq 0 ] || echo "both passthrough daemons also: ${PT_OPTS[*]}"
  echo "create: cp -r of $BENCH_PT_FILES files of $BENCH_PT_FILE_KB KiB from the guest's tmpfs; delete: rm -r of them;"
  echo "write: dd bs=1M count=$BENCH_PT_MB conv=fsync ($(mib "$PT_BYTES")); read: dd of that file after the guest's drop_caches"
  echo "      (the host's page cache holds it)"
  echo
  time_table ptvfsd ptdfly "Damselfly's passthrough" create delete write read
  echo
  echo "host CPU of the daemons, as above (virtiofsd's sandbox child$(kids_note ptvfsd));"
  echo "  per file created or deleted, per MiB written or read"
  cpu_table ptvfsd ptdfly passthrough create delete write read
  ALL_MIB=$(awk -v a="$PT_MIB" -v b="$PT_SMALL_MIB" -v r="$BENCH_RUNS" 'BEGIN { printf "%.1f", (2 * a + b) * r }')
  echo "  (all lines: every line's CPU over the $ALL_MIB MiB each backend moved: written + read + small files, x $BENCH_RUNS runs)"
fi
echo
echo "(every run: $RESULTS; logs and the guest console: $LOGS)"

# --- optional profile ---
if [ "$BENCH_PROFILE" = 1 ]; then
  echo
  echo "profiles of the Damselfly daemons over the whole guest run (timings above include the profilers):"
  for f in "$WORK/prof"/*.cpuprofile; do
    [ -f "$f" ] || { echo "  (no V8 CPU profile was written)"; break; }
    for b in dfly ptdfly; do
      [[ ${LASTPID[$b]:-} && $f == *".${LASTPID[$b]}."* ]] && echo "${BNAME[$b]} (pid ${LASTPID[$b]}):"
    done
    node --import tsx "$ROOT/scripts/bench/cpuprof-top.ts" "$f" 20
  done
  if [ -f "$WORK/prof/perf.data" ]; then
    echo "perf (all threads; cpu-clock samples): by process, by thread, by object, then the top symbols (self):"
    perf report -i "$WORK/prof/perf.data" --no-children --sort pid --stdio -g none 2>/dev/null | awk '/^ +[0-9]/ && n++ < 8'
    perf report -i "$WORK/prof/perf.data" --no-children --sort comm --stdio -g none 2>/dev/null | awk '/^ +[0-9]/ && n++ < 8'
    perf report -i "$WORK/prof/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null | awk '/^ +[0-9]/ && n++ < 8'
    perf report -i "$WORK/prof/perf.data" --no-children --sort sym --stdio -g none 2>/dev/null | awk '/^ +[0-9]/ && n++ < 25'
  fi
  for b in dfly ptdfly; do [ -z "${LASTPID[$b]:-}" ] || rm -f "/tmp/perf-${LASTPID[$b]}.map"; done
fi
