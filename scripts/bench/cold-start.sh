#!/usr/bin/env bash
# Cold-start benchmark: how long until a container's first command has run, from a registry
# behind a slow link, the OCI way against Damselfly's lazy loading.
#
# The image: a real Debian root filesystem, `debootstrap --variant=minbase --include=python3
# bookworm` from the apt mirror of this machine's /etc/apt/sources.list.d/ (BENCH_MIRROR
# overrides), cleaned like Docker's Debian images (no .debs in /var/cache/apt/archives, no apt
# lists), as ONE gzip tar layer (GNU tar --numeric-owner --xattrs, gzip -6 -n) of an OCI image
# (OCI layout written here: config, manifest, index). The layer tarball is cached in
# $BENCH_DIR/cold-start/rootfs/ and reused by later runs (delete it to rebuild).
# The workload: `chroot ROOT python3 -c 'import json, sqlite3; print(1)'` (env -i PATH=…), which
# must print 1. /proc, /dev and /sys are not needed for it (checked on every run: the output
# must be exactly "1").
#
# The network. Bench traffic never leaves 127.0.0.1 of a network namespace this script creates
# (damselfly-cold-PID, only `lo` in it, removed on exit with everything in it):
#   docker-registry (Debian's distribution 2.8, `docker-registry serve`, filesystem storage in
#     the work dir, open) listens on 127.0.0.1:5000 in the namespace;
#   a delaying TCP proxy (scripts/bench/delay-proxy.ts) listens on 127.0.0.1:5001 and forwards
#     to the registry, holding every chunk of data BENCH_DELAY_MS (10 ms) in each direction, in
#     order: a 20 ms round trip. The client's handshake with the proxy is instant (local), so a
#     connection's first bytes are held one extra round trip: a new connection costs an RTT as
#     on a real link. The kernel here has no netem, hence the proxy for the latency;
#   the bandwidth: `tc qdisc add dev lo root handle 1: htb` in the namespace, one class
#     `rate ceil BENCH_RATE` (100mbit) and two u32 filters putting TCP traffic from and to port
#     5001 (the proxy's client side) into it. Only that hop is shaped: the proxy <-> registry
#     hop (also on lo) is not, or the bytes would be counted twice. Unclassified traffic goes
#     through htb's direct queue at full speed;
#   every client runs INSIDE the namespace (`nsenter --net=/run/netns/NS`: network namespace
#     only, so FUSE mounts land in the host's mount namespace, where chroot and the clean-up see
#     them) and talks to the proxy, 127.0.0.1:5001: skopeo for (a), `damselfly mount` for (b),
#     `damselfly virtiofs` for (c). QEMU (c) is on the host side: it reaches the backend over its
#     vhost-user unix socket, a path in the file system, which crosses network namespaces.
#   Not emulated: TCP slow start and loss over the 20 ms path (the shaped hop itself has ~0 RTT),
#   so bulk transfers reach 100 Mbit/s at once: this favours (a), which is pure bulk transfer.
# Setting up (not timed): the OCI image is pushed with skopeo straight to the registry (port 5000,
# unshaped), then converted there with `damselfly convert --source …:latest --target …:nydus
# --plain-http` (zstd, 1 MiB chunks: the defaults), whose time is printed.
#
# The measurements, each cold: `sync; echo 3 > /proc/sys/vm/drop_caches` first, fresh output
# and cache dirs (nothing of the image on this side), and timed with bash's EPOCHREALTIME:
#   (a) OCI      `skopeo copy docker://127.0.0.1:5001/rootfs:latest oci:DIR` (manifest, config,
#                every layer, through the shaped link), then `tar -xzf` of every layer in
#                manifest order into an empty dir (no whiteouts: one layer), then the chroot.
#                Shown split into pull / unpack / run.
#   (b) Damselfly  from starting `damselfly mount --image docker://127.0.0.1:5001/rootfs:nydus
#                --plain-http --cache-dir EMPTY --stats MNT` (node's start, the manifest and the
#                bootstrap layer fetched through the link, the FUSE mount) to the chroot into MNT
#                having printed 1. Shown split into mount (until MNT is in /proc/self/mountinfo,
#                polled every few ms) / run. Then the same command again, warm (page cache and
#                chunk cache full), for python's own time; then unmount, and --stats. Then, not
#                part of (b): cold again (caches dropped, a new mount) but with the chunk cache
#                that run filled, so that only the manifest and the bootstrap cross the link:
#                what is left of (b) without fetching chunks.
#   (p) Damselfly with a prefetch table: as (b), but the image was converted with
#                `--prefetch-files` listing the files the workload read (recorded, not timed, by
#                `damselfly mount --record-pattern` on one run straight from the registry; Nydus's
#                way to optimize an image for a workload; their data at the prefetch level,
#                zstd 19 by default), and served with --prefetch: those files are fetched in the
#                background from the start. The goals are judged on (b).
#   (r) Damselfly, OCI-ref (ZRan) image: as (b), but the image was converted with `--oci-ref`
#                (nydusify's): a meta blob and the bootstrap layer pushed, the data read from the
#                original gzip layer itself, a context (about 0.5 MiB of it) at a time.
#   (q) the OCI-ref image with the prefetch table of (p) (`convert --oci-ref --prefetch-files`),
#                served with --prefetch: the contexts of those files fetched from the start.
#   (c) guest    when QEMU and the guest kernel are there (BENCH_GUEST=auto; 1 requires it, 0
#                skips it): `damselfly virtiofs --socket-path S --image … --plain-http
#                --cache-dir EMPTY --stats` in the namespace, and scripts/guest/run-guest.sh
#                (QEMU/TCG, one vhost-user-fs device, tag rootfs, mounted at /mnt/rootfs in the
#                guest) with a guest script timing the chroot into /mnt/rootfs with the guest's
#                clock (busybox adjtimex, microseconds): cold, then again after the guest drops
#                its caches (every chunk now in Damselfly's chunk cache: no fetch), then warm.
#                Boot, the bootstrap fetch and the mount are not timed (the daemon fetches the
#                bootstrap before it listens). The guest CPU is emulated (TCG): much slower than
#                the host, so (c) is reported apart; compare its bytes fetched with (b).
# Bytes fetched: what the proxy carried to the client, all of it (HTTP heads, manifests, config
# or bootstrap layer, blob bodies), counted per connection; for Damselfly also
# storage.backend_bytes from --stats (chunk data only). The image sizes: the OCI manifest's
# layers + config; the Nydus image's layers: data blobs (the bytes chunks are fetched from) +
# the bootstrap layer. The fraction shown for (b)/(c) is wire bytes / all Nydus layers; the
# chunk-only fraction (backend_bytes / data blobs) is shown too.
# Goals: Damselfly (b) at least 10x faster than (a), and fetching under 10% of the image (wire
# bytes / all Nydus layers). The script exits non-zero on errors only, not on missed goals.
# After the table: a breakdown of Damselfly's best run, to show where its time goes: its phases
# on the proxy's clock (start-up until the first request, manifest + bootstrap, until mounted,
# the run), the daemon's CPU time (/proc/PID/stat) in each, its requests (count, ranged GET
# sizes, time in flight, most at once: the per-request timeline is in logs/bRUN-timeline.txt),
# what the link alone needs for them (round trips one after the other + bytes at the rate), and
# the cold start-up of bare node and of the damselfly CLI (`mount --help`: the mount command's
# modules, which a daemon loads before its first request).
#
# Usage: scripts/bench/cold-start.sh        (as root: netns, tc, FUSE, chroot, drop_caches)
#   BENCH_DIR=/var/tmp/damselfly-bench  work dir: cold-start/rootfs/ (the cached layer),
#                                       cold-start/logs/ (logs, proxy logs and summaries,
#                                       request timelines, --stats, results.tsv: one line per
#                                       measurement; phase columns: (a) pull, unpack, run;
#                                       (b), (p) mount, run, warm run; (c) chunk-cache run, warm
#                                       run, wall time with boot)
#   BENCH_RUNS=1                        repetitions of each measurement; the best is reported
#   BENCH_GUEST=auto                    auto | 1 | 0: the in-guest measurement (c)
#   BENCH_RATE=100mbit                  link bandwidth (tc rate syntax)
#   BENCH_DELAY_MS=10                   one-way delay of the proxy (RTT = 2x)
#   BENCH_MIRROR=                       Debian mirror for debootstrap (default: from
#                                       /etc/apt/sources.list.d/ or /etc/apt/sources.list)
#   BENCH_GUEST_TIMEOUT=600             seconds before a guest run is given up
#   BENCH_DF_ARGS=                      more options for `damselfly mount` and `virtiofs` in (b)
#                                       and (c), split at spaces (e.g. --amplify-io 256K)
#   BENCH_CONVERT_ARGS=                 more options for both `damselfly convert`s, split at
#                                       spaces (e.g. --batch-size 256K)
#   BENCH_KEEP=0                        1: keep the run's work dir (registry data, pulls, mounts'
#                                       chunk caches) under cold-start/
# Cleans up on any exit: processes it started (registry, proxy, daemons, QEMU via
# run-guest.sh), its FUSE mounts, the network namespace (with its qdiscs), temporary files.
set -euo pipefail
export LC_ALL=C

# shellcheck source=scripts/bench/common.sh
. "$(dirname "$0")/common.sh"
BENCH_DIR=${BENCH_DIR:-/var/tmp/damselfly-bench}
BENCH_RUNS=${BENCH_RUNS:-1}
BENCH_GUEST=${BENCH_GUEST:-auto}
BENCH_RATE=${BENCH_RATE:-100mbit}
BENCH_DELAY_MS=${BENCH_DELAY_MS:-10}
BENCH_MIRROR=${BENCH_MIRROR:-}
BENCH_GUEST_TIMEOUT=${BENCH_GUEST_TIMEOUT:-600}
BENCH_KEEP=${BENCH_KEEP:-0}
read -ra DF_EXTRA <<<"${BENCH_DF_ARGS:-}"
read -ra CONVERT_EXTRA <<<"${BENCH_CONVERT_ARGS:-}"
SUITE=bookworm
REG_PORT=5000
PROXY_PORT=5001
PY='import json, sqlite3; print(1)'
CHROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

need_int BENCH_RUNS "$BENCH_RUNS" 1
need_int BENCH_DELAY_MS "$BENCH_DELAY_MS" 0
need_int BENCH_GUEST_TIMEOUT "$BENCH_GUEST_TIMEOUT" 1
case $BENCH_GUEST in auto | 0 | 1) ;; *) die "BENCH_GUEST is auto, 1 or 0" ;; esac
# BENCH_RATE in bits per second (tc's units: bit kbit mbit gbit, and bps kbps mbps gbps = bytes/s)
RATE_BPS=$(awk -v r="${BENCH_RATE,,}" 'BEGIN {
  if (!match(r, /^[0-9.]+/)) exit 1
  n = substr(r, 1, RLENGTH); u = substr(r, RLENGTH + 1)
  m["bit"] = 1; m["kbit"] = 1e3; m["mbit"] = 1e6; m["gbit"] = 1e9
  m["bps"] = 8; m["kbps"] = 8e3; m["mbps"] = 8e6; m["gbps"] = 8e9
  if (!(u in m)) exit 1
  printf "%.0f", n * m[u] }') || die "BENCH_RATE: use tc units, e.g. 100mbit"
[ "$(id -u)" = 0 ] || die "run as root (network namespace, tc, FUSE mount, chroot, drop_caches)"
need_tools node ip tc nsenter chroot debootstrap docker-registry skopeo curl tar gzip zcat sha256sum awk sed mountpoint umount
[ -e /dev/fuse ] || die "/dev/fuse is missing"
{ sync && echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null || die "cannot drop page caches (/proc/sys/vm/drop_caches)"
# Without NODE_EXTRA_CA_CERTS, which some CI images set: Node then parses the CA bundle at start
# (~40 ms here), for TLS that this plain-http benchmark never uses and a Kata host does not set.
DAMSELFLY=(env -u NODE_EXTRA_CA_CERTS node "$ROOT/bin/damselfly.js")
PROXY_TS="$ROOT/scripts/bench/delay-proxy.ts"

mkdir -p "$BENCH_DIR/cold-start"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd -P) # as /proc/self/mountinfo spells it
HOME_DIR="$BENCH_DIR/cold-start"
CACHE="$HOME_DIR/rootfs"
LOGS="$HOME_DIR/logs"
mkdir -p "$CACHE" "$LOGS"
rm -f "$LOGS"/*
RUN=$(mktemp -d "$HOME_DIR/run.XXXXXX")
NS=damselfly-cold-$$
NSPATH=/run/netns/$NS
NSX=(nsenter "--net=$NSPATH")
PLOG="$LOGS/proxy.jsonl"

# --- clean-up of everything this script starts, on any exit ---
NS_MADE=0
REG_PID=
PROXY_PID=
DF_PID=
GUEST_PID=
MOUNTS=()
cleanup() {
  local rc=$? m
  trap - EXIT INT TERM HUP
  set +e
  stop_pid "$GUEST_PID" # run-guest.sh stops its QEMU on any exit
  for m in "${MOUNTS[@]}"; do
    if is_mounted "$m"; then umount "$m" 2>/dev/null || umount -l "$m"; fi
  done
  stop_pid "$DF_PID"
  stop_pid "$PROXY_PID"
  stop_pid "$REG_PID"
  if [ "$NS_MADE" = 1 ]; then ip netns del "$NS" 2>/dev/null || log "could not delete network namespace $NS"; fi
  if [ "$BENCH_KEEP" = 1 ]; then log "kept $RUN"; else rm -rf "$RUN"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
drop_caches() {
  sync
  echo 3 >/proc/sys/vm/drop_caches
}
run_py() { env -i "PATH=$CHROOT_PATH" HOME=/root LANG=C.UTF-8 chroot "$1" python3 -c "$PY" 2>&1; }
json_get() { # file key...: prints each key of a flat JSON object, one a line (0 when absent: counters)
  node -e '
    const o = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8") || "{}");
    for (const k of process.argv.slice(2)) console.log(o[k] ?? 0);' "$@"
}
proxy_summary() { node --import tsx "$PROXY_TS" --summary "$PLOG" "$@"; } # [T0 [T1]] [--timeline FILE]
CLK_TCK=$(getconf CLK_TCK)
cpu_secs() { # pid: user + system CPU seconds so far (all threads)
  awk -v hz="$CLK_TCK" '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); printf "%.3f", (f[12] + f[13]) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0
}
wait_mounted() { # dir pid log
  local i
  for ((i = 0; i < 24000; i++)); do
    is_mounted "$1" && return 0
    kill -0 "$2" 2>/dev/null || die "the daemon exited before mounting $1 (log: $3)"$'\n'"$(tail -n 20 "$3")"
    sleep 0.005
  done
  die "$1 was not mounted within 120 s (log: $3)"
}
must_exit() { # pid name: it must end within 30 s, with status 0
  local i
  for ((i = 0; i < 300; i++)); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$1" 2>/dev/null && die "$2 did not exit within 30 s"
  wait "$1" || die "$2 exited with status $?"
}

# --- the root file system layer (cached) ---
debian_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    # deb822 stanzas: the first URI of a stanza of Types deb whose Suites include the suite
    awk -v suite="$SUITE" 'BEGIN { RS = ""; FS = "\n" }
      {
        uri = ""; ok = 0; deb = 0
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { split($i, u, /[ \t]+/); uri = u[2] }
          if ($i ~ /^Types:/ && $i ~ /(^|[ \t])deb([ \t]|$)/) deb = 1
          if ($i ~ /^Suites:/) { n = split($i, s, /[ \t]+/); for (j = 2; j <= n; j++) if (s[j] == suite) ok = 1 }
        }
        if (ok && deb && uri != "") { print uri; exit }
      }' "$f"
  done | head -n 1 | grep . && return 0
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    # one-line entries: deb [options] URI SUITE COMPONENTS...
    awk -v suite="$SUITE" '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ } if ($(i + 1) == suite) { print $i; exit } }' "$f"
  done | head -n 1 | grep .
}
LAYER="$CACHE/$SUITE-minbase-python3.tar.gz"
LAYER_INFO="$CACHE/$SUITE-minbase-python3.info"
if [ ! -s "$LAYER" ] || [ ! -s "$LAYER_INFO" ]; then
  mirror=${BENCH_MIRROR:-$(debian_mirror)} || die "no Debian mirror for $SUITE in /etc/apt/sources.list{,.d/}: set BENCH_MIRROR"
  log "building the root file system: debootstrap --variant=minbase --include=python3 $SUITE … $mirror (a few minutes; cached in $CACHE)"
  tree="$RUN/debootstrap"
  debootstrap --variant=minbase --include=python3 "$SUITE" "$tree" "$mirror" >"$LOGS/debootstrap.log" 2>&1 ||
    die "debootstrap failed (log: $LOGS/debootstrap.log)"$'\n'"$(tail -n 20 "$LOGS/debootstrap.log")"
  # As Docker's Debian images: no downloaded packages, no package lists.
  rm -rf "$tree"/var/cache/apt/archives/*.deb "$tree"/var/cache/apt/*.bin "$tree"/var/lib/apt/lists/*
  [ "$(run_py "$tree")" = 1 ] || die "python3 does not run in the new root file system"
  bytes=$(du -sb "$tree" | awk '{ print $1 }')
  files=$(find "$tree" | wc -l)
  tar --numeric-owner --xattrs --xattrs-include='*' -C "$tree" -cf - . | gzip -6 -n >"$LAYER.partial"
  mv "$LAYER.partial" "$LAYER"
  printf 'suite=%s\nmirror=%s\ncreated=%s\nunpacked_bytes=%s\nentries=%s\n' "$SUITE" "$mirror" "$(date -u +%FT%TZ)" "$bytes" "$files" >"$LAYER_INFO"
  rm -rf "$tree"
fi
ROOTFS_BYTES=$(sed -n 's/^unpacked_bytes=//p' "$LAYER_INFO")
ROOTFS_ENTRIES=$(sed -n 's/^entries=//p' "$LAYER_INFO")

# --- the OCI image (an OCI layout holding the cached layer) ---
OCI="$RUN/oci"
mkdir -p "$OCI/blobs/sha256"
put_blob() { # file -> prints sha256 hex; moves (or links) the file into the layout
  local hex
  hex=$(sha256sum "$1" | awk '{ print $1 }')
  ln -f "$1" "$OCI/blobs/sha256/$hex" 2>/dev/null || cp "$1" "$OCI/blobs/sha256/$hex"
  echo "$hex"
}
LAYER_HEX=$(put_blob "$LAYER")
LAYER_SIZE=$(stat -c %s "$LAYER")
DIFF_ID=$(zcat "$LAYER" | sha256sum | awk '{ print $1 }')
printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=%s"],"Cmd":["/bin/bash"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"debootstrap --variant=minbase --include=python3 %s"}]}' \
  "$CHROOT_PATH" "$DIFF_ID" "$SUITE" >"$RUN/config.json"
CONFIG_SIZE=$(stat -c %s "$RUN/config.json")
CONFIG_HEX=$(put_blob "$RUN/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
  "$CONFIG_HEX" "$CONFIG_SIZE" "$LAYER_HEX" "$LAYER_SIZE" >"$RUN/manifest.json"
MANIFEST_SIZE=$(stat -c %s "$RUN/manifest.json")
MANIFEST_HEX=$(put_blob "$RUN/manifest.json")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}' \
  "$MANIFEST_HEX" "$MANIFEST_SIZE" >"$OCI/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$OCI/oci-layout"
OCI_IMAGE_BYTES=$((LAYER_SIZE + CONFIG_SIZE + MANIFEST_SIZE))

# --- the network namespace, the registry, the image in it ---
ip netns add "$NS"
NS_MADE=1
ip -n "$NS" link set lo up
cat >"$RUN/registry.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $RUN/registry
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$REG_PORT
  secret: $(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
EOF
"${NSX[@]}" docker-registry serve "$RUN/registry.yml" </dev/null >"$LOGS/registry.log" 2>&1 &
REG_PID=$!
for ((i = 0; ; i++)); do
  "${NSX[@]}" curl -s -o /dev/null "http://127.0.0.1:$REG_PORT/v2/" && break
  kill -0 "$REG_PID" 2>/dev/null || die "docker-registry exited: $(tail -n 20 "$LOGS/registry.log")"
  [ "$i" -lt 200 ] || die "docker-registry does not answer"
  sleep 0.1
done
POLICY="$RUN/policy.json"
echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$POLICY"
export TMPDIR="$RUN" # skopeo's temporary files
log "pushing the OCI image ($(awk -v b="$LAYER_SIZE" 'BEGIN { printf "%.1f", b / 1e6 }') MB layer) to the registry in $NS"
"${NSX[@]}" skopeo --policy "$POLICY" copy --quiet --dest-tls-verify=false "oci:$OCI:latest" "docker://127.0.0.1:$REG_PORT/rootfs:latest" >"$LOGS/push.log" 2>&1 ||
  die "skopeo push failed: $(cat "$LOGS/push.log")"
log "converting it: damselfly convert (not timed)"
t0=$EPOCHREALTIME
"${NSX[@]}" "${DAMSELFLY[@]}" --log-level warn convert --source "docker://127.0.0.1:$REG_PORT/rootfs:latest" --target "docker://127.0.0.1:$REG_PORT/rootfs:nydus" \
  --plain-http --json --work-dir "$RUN/convert" "${CONVERT_EXTRA[@]}" >"$LOGS/convert.json" 2>"$LOGS/convert.log" || die "damselfly convert failed: $(tail -n 20 "$LOGS/convert.log")"
CONVERT_SECS=$(secs "$t0" "$EPOCHREALTIME")
rm -rf "$RUN/convert"
# The Nydus image's layers: data blobs, and the bootstrap layer (annotated).
"${NSX[@]}" curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' \
  "http://127.0.0.1:$REG_PORT/v2/rootfs/manifests/nydus" >"$RUN/nydus-manifest.json" || die "cannot read the Nydus manifest"
read -r NYDUS_BLOBS NYDUS_BLOB_BYTES NYDUS_BOOT_BYTES < <(node -e '
  const m = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  if (!Array.isArray(m.layers)) throw new Error("not an image manifest: " + JSON.stringify(m).slice(0, 200));
  const boot = (l) => (l.annotations ?? {})["containerd.io/snapshot/nydus-bootstrap"] === "true";
  const blobs = m.layers.filter((l) => !boot(l));
  console.log(blobs.length, blobs.reduce((a, l) => a + l.size, 0), m.layers.filter(boot).reduce((a, l) => a + l.size, 0));' "$RUN/nydus-manifest.json")
NYDUS_IMAGE_BYTES=$((NYDUS_BLOB_BYTES + NYDUS_BOOT_BYTES))
[ "$NYDUS_BOOT_BYTES" -gt 0 ] || die "the Nydus manifest has no bootstrap layer: $(cat "$RUN/nydus-manifest.json")"

# The same image with a prefetch table (Nydus's way to optimize an image for a workload): the
# files the workload opened or read, recorded by `damselfly mount --record-pattern` on one run
# of it (straight from the registry, not timed), given to `damselfly convert --prefetch-files`.
# (p) serves it with --prefetch: those files are fetched in the background from the start.
log "recording the workload's access pattern and converting again with it (not timed)"
mkdir -p "$RUN/record/mnt"
MOUNTS+=("$RUN/record/mnt")
"${NSX[@]}" "${DAMSELFLY[@]}" mount --image "docker://127.0.0.1:$REG_PORT/rootfs:nydus" --plain-http --cache-dir "$RUN/record/cache" \
  --record-pattern "$LOGS/prefetch-files.txt" "$RUN/record/mnt" 2>"$LOGS/record-daemon.log" &
DF_PID=$!
wait_mounted "$RUN/record/mnt" "$DF_PID" "$LOGS/record-daemon.log"
out=$(run_py "$RUN/record/mnt") || true
[ "$out" = 1 ] || die "recording run: python3 printed '$out', not 1"
umount "$RUN/record/mnt"
must_exit "$DF_PID" "damselfly mount"
DF_PID=
rm -rf "$RUN/record"
PREFETCH_FILES=$(wc -l <"$LOGS/prefetch-files.txt")
[ "$PREFETCH_FILES" -gt 0 ] || die "the recorded access pattern is empty"
t0=$EPOCHREALTIME
"${NSX[@]}" "${DAMSELFLY[@]}" --log-level warn convert --source "docker://127.0.0.1:$REG_PORT/rootfs:latest" --target "docker://127.0.0.1:$REG_PORT/rootfs:nydus-prefetch" \
  --plain-http --json --work-dir "$RUN/convert" --prefetch-files "$LOGS/prefetch-files.txt" "${CONVERT_EXTRA[@]}" >"$LOGS/convert-prefetch.json" 2>"$LOGS/convert-prefetch.log" ||
  die "damselfly convert --prefetch-files failed: $(tail -n 20 "$LOGS/convert-prefetch.log")"
CONVERT_PREFETCH_SECS=$(secs "$t0" "$EPOCHREALTIME")
rm -rf "$RUN/convert"

# The OCI-ref (ZRan) image of the same OCI image, in the same repository (its data is the layer).
log "converting it with --oci-ref (not timed)"
t0=$EPOCHREALTIME
"${NSX[@]}" "${DAMSELFLY[@]}" --log-level warn convert --oci-ref --source "docker://127.0.0.1:$REG_PORT/rootfs:latest" --target "docker://127.0.0.1:$REG_PORT/rootfs:nydus-ref" \
  --plain-http --json --work-dir "$RUN/convert" >"$LOGS/convert-ref.json" 2>"$LOGS/convert-ref.log" || die "damselfly convert --oci-ref failed: $(tail -n 20 "$LOGS/convert-ref.log")"
CONVERT_REF_SECS=$(secs "$t0" "$EPOCHREALTIME")
rm -rf "$RUN/convert"
"${NSX[@]}" "${DAMSELFLY[@]}" --log-level warn convert --oci-ref --prefetch-files "$LOGS/prefetch-files.txt" --source "docker://127.0.0.1:$REG_PORT/rootfs:latest" \
  --target "docker://127.0.0.1:$REG_PORT/rootfs:nydus-ref-prefetch" --plain-http --json --work-dir "$RUN/convert" >"$LOGS/convert-ref-prefetch.json" 2>"$LOGS/convert-ref-prefetch.log" ||
  die "damselfly convert --oci-ref --prefetch-files failed: $(tail -n 20 "$LOGS/convert-ref-prefetch.log")"
rm -rf "$RUN/convert"
"${NSX[@]}" curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://127.0.0.1:$REG_PORT/v2/rootfs/manifests/nydus-ref" >"$RUN/ref-manifest.json" ||
  die "cannot read the OCI-ref manifest"
REF_ARTIFACT_BYTES=$(node -e 'const m = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log(m.layers.reduce((a, l) => a + l.size, 0))' "$RUN/ref-manifest.json")

# --- the link: delaying proxy + htb on lo for the proxy's port ---
tc -n "$NS" qdisc add dev lo root handle 1: htb
tc -n "$NS" class add dev lo parent 1: classid 1:10 htb rate "$BENCH_RATE" ceil "$BENCH_RATE" quantum 200000
tc -n "$NS" filter add dev lo parent 1: protocol ip prio 1 u32 match ip sport "$PROXY_PORT" 0xffff flowid 1:10
tc -n "$NS" filter add dev lo parent 1: protocol ip prio 1 u32 match ip dport "$PROXY_PORT" 0xffff flowid 1:10
: >"$PLOG"
"${NSX[@]}" node --import tsx "$PROXY_TS" "$PROXY_PORT" "$REG_PORT" "$BENCH_DELAY_MS" "$PLOG" >"$LOGS/proxy.out" 2>&1 &
PROXY_PID=$!
for ((i = 0; ; i++)); do
  grep -q listening "$LOGS/proxy.out" && break
  kill -0 "$PROXY_PID" 2>/dev/null || die "the delaying proxy exited: $(cat "$LOGS/proxy.out")"
  [ "$i" -lt 300 ] || die "the delaying proxy did not start"
  sleep 0.1
done
# A quick check of the link: one round trip, and the throughput of the layer itself.
ping_ms=$("${NSX[@]}" curl -s -o /dev/null -w '%{time_starttransfer}' "http://127.0.0.1:$PROXY_PORT/v2/" | awk '{ printf "%.1f", $1 * 1000 }')
LINK_CHECK="check: curl's new connection + GET /v2/ answered in $ping_ms ms (2 round trips + the registry)"

# --- the measurements ---
declare -A T # T[way/run/what] seconds
declare -A B # B[way/run] bytes on the wire
declare -A BEST
RESULTS="$LOGS/results.tsv"
printf 'way\trun\ttotal_s\tphase1_s\tphase2_s\tphase3_s\tbytes_wire\tbytes_chunks\n' >"$RESULTS"
keep_best() { # way run
  if [ -z "${BEST[$1]:-}" ] || awk -v a="${T[$1/$2/total]}" -v b="${T[$1/${BEST[$1]}/total]}" 'BEGIN { exit !(a < b) }'; then BEST[$1]=$2; fi
}

measure_oci() { # run
  local r=$1 d="$RUN/a$r" t0 t1 t2 t3 out digests hex
  mkdir -p "$d/rootfs"
  drop_caches
  : >"$PLOG"
  t0=$EPOCHREALTIME
  "${NSX[@]}" skopeo --policy "$POLICY" copy --quiet --src-tls-verify=false "docker://127.0.0.1:$PROXY_PORT/rootfs:latest" "oci:$d/oci:latest" >"$LOGS/a$r-skopeo.log" 2>&1 ||
    die "skopeo pull failed: $(cat "$LOGS/a$r-skopeo.log")"
  t1=$EPOCHREALTIME
  # the layers, in manifest order (the manifest is the one blob the index names)
  hex=$(grep -o '"digest": *"sha256:[0-9a-f]*"' "$d/oci/index.json" | head -n 1 | sed 's/.*sha256://; s/"//')
  digests=$(sed 's/.*"layers": *\[//' "$d/oci/blobs/sha256/$hex" | grep -o 'sha256:[0-9a-f]*' | sed 's/sha256://')
  for hex in $digests; do
    tar --numeric-owner --xattrs --xattrs-include='*' -xzf "$d/oci/blobs/sha256/$hex" -C "$d/rootfs" || die "unpacking layer $hex failed"
  done
  t2=$EPOCHREALTIME
  out=$(run_py "$d/rootfs") || true
  t3=$EPOCHREALTIME
  [ "$out" = 1 ] || die "(a) python3 printed '$out', not 1"
  T[a/$r/pull]=$(secs "$t0" "$t1")
  T[a/$r/unpack]=$(secs "$t1" "$t2")
  T[a/$r/run]=$(secs "$t2" "$t3")
  T[a/$r/total]=$(secs "$t0" "$t3")
  proxy_summary "$t0" --timeline "$LOGS/a$r-timeline.txt" >"$LOGS/a$r-proxy-summary.json"
  cp "$PLOG" "$LOGS/a$r-proxy.jsonl"
  B[a/$r]=$(json_get "$LOGS/a$r-proxy-summary.json" bytes_down)
  printf 'a\t%s\t%s\t%s\t%s\t%s\t%s\t-\n' "$r" "${T[a/$r/total]}" "${T[a/$r/pull]}" "${T[a/$r/unpack]}" "${T[a/$r/run]}" "${B[a/$r]}" >>"$RESULTS"
  log "$(printf '(a) run %d: %.3f s (pull %.3f, unpack %.3f, run %.3f), %s bytes fetched' "$r" "${T[a/$r/total]}" "${T[a/$r/pull]}" "${T[a/$r/unpack]}" "${T[a/$r/run]}" "${B[a/$r]}")"
  keep_best a "$r"
  [ "$BENCH_KEEP" = 1 ] || rm -rf "$d"
}

measure_dfly() { # way (b, p, r or q) run: p serves the image with a prefetch table and --prefetch, r the OCI-ref one, q that with the prefetch table
  local w=$1 r=$2 d="$RUN/$1$2" tag=nydus args=("${DF_EXTRA[@]}") t0 t1 t2 t3 t4 t5 t6 c1 c2 out out2 dlog="$LOGS/$1$2-daemon.log"
  [ "$w" != p ] || { tag=nydus-prefetch; args+=(--prefetch); }
  [ "$w" != r ] || tag=nydus-ref
  [ "$w" != q ] || { tag=nydus-ref-prefetch; args+=(--prefetch); }
  mkdir -p "$d/mnt"
  MOUNTS+=("$d/mnt")
  drop_caches
  : >"$PLOG"
  t0=$EPOCHREALTIME
  "${NSX[@]}" "${DAMSELFLY[@]}" mount --image "docker://127.0.0.1:$PROXY_PORT/rootfs:$tag" --plain-http --cache-dir "$d/cache" --stats "${args[@]}" "$d/mnt" \
    >"$LOGS/$w$r-stats.json" 2>"$dlog" &
  DF_PID=$!
  wait_mounted "$d/mnt" "$DF_PID" "$dlog"
  t1=$EPOCHREALTIME
  c1=$(cpu_secs "$DF_PID")
  out=$(run_py "$d/mnt") || true
  t2=$EPOCHREALTIME
  c2=$(cpu_secs "$DF_PID")
  [ "$out" = 1 ] || die "($w) python3 printed '$out', not 1 (daemon log: $dlog)"
  out2=$(run_py "$d/mnt") || true
  t3=$EPOCHREALTIME
  [ "$out2" = 1 ] || die "($w) warm: python3 printed '$out2', not 1"
  umount "$d/mnt"
  must_exit "$DF_PID" "damselfly mount"
  DF_PID=
  # The same again with the chunk cache it filled (only the manifest and the bootstrap layer
  # cross the link): what fetching the chunks cost, and what is left without it.
  drop_caches
  cp "$PLOG" "$LOGS/$w$r-proxy.jsonl"
  : >"$PLOG"
  t4=$EPOCHREALTIME
  "${NSX[@]}" "${DAMSELFLY[@]}" mount --image "docker://127.0.0.1:$PROXY_PORT/rootfs:$tag" --plain-http --cache-dir "$d/cache" --stats "${args[@]}" "$d/mnt" \
    >"$LOGS/$w$r-cached-stats.json" 2>"$LOGS/$w$r-cached-daemon.log" &
  DF_PID=$!
  wait_mounted "$d/mnt" "$DF_PID" "$LOGS/$w$r-cached-daemon.log"
  t5=$EPOCHREALTIME
  out=$(run_py "$d/mnt") || true
  t6=$EPOCHREALTIME
  [ "$out" = 1 ] || die "($w) with the chunk cache: python3 printed '$out', not 1"
  umount "$d/mnt"
  must_exit "$DF_PID" "damselfly mount"
  DF_PID=
  T[$w/$r/cached_mount]=$(secs "$t4" "$t5")
  T[$w/$r/cached_run]=$(secs "$t5" "$t6")
  T[$w/$r/cached_total]=$(secs "$t4" "$t6")
  B[$w/$r/cached_chunks]=$(json_get "$LOGS/$w$r-cached-stats.json" storage.backend_bytes)
  cp "$PLOG" "$LOGS/$w$r-cached-proxy.jsonl"
  B[$w/$r/cached_requests]=$(grep -c '"ev":"req"' "$LOGS/$w$r-cached-proxy.jsonl" || true)
  B[$w/$r/cached_bytes]=$(awk -F'"b":' 'NF > 1 { split($2, v, ","); n += v[1] } END { print n + 0 }' "$LOGS/$w$r-cached-proxy.jsonl")
  cp "$LOGS/$w$r-proxy.jsonl" "$PLOG"
  T[$w/$r/mount]=$(secs "$t0" "$t1")
  T[$w/$r/run]=$(secs "$t1" "$t2")
  T[$w/$r/total]=$(secs "$t0" "$t2")
  T[$w/$r/warm]=$(secs "$t2" "$t3")
  T[$w/$r/cpu_mount]=$c1
  T[$w/$r/cpu_run]=$(secs "$c1" "$c2")
  proxy_summary "$t0" "$t1" --timeline "$LOGS/$w$r-timeline.txt" >"$LOGS/$w$r-proxy-summary.json"
  B[$w/$r]=$(json_get "$LOGS/$w$r-proxy-summary.json" bytes_down)
  B[$w/$r/chunks]=$(json_get "$LOGS/$w$r-stats.json" storage.backend_bytes)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$r" "${T[$w/$r/total]}" "${T[$w/$r/mount]}" "${T[$w/$r/run]}" "${T[$w/$r/warm]}" "${B[$w/$r]}" "${B[$w/$r/chunks]}" >>"$RESULTS"
  log "$(printf '(%s) run %d: %.3f s (mount %.3f, run %.3f; warm run %.3f), %s bytes fetched (chunks %s); with the chunk cache full %.3f s (mount %.3f, run %.3f)' "$w" "$r" "${T[$w/$r/total]}" "${T[$w/$r/mount]}" "${T[$w/$r/run]}" "${T[$w/$r/warm]}" "${B[$w/$r]}" "${B[$w/$r/chunks]}" "${T[$w/$r/cached_total]}" "${T[$w/$r/cached_mount]}" "${T[$w/$r/cached_run]}")"
  keep_best "$w" "$r"
  [ "$BENCH_KEEP" = 1 ] || rm -rf "$d"
}

# (c) the guest
GUEST_OK=0
GUEST_WHY=
KERNEL=
INITRAMFS=
if [ "$BENCH_GUEST" != 0 ]; then
  if ! command -v qemu-system-x86_64 >/dev/null; then
    GUEST_WHY="qemu-system-x86_64 is absent"
  elif ! info=$("$ROOT/scripts/guest/build-initramfs.sh" 2>"$LOGS/build-initramfs.log"); then
    GUEST_WHY="scripts/guest/build-initramfs.sh failed (log: $LOGS/build-initramfs.log)"
  else
    KERNEL=$(sed -n 's/^kernel=//p' <<<"$info")
    INITRAMFS=$(sed -n 's/^initramfs=//p' <<<"$info")
    GUEST_OK=1
  fi
  [ "$GUEST_OK" = 1 ] || [ "$BENCH_GUEST" != 1 ] || die "BENCH_GUEST=1 but the guest cannot run: $GUEST_WHY"
else
  GUEST_WHY="BENCH_GUEST=0"
fi
cat >"$RUN/guest.sh" <<GUEST
now_us() { adjtimex | awk '/tv_sec/ { s = \$2 } /tv_usec/ { u = \$2 } END { printf "%d%06d\n", s, u }'; }
py() { env -i PATH=$CHROOT_PATH HOME=/root LANG=C.UTF-8 chroot /mnt/rootfs python3 -c '$PY' 2>&1; }
grep -q ' /mnt/rootfs virtiofs ' /proc/mounts || { echo "DFCOLD-FAIL /mnt/rootfs is not a virtiofs mount"; exit 1; }
for what in cold chunk-cache warm; do
  if [ "\$what" = chunk-cache ]; then sync; echo 3 >/proc/sys/vm/drop_caches; fi
  t0=\$(now_us)
  out=\$(py)
  t1=\$(now_us)
  [ "\$out" = 1 ] || { echo "DFCOLD-FAIL \$what: python3 printed '\$out'"; exit 1; }
  echo "DFCOLD-RESULT \$what \$((t1 - t0))"
done
GUEST

measure_guest() { # run
  local r=$1 d="$RUN/c$r" dlog="$LOGS/c$r-daemon.log" console="$LOGS/c$r-console.log" grc=0 t0 line
  mkdir -p "$d"
  drop_caches
  : >"$PLOG"
  t0=$EPOCHREALTIME
  "${NSX[@]}" "${DAMSELFLY[@]}" virtiofs --socket-path "$d/vfs.sock" --image "docker://127.0.0.1:$PROXY_PORT/rootfs:nydus" --plain-http --cache-dir "$d/cache" --stats "${DF_EXTRA[@]}" \
    >"$LOGS/c$r-stats.json" 2>"$dlog" &
  DF_PID=$!
  "$ROOT/scripts/guest/run-guest.sh" --fs "$d/vfs.sock:rootfs" --script "$RUN/guest.sh" --kernel "$KERNEL" --initramfs "$INITRAMFS" \
    --quiet --log "$console" --timeout "$BENCH_GUEST_TIMEOUT" --wait-socket 120 >"$LOGS/c$r-run-guest.log" 2>&1 &
  GUEST_PID=$!
  wait "$GUEST_PID" || grc=$?
  GUEST_PID=
  [ "$grc" = 0 ] || die "(c) the guest run failed (status $grc): $(grep -a 'DFCOLD-FAIL' "$console" | head -n 3) $(tail -n 5 "$LOGS/c$r-run-guest.log") (console: $console, daemon: $dlog)"
  must_exit "$DF_PID" "damselfly virtiofs"
  DF_PID=
  T[c/$r/wall]=$(secs "$t0" "$EPOCHREALTIME")
  for what in cold chunk-cache warm; do
    line=$(grep -a "^DFCOLD-RESULT $what " "$console" | tr -d '\r' | tail -n 1)
    [ -n "$line" ] || die "(c) no $what result in $console"
    T[c/$r/$what]=$(awk -v us="${line##* }" 'BEGIN { printf "%.3f", us / 1e6 }')
  done
  T[c/$r/total]=${T[c/$r/cold]}
  proxy_summary "$t0" --timeline "$LOGS/c$r-timeline.txt" >"$LOGS/c$r-proxy-summary.json"
  cp "$PLOG" "$LOGS/c$r-proxy.jsonl"
  B[c/$r]=$(json_get "$LOGS/c$r-proxy-summary.json" bytes_down)
  B[c/$r/chunks]=$(json_get "$LOGS/c$r-stats.json" storage.backend_bytes)
  printf 'c\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "${T[c/$r/total]}" "${T[c/$r/chunk-cache]}" "${T[c/$r/warm]}" "${T[c/$r/wall]}" "${B[c/$r]}" "${B[c/$r/chunks]}" >>"$RESULTS"
  log "$(printf '(c) run %d: %.3f s in the guest (then %.3f with the chunk cache full, %.3f warm; %.0f s with boot), %s bytes fetched (chunks %s)' "$r" "${T[c/$r/cold]}" "${T[c/$r/chunk-cache]}" "${T[c/$r/warm]}" "${T[c/$r/wall]}" "${B[c/$r]}" "${B[c/$r/chunks]}")"
  keep_best c "$r"
  [ "$BENCH_KEEP" = 1 ] || rm -rf "$d"
}

for ((r = 1; r <= BENCH_RUNS; r++)); do
  measure_oci "$r"
  measure_dfly b "$r"
  measure_dfly p "$r"
  measure_dfly r "$r"
  measure_dfly q "$r"
  [ "$GUEST_OK" = 0 ] || measure_guest "$r"
done

# --- the report ---
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f%%", 100 * a / b }'; }
ra=${BEST[a]}
rb=${BEST[b]}
rp=${BEST[p]}
rr=${BEST[r]}
rq=${BEST[q]}
echo
echo "cold start of \`python3 -c '$PY'\` in a chroot of Debian $SUITE (minbase + python3)"
echo "link: $BENCH_RATE (tc htb), RTT $((2 * BENCH_DELAY_MS)) ms (delaying proxy); $LINK_CHECK; best of $BENCH_RUNS run(s)"
echo "root file system: $(mb "$ROOTFS_BYTES") in $ROOTFS_ENTRIES entries"
echo "OCI image:   $(mb "$OCI_IMAGE_BYTES") (1 gzip layer of $(mb "$LAYER_SIZE"), config, manifest)"
echo "Nydus image: $(mb "$NYDUS_IMAGE_BYTES") ($NYDUS_BLOBS data blob(s) of $(mb "$NYDUS_BLOB_BYTES") (zstd, 1 MiB chunks), bootstrap layer of $(mb "$NYDUS_BOOT_BYTES")); converted in $CONVERT_SECS s (not timed)${CONVERT_EXTRA[*]:+, with ${CONVERT_EXTRA[*]}}"
echo
printf '%-34s %9s  %15s  %-30s\n' "way" "seconds" "bytes fetched" "fraction of the image"
printf '%-34s %9.3f  %15s  %-30s\n' "(a) OCI: pull, unpack, run" "${T[a/$ra/total]}" "${B[a/$ra]}" "$(pct "${B[a/$ra]}" "$OCI_IMAGE_BYTES") of the OCI image"
printf '%-34s %9.3f  %15s  %-30s\n' "(b) Damselfly: mount --image, run" "${T[b/$rb/total]}" "${B[b/$rb]}" "$(pct "${B[b/$rb]}" "$NYDUS_IMAGE_BYTES") of the Nydus image"
printf '%-34s %9.3f  %15s  %-30s\n' "(p) the same, with a prefetch table" "${T[p/$rp/total]}" "${B[p/$rp]}" "$(pct "${B[p/$rp]}" "$NYDUS_IMAGE_BYTES") of the Nydus image"
printf '%-34s %9.3f  %15s  %-30s\n' "(r) the same, an OCI-ref image" "${T[r/$rr/total]}" "${B[r/$rr]}" "$(pct "${B[r/$rr]}" "$OCI_IMAGE_BYTES") of the OCI image"
printf '%-34s %9.3f  %15s  %-30s\n' "(q) OCI-ref, with a prefetch table" "${T[q/$rq/total]}" "${B[q/$rq]}" "$(pct "${B[q/$rq]}" "$OCI_IMAGE_BYTES") of the OCI image"
if [ "$GUEST_OK" = 1 ]; then
  rc=${BEST[c]}
  printf '%-34s %9.3f  %15s  %-30s\n' "(c) Damselfly in a TCG guest (run)" "${T[c/$rc/total]}" "${B[c/$rc]}" "$(pct "${B[c/$rc]}" "$NYDUS_IMAGE_BYTES") of the Nydus image"
else
  printf '%-34s %9s  %15s  %s\n' "(c) Damselfly in a guest" "-" "-" "skipped: $GUEST_WHY"
fi
echo
printf '(a) split: pull %.3f s + unpack %.3f s + run %.3f s\n' "${T[a/$ra/pull]}" "${T[a/$ra/unpack]}" "${T[a/$ra/run]}"
printf '(b) split: mount %.3f s (node start, manifest, bootstrap layer, FUSE mount) + run %.3f s; the same run warm: %.3f s\n' "${T[b/$rb/mount]}" "${T[b/$rb/run]}" "${T[b/$rb/warm]}"
printf '(b) chunks fetched (storage.backend_bytes): %s = %s of the data blobs; bootstrap layer %s\n' "${B[b/$rb/chunks]}" "$(pct "${B[b/$rb/chunks]}" "$NYDUS_BLOB_BYTES")" "$NYDUS_BOOT_BYTES"
printf '(b) again, cold but with the chunk cache that run filled (%s request(s), %s bytes from the registry; chunks fetched: %s): %.3f s = mount %.3f + run %.3f\n' \
  "${B[b/$rb/cached_requests]}" "${B[b/$rb/cached_bytes]}" "${B[b/$rb/cached_chunks]}" "${T[b/$rb/cached_total]}" "${T[b/$rb/cached_mount]}" "${T[b/$rb/cached_run]}"
printf '(p) split: mount %.3f s + run %.3f s; image converted with the %d files the workload read (recorded with --record-pattern) as its prefetch table in %s s (not timed), served with --prefetch; chunks fetched %s = %s of the data blobs\n' \
  "${T[p/$rp/mount]}" "${T[p/$rp/run]}" "$PREFETCH_FILES" "$CONVERT_PREFETCH_SECS" "${B[p/$rp/chunks]}" "$(pct "${B[p/$rp/chunks]}" "$NYDUS_BLOB_BYTES")"
printf '(r) split: mount %.3f s + run %.3f s; the OCI-ref image (ZRan: a meta blob and the bootstrap layer, %s = %s of the Nydus image) converted in %s s (not timed); from the gzip layer %s = %s of it\n' \
  "${T[r/$rr/mount]}" "${T[r/$rr/run]}" "$(mb "$REF_ARTIFACT_BYTES")" "$(pct "$REF_ARTIFACT_BYTES" "$NYDUS_IMAGE_BYTES")" "$CONVERT_REF_SECS" "${B[r/$rr/chunks]}" "$(pct "${B[r/$rr/chunks]}" "$LAYER_SIZE")"
printf '(q) split: mount %.3f s + run %.3f s; the OCI-ref image with the prefetch table of (p), served with --prefetch; from the gzip layer %s = %s of it\n' \
  "${T[q/$rq/mount]}" "${T[q/$rq/run]}" "${B[q/$rq/chunks]}" "$(pct "${B[q/$rq/chunks]}" "$LAYER_SIZE")"
if [ "$GUEST_OK" = 1 ]; then
  printf '(c) in the guest (TCG, boot not timed): cold %.3f s, with every chunk in the chunk cache %.3f s, warm %.3f s; chunks fetched %s = %s of the data blobs (host (b): %s)\n' \
    "${T[c/$rc/cold]}" "${T[c/$rc/chunk-cache]}" "${T[c/$rc/warm]}" "${B[c/$rc/chunks]}" "$(pct "${B[c/$rc/chunks]}" "$NYDUS_BLOB_BYTES")" "${B[b/$rb/chunks]}"
fi
ratio=$(awk -v a="${T[a/$ra/total]}" -v b="${T[b/$rb/total]}" 'BEGIN { printf "%.1f", a / b }')
frac=$(awk -v a="${B[b/$rb]}" -v b="$NYDUS_IMAGE_BYTES" 'BEGIN { printf "%.4f", a / b }')
ratio_p=$(awk -v a="${T[a/$ra/total]}" -v b="${T[p/$rp/total]}" 'BEGIN { printf "%.1f", a / b }')
ratio_r=$(awk -v a="${T[a/$ra/total]}" -v b="${T[r/$rr/total]}" 'BEGIN { printf "%.1f", a / b }')
ratio_q=$(awk -v a="${T[a/$ra/total]}" -v b="${T[q/$rq/total]}" 'BEGIN { printf "%.1f", a / b }')
echo "ratio (a)/(b): ${ratio}x; (a)/(p), with the prefetch table: ${ratio_p}x; (a)/(r), OCI-ref: ${ratio_r}x; (a)/(q), OCI-ref with the prefetch table: ${ratio_q}x"
if awk -v r="$ratio" 'BEGIN { exit !(r >= 10) }'; then
  echo "goal: Damselfly at least 10x faster than the OCI way: met (${ratio}x)"
else
  echo "goal: Damselfly at least 10x faster than the OCI way: NOT met (${ratio}x)"
fi
# For the record, not the goal: the same bound with the image optimized for the workload.
if awk -v r="$ratio_p" 'BEGIN { exit !(r >= 10) }'; then
  echo "  (with the prefetch table (p): ${ratio_p}x, 10x reached)"
else
  echo "  (with the prefetch table (p): ${ratio_p}x, 10x not reached)"
fi
if awk -v f="$frac" 'BEGIN { exit !(f < 0.10) }'; then
  echo "goal: Damselfly fetching under 10% of the image: met ($(pct "${B[b/$rb]}" "$NYDUS_IMAGE_BYTES"))"
else
  echo "goal: Damselfly fetching under 10% of the image: NOT met ($(pct "${B[b/$rb]}" "$NYDUS_IMAGE_BYTES"))"
fi

# Where (b)'s and (p)'s time goes: their requests through the proxy, and the daemon's CPU.
breakdown() { # way run
  local w=$1 r=$2
  echo
  echo "($w) best run, where the time goes (from the proxy's log $LOGS/$w$r-proxy.jsonl, timeline $w$r-timeline.txt):"
  node -e '
  const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const [mount, total, rtt, cpuMount, cpuRun, warm, bitsPerSec] = process.argv.slice(2).map(Number);
  const f = (x) => Number(x).toFixed(3);
  console.log(`  ${f(0)} -> ${f(s.first_request_s)} s  damselfly starting (node, modules) until its first request`);
  console.log(`  ${f(s.first_request_s)} -> ${f(s.bootstrap_done_s)} s  manifest + bootstrap layer through the link`);
  console.log(`  ${f(s.bootstrap_done_s)} -> ${f(mount)} s  bootstrap received until the FUSE mount is there (daemon CPU until then: ${f(cpuMount)} s)`);
  console.log(`  ${f(mount)} -> ${f(total)} s  the chroot python3 run: link busy ${f(s.busy_after_t1_ms / 1000)} s, daemon CPU ${f(cpuRun)} s, python3 itself (the warm run) ${f(warm)} s`);
  console.log(`  ${s.connections} connection(s), ${s.requests} requests: ${s.manifest_requests} manifest, ${s.blob_requests} blob (${s.blob_range_requests} ranged), ${s.other_requests} other; at most ${s.max_in_flight} in flight at once`);
  console.log(`  ranged GETs: ${s.range_bytes} bytes; sizes min ${s.range_size_min}, median ${s.range_size_median}, p90 ${s.range_size_p90}, max ${s.range_size_max}`);
  console.log(`  link busy (>= 1 request in flight; a response counts until the proxy handed its last byte to the shaped link) ${f(s.busy_ms / 1000)} s = ${(100 * s.busy_ms / 1000 / total).toFixed(0)}% of the total`);
  console.log(`  the link itself: ${s.requests} round trips one after the other ${f(s.requests * rtt / 1000)} s + ${s.bytes_down} bytes at the link rate ${f(s.bytes_down * 8 / bitsPerSec)} s = ${f(s.requests * rtt / 1000 + s.bytes_down * 8 / bitsPerSec)} s`);' \
    "$LOGS/$w$r-proxy-summary.json" "${T[$w/$r/mount]}" "${T[$w/$r/total]}" "$((2 * BENCH_DELAY_MS))" "${T[$w/$r/cpu_mount]}" "${T[$w/$r/cpu_run]}" "${T[$w/$r/warm]}" "$RATE_BPS"
}
breakdown b "$rb"
breakdown p "$rp"
# Start-up alone, cold (page cache dropped) as in (b): bare node, and the damselfly CLI.
drop_caches
t0=$EPOCHREALTIME
env -u NODE_EXTRA_CA_CERTS node -e 0 # as the daemon runs (DAMSELFLY)
t1=$EPOCHREALTIME
drop_caches
t2=$EPOCHREALTIME
"${DAMSELFLY[@]}" mount --help >/dev/null
t3=$EPOCHREALTIME
printf '  start-up alone, cold: node -e 0 %.3f s; damselfly mount --help %.3f s (loading the mount command'"'"'s modules)\n' "$(secs "$t0" "$t1")" "$(secs "$t2" "$t3")"
echo "(every run: $RESULTS; logs: $LOGS)"
