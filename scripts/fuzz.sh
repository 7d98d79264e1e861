#!/usr/bin/env bash
# Builds the libFuzzer targets in Fuzz/ and runs each one for SECONDS (default 30) from a copy of
# its committed seed corpus (Fuzz/Corpus/<Target>/). New units go to a scratch directory, never
# into the repository. Prints each target's executions, coverage and speed; exits 1 on any crash,
# timeout or out-of-memory, printing the artifact's path. See docs/fuzzing.md.
#
#   scripts/fuzz.sh [SECONDS] [TARGET…]
#
# Environment:
#   FUZZ_RUNS=N        also stop a target after N executions (whichever comes first)
#   FUZZ_WORK_DIR=DIR  scratch directory (default: a fresh one under /tmp, removed after a clean run)
#   FUZZ_NICE=N        run the fuzzers under `nice -n N` (default 0), so a long run leaves the CPU to builds
#   FUZZ_ARGS="…"      more libFuzzer options, e.g. "-rss_limit_mb=1024"
#   FUZZ_SCRATCH=DIR   SwiftPM scratch path (default Fuzz/.build); a long run in its own one is not
#                      disturbed by other builds replacing the binaries it runs
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(FuzzFrames FuzzEnvelope FuzzRequest FuzzAzureResponses FuzzHeaders)
case "$seconds" in '' | *[!0-9]*) echo "fuzz.sh: SECONDS must be a whole number, not '$seconds'" >&2; exit 2 ;; esac

build=(swift build -c release --sanitize=fuzzer --package-path Fuzz --scratch-path "${FUZZ_SCRATCH:-Fuzz/.build}")
"${build[@]}"
bin=$("${build[@]}" --show-bin-path)

work=${FUZZ_WORK_DIR:-$(mktemp -d /tmp/fedbroker-fuzz.XXXXXX)}
mkdir -p "$work"
extra=()
[ -n "${FUZZ_RUNS:-}" ] && extra+=("-runs=$FUZZ_RUNS")
# shellcheck disable=SC2206  # word splitting of the options is the point
[ -n "${FUZZ_ARGS:-}" ] && extra+=($FUZZ_ARGS)

failed=0
summary=()
for target in "${targets[@]}"; do
  [ -x "$bin/$target" ] || { echo "fuzz.sh: no fuzz target $target (have: $(ls Fuzz/Sources | tr '\n' ' '))" >&2; exit 2; }
  corpus=$work/$target/corpus
  artifacts=$work/$target/artifacts
  log=$work/$target/fuzz.log
  mkdir -p "$corpus" "$artifacts"
  cp Fuzz/Corpus/"$target"/* "$corpus"/
  echo "fuzz.sh: $target for ${seconds}s${FUZZ_RUNS:+ or $FUZZ_RUNS runs} (log $log)"
  started=$(date +%s)
  # SWIFT_BACKTRACE=enable=no: otherwise Swift's backtracer takes the trap's signal and libFuzzer
  # writes no crash artifact. -timeout: one input taking over 10 s is a hang, reported as such.
  rc=0
  SWIFT_BACKTRACE=enable=no nice -n "${FUZZ_NICE:-0}" "$bin/$target" -max_total_time="$seconds" -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "${extra[@]}" "$corpus" >"$log" 2>&1 || rc=$?
  wall=$(($(date +%s) - started))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n 1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  units=$(find "$corpus" -type f | wc -l)
  line="$target: runs ${runs:-?}, cov ${cov:-?}, ft ${ft:-?}, corpus $units, exec/s ${speed:-?}, ${wall}s"
  found=$(find "$artifacts" -type f | head -n 5)
  if [ "$rc" -ne 0 ] || [ -n "$found" ]; then
    failed=1
    line="$line  FAILED (exit $rc)"
    tail -n 40 "$log" >&2
    for artifact in $found; do echo "fuzz.sh: $target artifact: $artifact" >&2; done
  fi
  echo "fuzz.sh: $line"
  summary+=("$line")
done

printf 'fuzz.sh: %s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
  echo "fuzz.sh: FAILED; reproduce with: SWIFT_BACKTRACE=enable=no $bin/<Target> <artifact> (work dir $work kept)" >&2
  exit 1
fi
[ -n "${FUZZ_WORK_DIR:-}" ] || rm -rf "$work"
