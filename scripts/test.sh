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

if (( $# == 0 )); then
  echo "[test] shipped policies: validate, format, ALLOW/DENY cases with full coverage"
  node src/cli/main.ts policy validate --dir policies
  node src/cli/main.ts policy format --check --dir policies
  node src/cli/main.ts policy test --dir policies --require-coverage
fi

args=("$@")
if (( ${#args[@]} == 0 )); then
  args=(test/unit test/integration test/e2e)
fi
# Directories stand for the *.test.ts files below them (helpers and fixtures are not tests).
targets=()
for a in "${args[@]}"; do
  if [[ -d $a ]]; then
    while IFS= read -r f; do targets+=("$f"); done < <(find "$a" -name '*.test.ts' | sort)
  else
    targets+=("$a")
  fi
done

log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "[test] tap: ${#targets[@]} test files in ${args[*]}"
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
