#!/usr/bin/env bash
# The main job on the built-in default image: set up, make the sample tree, build a RAFS v6 image
# from it, then inspect and check it and unpack it again.
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
damselfly inspect --bootstrap "$work/image.boot" | sed -n '/^tree:/,$p' | head -20

echo "== inspect one file's chunks"
damselfly inspect --bootstrap "$work/image.boot" --path /usr/share/damselfly/random-copy.bin | head -40

echo "== check (every structure, every chunk digest)"
damselfly check --bootstrap "$work/image.boot" --blob-dir "$work/blobs"

echo "== unpack and compare with the source"
damselfly unpack --bootstrap "$work/image.boot" --blob-dir "$work/blobs" --output "$work/unpacked"
listing() {
  (cd "$1" && find . \( -type d -printf '%p %M %U:%G %T@\n' \) -o -printf '%p %M %U:%G %s %T@ %l\n' | sort
   cd "$1" && find . -type f -exec sha256sum {} + | sort)
}
diff <(listing "$work/src") <(listing "$work/unpacked") && echo "unpacked tree is identical to the source (types, modes, owners, sizes, mtimes, targets, contents)"
