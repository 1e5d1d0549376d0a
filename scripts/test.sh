#!/usr/bin/env bash
# Runs the whole suite, or the test files/folders given as arguments:
# type-check, then unit, integration, policy and end-to-end tests with tap.
# Expects scripts/setup.sh to have run (npm test does both).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PWD/.tools/bin:$PATH"
export MODELGATE_LOG_LEVEL="${MODELGATE_LOG_LEVEL:-error}"

echo "[test] type-check"
tsc -p tsconfig.json

targets=("$@")
if (( ${#targets[@]} == 0 )); then
  targets=(test/unit test/integration test/e2e)
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "[test] tap ${targets[*]}"
set +e
tap --reporter=tap "${targets[@]}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One plain summary line, counted from tap's own totals.
summary=$(grep -E '^# \{ total: [0-9]+' "$log" | tail -n 1 || true)
pass=$(sed -nE 's/.*pass: ([0-9]+).*/\1/p' <<<"$summary")
fail=$(sed -nE 's/.*fail: ([0-9]+).*/\1/p' <<<"$summary")
skip=$(sed -nE 's/.*skip: ([0-9]+).*/\1/p' <<<"$summary")
echo "tests: ${pass:-0} passed, ${fail:-0} failed${skip:+, $skip skipped}"
exit "$status"
