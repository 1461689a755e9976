#!/usr/bin/env bash
# The main job on the built-in default image: set up, make the sample tree, build a RAFS v6 image
# from it, inspect, check and unpack it, mount it on the host with FUSE (chunks fetched on demand
# into a local cache), then boot a Linux guest under QEMU on it over virtio-fs and report how many
# of the image's bytes the guest needed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

work=${DEMO_DIR:-/var/tmp/damselfly-demo}
rm -rf "$work"
mkdir -p "$work"
damselfly() { node bin/damselfly.js "$@"; }

echo "== sample tree: $work/src"
scripts/sample-tree.sh "$work/src"
du -sh --apparent-size "$work/src"

echo "== build (zstd, blake3, 1 MiB chunks)"
damselfly build --bootstrap "$work/image.boot" --blob-dir "$work/blobs" "$work/src"

echo "== inspect"
damselfly inspect --bootstrap "$work/image.boot" --no-tree
# `sed -n 1,Np` rather than `head -N`: head leaves early, and under pipefail the writer's SIGPIPE
# would end the demo (whenever the output outgrows the pipe before head is done).
damselfly inspect --bootstrap "$work/image.boot" | sed -n '/^tree:/,$p' | sed -n '1,20p'

echo "== inspect one file's chunks"
damselfly inspect --bootstrap "$work/image.boot" --path /usr/share/damselfly/random-copy.bin | sed -n '1,40p'

echo "== check (every structure, every chunk digest)"
damselfly check --bootstrap "$work/image.boot" --blob-dir "$work/blobs"

echo "== unpack and compare with the source"
damselfly unpack --bootstrap "$work/image.boot" --blob-dir "$work/blobs" --output "$work/unpacked"
listing() {
  (cd "$1" && find . \( -type d -printf '%p %M %U:%G %T@\n' \) -o -printf '%p %M %U:%G %s %T@ %l\n' | sort
   cd "$1" && find . -type f -exec sha256sum {} + | sort)
}
diff <(listing "$work/src") <(listing "$work/unpacked") && echo "unpacked tree is identical to the source (types, modes, owners, sizes, mtimes, targets, contents)"

echo "== mount it with FUSE (chunks fetched on demand into $work/cache) and read a few files"
mkdir -p "$work/mnt"
node bin/damselfly.js --log-level warn mount --bootstrap "$work/image.boot" --blob-dir "$work/blobs" --cache-dir "$work/cache" --stats "$work/mnt" > "$work/stats.json" &
mount_pid=$!
trap 'umount "$work/mnt" 2>/dev/null || true' EXIT
for _ in $(seq 50); do mountpoint -q "$work/mnt" && break; sleep 0.1; done
ls -l "$work/mnt" "$work/mnt/bin" | sed -n '1,12p'
cat "$work/mnt/etc/os-release"
"$work/mnt/usr/bin/hello"
"$work/mnt/bin/busybox" sha256sum "$work/mnt/usr/share/damselfly/random.bin"
umount "$work/mnt"
wait "$mount_pid"
echo "== statistics of the mount"
cat "$work/stats.json"

echo "== boot a Linux guest under QEMU with the image as its virtio-fs device (lazy: empty cache)"
rm -rf "$work/vcache"
node bin/damselfly.js --log-level warn virtiofs --socket-path "$work/vfs.sock" --bootstrap "$work/image.boot" \
  --blob-dir "$work/blobs" --cache-dir "$work/vcache" --stats > "$work/vstats.json" 2> "$work/virtiofs.log" &
vfs_pid=$!
for _ in $(seq 100); do grep -q 'Waiting for vhost-user' "$work/virtiofs.log" && break; sleep 0.1; done
cat > "$work/guest.sh" <<'GUEST'
cat /mnt/img/etc/os-release
/mnt/img/usr/bin/hello
/mnt/img/bin/busybox uname -sr
GUEST
scripts/guest/run-guest.sh --fs "$work/vfs.sock:img" --script "$work/guest.sh" --quiet --log "$work/console.log" || {
  echo "guest run failed; console: $work/console.log" >&2; exit 1; }
sed -n '/DAMSELFLY-GUEST-BEGIN/,/DAMSELFLY-GUEST-END/p' "$work/console.log" | grep -v DAMSELFLY-GUEST
wait "$vfs_pid"
fetched=$(node -e 'const s=JSON.parse(require("fs").readFileSync(process.argv[1])); console.log(s["storage.backend_bytes"] ?? 0)' "$work/vstats.json")
total=$(du -cb "$work"/blobs/* | tail -1 | cut -f1)
echo "the guest ran programs from the image after fetching $fetched of the image's $total blob bytes ($((100 * fetched / total))%)"
