#!/usr/bin/env bash
# The hot path's regression guard (docs/operations.md, "Regression guard"): the time of one cached
# Unwrap through the service (blob, authorization, data-key cache, audit journal, metrics), as a
# ratio to a fixed reference computation timed in the same rounds, against the committed baseline.
# A ratio, not a time: a slower or loaded machine slows both alike. (Instruction counts would be
# steadier, but this machine has no hardware counters and valgrind 3.19 cannot run Swift 6.3's
# binaries: it crashes in libdispatch's signal thread.)
#
#   scripts/hot-path-guard.sh            check against Benchmarks/hot-path.json (fails at 1.75 x)
#   scripts/hot-path-guard.sh --update   measure and write the baseline (commit it with the change)
#
# Uses the debug build scripts/test.sh makes (FEDBROKER_BIN to point elsewhere; the baseline
# names the build it was measured with). The journal goes to /dev/shm when it exists, so the
# disk's fsync latency is not what is measured.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${FEDBROKER_DEV_BIN:-.build/debug/fedbroker-dev}
baseline=Benchmarks/hot-path.json
iterations=${HOT_PATH_ITERATIONS:-2100}
# A change that doubles the hot path's cost fails; the noise of a loaded CI machine does not.
margin=1.75
dir=/dev/shm; [ -d "$dir" ] || dir=${TMPDIR:-/tmp}
[ -x "$bin" ] || { echo "hot-path-guard: $bin is missing; run swift build first" >&2; exit 2; }

out=$(mktemp /tmp/fedbroker-hot-path.XXXXXX.json)
trap 'rm -f "$out"' EXIT
"$bin" bench --parts hot-path --iterations "$iterations" --store-dir "$dir" --output "$out" >/dev/null 2>&1 \
  || { echo "hot-path-guard: fedbroker-dev bench --parts hot-path failed" >&2; "$bin" bench --parts hot-path --iterations 10 --store-dir "$dir" --output "$out" >&2; exit 1; }
read -r ratio call reference < <(python3 -c 'import json,sys; h=json.load(open(sys.argv[1]))["hotPath"]; print(h["ratioToReference"], h["microsecondsPerCall"], h["microsecondsPerReference"])' "$out")
echo "hot-path-guard: a cached Unwrap costs $ratio reference computations ($call µs against $reference µs, median of 7 rounds, $iterations calls)"

if [ "${1:-}" = "--update" ]; then
  mkdir -p "$(dirname "$baseline")"
  printf '{\n  "ratioToReference": %s,\n  "build": "debug",\n  "iterations": %s,\n  "measured": "%s"\n}\n' \
    "$ratio" "$iterations" "$(date -u +%Y-%m-%d)" >"$baseline"
  echo "hot-path-guard: baseline written to $baseline"
  exit 0
fi

[ -f "$baseline" ] || { echo "hot-path-guard: no baseline at $baseline; run with --update" >&2; exit 2; }
python3 - "$ratio" "$baseline" "$margin" <<'PY'
import json, sys
measured, margin = float(sys.argv[1]), float(sys.argv[3])
expected = json.load(open(sys.argv[2]))["ratioToReference"]
factor = measured / expected
print(f"hot-path-guard: {factor:.2f} x the baseline ({expected:.3f}); the limit is {margin:.2f} x")
if factor > margin:
    print("hot-path-guard: FAILED: a cached Unwrap now costs more than the margin allows. Profile "
          "`fedbroker-dev bench --parts hot-path` (perf record -g) to find the change, or, if the cost is intended, "
          "run scripts/hot-path-guard.sh --update and say why in the commit.", file=sys.stderr)
    sys.exit(1)
PY
