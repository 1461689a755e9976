#!/usr/bin/env bash
# The tests that feed the native addon hostile input, against a build of it under AddressSanitizer
# and UndefinedBehaviorSanitizer: every fuzz test (mutated bootstraps, ZRan layers and contexts,
# descriptor chains, vhost-user message streams, FUSE request streams, the passthrough share) and
# the unit tests of the storage, FUSE and filesystem layers. An out-of-bounds access, a
# use-after-free or undefined behaviour in the addon aborts the process that made it (the test then
# fails, the sanitizer's report on its stderr), instead of going unseen in an optimized build.
#
# Usage: scripts/asan.sh [TEST FILE...]   (default: the files above; as root, as scripts/test.sh)
# The sanitized addon is built in build/native-asan (kept; rebuilt when a source changes) and
# loaded through DAMSELFLY_ADDON, with the ASan runtime preloaded into every Node process the tests
# start (the CLI they spawn included). Takes several times as long as the plain run. Integration
# tests run too when named (the FUSE, vhost-user, ZRan and passthrough ones pass), except those that
# also start the reference virtiofsd: the preloaded runtime reaches it and QEMU as well, and it stops
# serving under it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || bash scripts/setup.sh
OUT=build/native-asan
FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1"
# CXXFLAGS and LDFLAGS are read when the build directory is configured, the first time.
CXXFLAGS="$FLAGS" LDFLAGS="-fsanitize=address,undefined" npx cmake-js compile --directory native --out "$OUT" >"$OUT.log" 2>&1 || {
  cat "$OUT.log" >&2
  exit 1
}
# The list is read whole before it is searched: `ldd | grep -q` under pipefail failed when grep,
# done at the first match, closed the pipe while ldd still wrote (SIGPIPE), as it once did in CI.
libs=$(ldd "$OUT/Release/damselfly.node")
[[ $libs == *libasan* ]] || {
  echo "asan: $OUT/Release/damselfly.node is not instrumented (remove $OUT and run again)" >&2
  exit 1
}
# The CLI the tests spawn runs the bundle in dist/: rebuilt when a source is newer (not after set-up).
if [ ! -f dist/bundle/main.js ] || [ -n "$(find src -newer dist/bundle/main.js -print -quit)" ]; then
  npm run build --silent >/dev/null
fi
if [ $# -eq 0 ]; then
  set -- $(find test/fuzz test/unit/storage test/unit/fuse test/unit/fs -name '*.test.ts' | sort)
fi
export DAMSELFLY_ADDON="$PWD/$OUT/Release/damselfly.node"
LD_PRELOAD="$(gcc -print-file-name=libasan.so)"
export LD_PRELOAD
# Leaks are not checked: Node itself keeps memory to its exit. abort_on_error: a report ends the process.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1
exec node --import tsx --test --test-concurrency=1 "$@"
