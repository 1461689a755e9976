#!/usr/bin/env bash
# Idempotent set-up on Debian 12 with Node 20, as root: the apt packages Damselfly and its tests
# use, then `npm ci` (which builds the C++ addon with cmake-js and compiles the TypeScript).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  # addon build
  build-essential cmake pkg-config liblz4-dev libzstd-dev zlib1g-dev
  # independent checks of RAFS v6 images and the build/serve benchmarks' peers
  erofs-utils squashfs-tools squashfuse fuse3 attr e2fsprogs
  # an independent implementation of OCI layer application (umoci unpack), for the converter's tests
  umoci
  # test guests (virtio-fs under QEMU/TCG)
  qemu-system-x86 linux-image-amd64 busybox-static cpio kmod
  # registry, proxy and networking for the lazy-loading tests
  docker-registry nginx-light apache2-utils skopeo iproute2 debootstrap
  # misc tools used by tests and benchmarks
  xz-utils zstd curl ca-certificates
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = 'install ok installed' ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm ci runs the package's install script (cmake-js → build/native) and prepare (tsc → dist,
# then scripts/bundle.mjs → dist/bundle, which bin/damselfly.js runs).
stamp=node_modules/.damselfly-setup
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ] || [ ! -f build/native/Release/damselfly.node ]; then
  npm ci --no-audit --no-fund
  touch "$stamp"
else
  # Dependencies are current; rebuild what the sources may have changed.
  npm run --silent build:native >/dev/null
  npm run --silent build
fi
