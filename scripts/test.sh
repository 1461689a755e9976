#!/usr/bin/env bash
# Set-up, then every test: unit, vectors, fuzz and integration (real kernel mounts, QEMU guests,
# registries), then the tests of guest- and network-facing native code under AddressSanitizer
# (scripts/asan.sh). Usage: scripts/test.sh [test files...] (only those, without the sanitizer run)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/check-deps
npx tsc -p tsconfig.json --noEmit

if [ $# -gt 0 ]; then
  exec node --import tsx --test --test-concurrency=1 --test-reporter=spec "$@"
fi
# Explicit file lists: Node 20 does not expand quoted ** globs itself.
mapfile -t files < <(find test -name '*.test.ts' | sort)
echo "test: ${#files[@]} test files" >&2
status=0
node --import tsx --test --test-concurrency=1 --test-reporter=spec "${files[@]}" || status=$?
# The native code a guest or a registry can reach, once more under AddressSanitizer and UBSan:
# descriptor chains, vhost-user messages, FUSE requests against the passthrough share, ZRan layers
# (the fuzz tests); a real /dev/fuse mount, its connection handed between daemons through a
# supervisor socket (fds passed both ways), a vhost-user frontend over the socket with guest
# memory and rings, and the share's escape attempts (integration tests). About three minutes.
echo "test: the guest- and network-facing tests against the sanitized addon (scripts/asan.sh)" >&2
scripts/asan.sh test/fuzz/virtqueue.test.ts test/fuzz/vhost-messages.test.ts test/fuzz/fuse-requests.test.ts test/fuzz/zran-layer-mutation.test.ts \
  test/integration/fuse-mount.test.ts test/integration/fuse-takeover.test.ts test/integration/vhost-user.test.ts test/integration/passthrough-escape.test.ts || status=$?
exit "$status"
