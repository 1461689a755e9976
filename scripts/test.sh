#!/usr/bin/env bash
# Set-up, then every test: unit, vectors, fuzz and integration (real kernel mounts, QEMU guests,
# registries). Usage: scripts/test.sh [test files...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/check-deps
npx tsc -p tsconfig.json --noEmit

if [ $# -gt 0 ]; then
  files=("$@")
else
  # Explicit file lists: Node 20 does not expand quoted ** globs itself.
  mapfile -t files < <(find test -name '*.test.ts' | sort)
fi
echo "test: ${#files[@]} test files" >&2
exec node --import tsx --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
