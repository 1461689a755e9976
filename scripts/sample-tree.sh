#!/usr/bin/env bash
# Makes the built-in sample image tree (deterministic): a tiny busybox root filesystem plus data
# files, with the file kinds RAFS carries. Usage: scripts/sample-tree.sh DIR (DIR must not exist).
set -euo pipefail
dir=${1:?usage: sample-tree.sh DIR}
[ -e "$dir" ] && { echo "sample-tree: $dir exists" >&2; exit 2; }
busybox=/bin/busybox
[ -x "$busybox" ] || { echo "sample-tree: $busybox is missing (apt-get install busybox-static)" >&2; exit 2; }

mkdir -p "$dir"/{bin,sbin,etc,tmp,proc,sys,dev,root,usr/bin,usr/share/damselfly,var/log}
cp "$busybox" "$dir/bin/busybox"
for applet in sh ls cat echo sha256sum md5sum wc head tail find stat mount umount mkdir uname sleep dd du df; do
  ln -s busybox "$dir/bin/$applet"
done
ln "$dir/bin/busybox" "$dir/sbin/busybox-hardlink"
cat > "$dir/etc/os-release" <<'OS'
NAME="Damselfly sample"
ID=damselfly-sample
VERSION_ID=1
OS
echo 'root:x:0:0:root:/root:/bin/sh' > "$dir/etc/passwd"
cat > "$dir/usr/bin/hello" <<'SH'
#!/bin/sh
echo "hello from a lazily loaded Damselfly image"
SH
chmod 755 "$dir/usr/bin/hello"
# Data: a few MiB of compressible text and incompressible bytes, and a duplicate for dedup.
python3 - "$dir/usr/share/damselfly" <<'PY'
import hashlib, os, sys
d = sys.argv[1]
with open(os.path.join(d, 'words.txt'), 'w') as f:
    for i in range(200000):
        f.write(f"line {i} of the damselfly sample data set\n")
block = b''
seed = b'damselfly'
with open(os.path.join(d, 'random.bin'), 'wb') as f:
    for i in range(4 * 1024 * 1024 // 32):
        seed = hashlib.sha256(seed).digest()
        f.write(seed)
PY
cp "$dir/usr/share/damselfly/random.bin" "$dir/usr/share/damselfly/random-copy.bin"
truncate -s 64M "$dir/var/log/sparse.log"
mkfifo "$dir/tmp/fifo"
mknod "$dir/dev/null" c 1 3
setfattr -n user.demo -v "an extended attribute" "$dir/etc/os-release"
chmod 1777 "$dir/tmp"
find "$dir" -exec touch -h -d '2024-01-01 00:00:00' {} +
