#!/usr/bin/env bash
# The project's one test command (README, .ci/run). On a fresh Debian machine with only the
# Swift toolchain it installs what the tests need, builds everything once, runs `swift test`,
# then drives the real `fedbroker migrate` and `fedbroker-dev emulator` binaries from the shell.
# The store tests need PostgreSQL: this script starts a throwaway server (and stops it on exit).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages the tests use. curl drives the CLI smoke test.
packages=()
command -v curl >/dev/null 2>&1 || packages+=(curl)
command -v openssl >/dev/null 2>&1 || packages+=(openssl)
command -v swift >/dev/null 2>&1 || { echo "test.sh: the Swift toolchain (swift) is not on PATH" >&2; exit 2; }
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
[ -x "$(pg_bin)/initdb" ] || packages+=(postgresql)
if [ ${#packages[@]} -gt 0 ]; then
  echo "test.sh: installing ${packages[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi

# A throwaway PostgreSQL for the store tests (SWIFT-STACK.md recipe): trust auth on loopback, no
# fsync, data under /tmp, first free port from 54329. initdb refuses root, so it runs as `postgres`.
PGBIN=$(pg_bin)
as_postgres() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }
pg_port=${FEDBROKER_TEST_PG_PORT:-54329}
while "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$pg_port" >/dev/null 2>&1 \
  || (exec 3<>"/dev/tcp/127.0.0.1/$pg_port") 2>/dev/null; do
  pg_port=$((pg_port + 1))
done
pg_data=$(mktemp -d /tmp/fedbroker-pg.XXXXXX)
as_root chown postgres:postgres "$pg_data"
chmod 700 "$pg_data" 2>/dev/null || as_root chmod 700 "$pg_data"
rsa_keys=""
stop_postgres() {
  as_postgres "$PGBIN/pg_ctl" -D "$pg_data" -m immediate stop >/dev/null 2>&1 || true
  as_root rm -rf "$pg_data"
  if [ -n "$rsa_keys" ]; then
    kill $(jobs -p) 2>/dev/null || true  # openssl still writing there, when the build failed
    wait 2>/dev/null || true
    rm -rf "$rsa_keys"
  fi
}
trap stop_postgres EXIT
as_postgres "$PGBIN/initdb" -D "$pg_data" -A trust -U postgres -E UTF8 --no-sync >/dev/null
as_postgres "$PGBIN/pg_ctl" -D "$pg_data" -l "$pg_data/server.log" -w -t 30 -o "-p $pg_port -k $pg_data \
  -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
  -c max_connections=500" start >/dev/null
export FEDBROKER_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/postgres?sslmode=disable"
echo "test.sh: PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$pg_port ($pg_data)"

# The transport tests hold thousands of sockets open in one process: raise the soft descriptor
# limit to the hard one (a no-op where it already is).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# The test run's RSA keys (RSAKeyMaterial in EmulatorState+Scenario.swift): the emulators' pool,
# six each of the sizes the tests use (2048, 3072), and spares for the tests' own issuers, made by
# openssl while the build runs, so the test process does not generate them on its cooperative
# threads at the suite's start. Throwaway test keys in a private scratch directory, removed on exit.
rsa_keys=$(mktemp -d /tmp/fedbroker-test-rsa.XXXXXX)
chmod 700 "$rsa_keys"
make_rsa_keys() {  # prefix bits count
  for n in $(seq "$3"); do
    openssl genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:$2" -out "$rsa_keys/$1-$2-$n.pem" 2>/dev/null || return 1
  done
}
make_rsa_keys rsa 2048 6 & rsa_2048=$!
make_rsa_keys rsa 3072 6 & rsa_3072=$!
{ make_rsa_keys spare 2048 10 && make_rsa_keys spare 3072 2; } & rsa_spares=$!

# One build of sources and tests, then the tests without a rebuild (avoids the trait flip-flop
# between `swift build` and `swift test`, see SWIFT-STACK.md pitfall 2).
swift build --build-tests
if wait "$rsa_2048" && wait "$rsa_3072" && wait "$rsa_spares"; then
  export FEDBROKER_TEST_RSA_KEYS="$rsa_keys"
  echo "test.sh: $(ls "$rsa_keys" | wc -l) RSA keys for the tests made by openssl (the emulators' pool and spares)"
else
  echo "test.sh: openssl could not make the emulators' RSA keys; the tests generate their own" >&2
fi
# Every log line of the test process, at trace level for the broker worlds, and every secret the
# tests meet, go to a scratch directory; the checker then proves no secret reached a log line
# (Tests/TestSupport/TestLogging.swift).
export FEDBROKER_TEST_LOG_DIR
FEDBROKER_TEST_LOG_DIR=$(mktemp -d /tmp/fedbroker-test-logs.XXXXXX)
# Bounded: the suite takes about two minutes, so a test process still running after 20 fails the
# run (with its exit code, 124) rather than holding CI to its own limit.
# In the background and waited for: `timeout` runs the tests in a process group of their own,
# which a Ctrl-C in a terminal does not reach, so an INT or TERM to this script is passed on.
# As INT, both ways: `swift test` stops its test process on INT, while on TERM it dies alone and
# leaves that process (in a process group of its own too) running.
# The trap is set first and the job started only if no signal came yet. One window is left: a
# signal between the job's start and `timeout` setting its handlers (microseconds) is lost, as
# bash starts a background job with INT ignored; the script then waits the run out.
status=0
interrupted=""
tests=""
stop_tests() { [ -z "$tests" ] || kill -INT "$tests" 2>/dev/null || true; }
trap 'interrupted=1; stop_tests' INT TERM
if [ -z "$interrupted" ]; then
  timeout -s INT -k 30 1200 swift test --skip-build &
  tests=$!
  [ -z "$interrupted" ] || stop_tests
fi
while [ -n "$tests" ]; do
  wait "$tests" && status=0 || status=$?
  # A trapped signal ends `wait` early (a status above 128) while the tests still run: wait again
  # until they are gone. Any other status is theirs (127: no such child, so never a spin on a
  # reused pid).
  [ "$status" -gt 128 ] && kill -0 "$tests" 2>/dev/null || break
done
trap - INT TERM
if [ -n "$interrupted" ]; then
  echo "test.sh: interrupted; swift test was stopped" >&2
  exit 130
fi
if [ "$status" -ne 0 ]; then
  [ "$status" -ne 124 ] && [ "$status" -ne 137 ] || echo "test.sh: swift test was still running after 20 minutes and was stopped" >&2
  exit "$status"
fi
python3 scripts/check-log-secrets.py "$FEDBROKER_TEST_LOG_DIR"
rm -rf "$FEDBROKER_TEST_LOG_DIR"
unset FEDBROKER_TEST_LOG_DIR

# `fedbroker migrate` against the fresh server from the command line: applies, then is a no-op, and
# a server that is down is a clear failure.
migrate_url="postgres://postgres@127.0.0.1:$pg_port/postgres?sslmode=disable"
out=$(.build/debug/fedbroker migrate --database-url "$migrate_url")
echo "$out"
grep -q "applied 0001_init.sql" <<<"$out" || { echo "test.sh: migrate did not apply 0001_init.sql" >&2; exit 1; }
out=$(.build/debug/fedbroker migrate --database-url "$migrate_url")
echo "$out"
grep -q "nothing to do" <<<"$out" || { echo "test.sh: a second migrate was not a no-op" >&2; exit 1; }
# A port bound and closed a moment ago, rather than assuming 127.0.0.1:1 is closed.
closed_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
if err=$(.build/debug/fedbroker migrate --database-url "postgres://postgres@127.0.0.1:$closed_port/postgres?sslmode=disable" 2>&1); then
  echo "test.sh: migrate against a closed port succeeded" >&2; exit 1
fi
grep -q "database_unavailable" <<<"$err" || { echo "test.sh: unclear error for a database that is down: $err" >&2; exit 1; }
echo "test.sh: migrate against a closed port fails as expected: $(tail -n 1 <<<"$err")"

# Microsoft's Python SDKs (from PyPI, pinned) against the real binary. FEDBROKER_SKIP_SDK_CHECK=1
# skips them where PyPI is out of reach; CI never sets it.
sdk_python=
if [ "${FEDBROKER_SKIP_SDK_CHECK:-0}" != 1 ]; then
  venv=.build/sdk-venv
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" 2>/dev/null || {
      as_root apt-get update -qq
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv "$venv"
    }
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check -r scripts/sdk-check/requirements.txt
  sdk_python=$venv/bin/python
fi
scripts/smoke-emulator.sh .build/debug/fedbroker "$sdk_python"

# deploy/ checked offline against the built binary (docs/deploy.md, last section): the YAML parses
# and renders, every configuration key exists, `serve --check-config` accepts the ConfigMap's and
# the VM's files, the Terraform parses and its variables and outputs agree. No Docker engine,
# cluster or Azure here: docs/deploy.md lists what is not run.
deploy_venv=.build/deploy-check-venv
if [ ! -x "$deploy_venv/bin/python" ]; then
  python3 -m venv "$deploy_venv" 2>/dev/null || {
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$deploy_venv"
  }
fi
"$deploy_venv/bin/pip" install -q --disable-pip-version-check -r scripts/deploy-check/requirements.txt
"$deploy_venv/bin/python" scripts/deploy-check.py --fedbroker .build/debug/fedbroker

# The README's first command: the whole product end to end against the emulator (the production
# `fedbroker` binary as a child process, its CLI, the client library). Exit 0 only when every step
# did what it said. Then --keep-running, explored the way the README tells a newcomer to.
demo_dir=$(mktemp -d /tmp/fedbroker-demo-ci.XXXXXX)
.build/debug/fedbroker-dev demo --work-dir "$demo_dir/run"
.build/debug/fedbroker-dev demo --keep-running --work-dir "$demo_dir/kept" >"$demo_dir/kept.out" 2>&1 &
demo_pid=$!
for _ in $(seq 1 1200); do
  grep -q "Still running" "$demo_dir/kept.out" 2>/dev/null && break
  kill -0 "$demo_pid" 2>/dev/null || break
  sleep 0.1
done
grep -q "Still running" "$demo_dir/kept.out" || { echo "test.sh: demo --keep-running did not stay up:" >&2; cat "$demo_dir/kept.out" >&2; exit 1; }
(
  . "$demo_dir/kept/env.sh"
  fedbroker tenant list --state active | grep -q "Northwind" || { echo "test.sh: the kept demo's tenants are not listed" >&2; exit 1; }
  # shellcheck disable=SC2086  # the variable holds several flags on purpose
  fedbroker client health $FEDBROKER_DEMO_CLIENT | grep -q SERVING || { echo "test.sh: the kept demo's broker is not serving" >&2; exit 1; }
)
kill -TERM "$demo_pid"
wait "$demo_pid" || { echo "test.sh: demo --keep-running did not stop cleanly on SIGTERM:" >&2; tail -n 20 "$demo_dir/kept.out" >&2; exit 1; }
echo "test.sh: demo --keep-running: env.sh works for the CLI and the client; SIGTERM stopped it with exit 0"
rm -rf "$demo_dir"

# The hot path's regression guard (docs/operations.md): a cached Unwrap's cost as a ratio to a
# fixed computation, against Benchmarks/hot-path.json; a change that doubles it fails. Seconds.
scripts/hot-path-guard.sh

# The bench's cold start drives the production `fedbroker serve` as a child process; a small store
# keeps it to seconds. It once launched fedbroker-dev itself (no `serve` there) and nothing noticed.
cold_out=$(mktemp /tmp/fedbroker-cold-start.XXXXXX.json)
.build/debug/fedbroker-dev bench --parts cold-start --tenants 200 --slots 2 --cold-start-dir "${TMPDIR:-/tmp}" --output "$cold_out" >/dev/null 2>&1 \
  || { echo "test.sh: fedbroker-dev bench --parts cold-start failed:" >&2; .build/debug/fedbroker-dev bench --parts cold-start --tenants 20 --slots 2 --cold-start-dir "${TMPDIR:-/tmp}" --output "$cold_out" >&2; exit 1; }
python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["coldStart"]; assert c["exitStatus"] == 0, c; print("test.sh: bench cold start: %d tenants, first answer after %.2f s, exit %d" % (c["tenants"], c["secondsToFirstKeyOperation"], c["exitStatus"]))' "$cold_out"
rm -f "$cold_out"

# The cached part with --compare-stores: a broker on SQLite and one on this run's PostgreSQL take
# turns in the same rounds. Checked for answers on both and no errors, not for figures (a debug
# build's figures mean nothing). Seconds.
compare_out=$(mktemp /tmp/fedbroker-compare-stores.XXXXXX.json)
compare_log=$(mktemp /tmp/fedbroker-compare-stores.XXXXXX.log)
.build/debug/fedbroker-dev bench --parts cached --compare-stores --database-url "$FEDBROKER_TEST_DATABASE_URL" \
  --concurrency 4 --seconds 0.6 --rounds 2 --store-dir "${TMPDIR:-/tmp}" --output "$compare_out" >"$compare_log" 2>&1 \
  || { echo "test.sh: fedbroker-dev bench --parts cached --compare-stores failed:" >&2; cat "$compare_log" >&2; exit 1; }
python3 -c 'import json,sys; p=json.load(open(sys.argv[1]))["cached"][0]; ok=all(p[s]["operations"] > 0 and p[s]["errors"] == 0 for s in ("echo","broker","postgres")); assert ok, p; print("test.sh: bench --compare-stores: %d answers on SQLite, %d on PostgreSQL, none failed" % (p["broker"]["operations"], p["postgres"]["operations"]))' "$compare_out" \
  || { echo "test.sh: bench --compare-stores: the echo or a broker got no answers, or some failed:" >&2; cat "$compare_log" >&2; exit 1; }
rm -f "$compare_out" "$compare_log"

# The parsers that read input from outside, fuzzed for 30 s each from the committed seed corpus
# (docs/fuzzing.md): a separate release build of Fuzz/ with libFuzzer; any crash fails the run.
scripts/fuzz.sh 30
