#!/usr/bin/env bash
# Starts the real `fedbroker-dev emulator` binary, checks it from the outside with curl the way a
# newcomer would (env.sh, IMDS, the Key Vault challenge, the control API), and stops it with
# SIGTERM, expecting a clean exit. With a Python that has scripts/sdk-check/requirements.txt
# installed as the second argument, Microsoft's own SDKs run against it too.
# Prints "smoke: N passed, N failed".
set -uo pipefail
bin=${1:-.build/debug/fedbroker}
# The developer executable (emulator, demo, bench) beside it; production never ships it.
dev=${bin}-dev
sdk_python=${2:-}
dir=$(mktemp -d)
log="$dir/emulator.log"
passed=0; failed=0
check() { # name, command...
  local name=$1; shift
  if "$@" >/dev/null 2>&1; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "smoke: FAILED: $name" >&2; fi
}
cleanup() { [ -n "${pid:-}" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

check "fedbroker-dev emulator --help" "$dev" emulator --help
check "rejects a non-loopback host" bash -c "! '$dev' emulator --state-dir '$dir/x' --host 0.0.0.0"
# The production binary carries no fake token issuer: no emulator, demo or bench command, and no
# symbol of the AzureEmulator module or the test support linked into it.
# (`emulator --help` would not do: an unknown subcommand's --help prints the root help, exit 0.)
check "fedbroker has no emulator command" bash -c "! '$bin' emulator --state-dir '$dir/none' >/dev/null 2>&1 && ! '$bin' --help | grep -qw emulator"
check "fedbroker links no AzureEmulator or test-support code" bash -c "! nm '$bin' | grep -q -e AzureEmulator -e FedBrokerTestSupport"

"$dev" emulator --state-dir "$dir/state" >"$dir/stdout" 2>"$log" &
pid=$!
# Wait (bounded) for the emulator to write env.sh: that is its readiness signal.
for _ in $(seq 1 600); do
  [ -s "$dir/state/env.sh" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if [ ! -s "$dir/state/env.sh" ]; then
  echo "smoke: emulator did not become ready; its log:" >&2; cat "$log" >&2
  echo "smoke: $passed passed, $((failed + 1)) failed"; exit 1
fi
# shellcheck disable=SC1091
. "$dir/state/env.sh"
mi=${FEDBROKER_EMU_MI_CLIENT_IDS%%,*}

imds=$(curl -sf -H Metadata:true "$FEDBROKER_EMU_IMDS_URL/metadata/identity/oauth2/token?api-version=2018-02-01&resource=api://AzureADTokenExchange&client_id=$mi")
check "IMDS issues a token" test -n "$(printf '%s' "$imds" | grep -o '"access_token":"[^"]*"')"
assertion=$(printf '%s' "$imds" | sed -E 's/.*"access_token":"([^"]*)".*/\1/')
token=$(curl -sf --cacert "$FEDBROKER_EMU_CA_BUNDLE" "$FEDBROKER_EMU_AUTHORITY_URL/$FEDBROKER_EMU_C1_TENANT_ID/oauth2/v2.0/token" \
  --data-urlencode "client_id=$FEDBROKER_EMU_APP_CLIENT_ID" --data-urlencode "scope=https://vault.azure.net/.default" \
  --data-urlencode "grant_type=client_credentials" \
  --data-urlencode "client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer" \
  --data-urlencode "client_assertion=$assertion" | sed -E 's/.*"access_token":"([^"]*)".*/\1/')
check "Entra exchanges the assertion" test -n "$token"
challenge=$(curl -s -i --cacert "$FEDBROKER_EMU_CA_BUNDLE" -X POST "$FEDBROKER_EMU_C1_VAULT_URL/keys/$FEDBROKER_EMU_C1_KEY_NAME//wrapkey?api-version=7.4")
check "Key Vault challenges with the vault's tenant" grep -q "authorization=\"$FEDBROKER_EMU_AUTHORITY_URL/$FEDBROKER_EMU_C1_TENANT_ID\"" <<<"$challenge"
wrapped=$(curl -sf --cacert "$FEDBROKER_EMU_CA_BUNDLE" -H "Authorization: Bearer $token" -H "Content-Type: application/json" \
  -d '{"alg":"RSA-OAEP-256","value":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"}' \
  "$FEDBROKER_EMU_C1_VAULT_URL/keys/$FEDBROKER_EMU_C1_KEY_NAME/wrapkey?api-version=7.4")
check "Key Vault wraps with the exchanged token" grep -q '"value":' <<<"$wrapped"
check "control API reports counters" grep -q '"imds.token":1' <<<"$(curl -sf "$FEDBROKER_EMU_CONTROL_URL/control/counters")"

# fedbroker probe against the standalone emulator: customers 1 and 2 pass, the ungranted key fails, classified.
check "probe succeeds for customer 1" "$bin" probe --tenant "$FEDBROKER_EMU_C1_TENANT_ID" --vault-url "$FEDBROKER_EMU_C1_VAULT_URL" --key "$FEDBROKER_EMU_C1_KEY_NAME" --identity "$mi"
check "probe succeeds for customer 2" "$bin" probe --tenant "$FEDBROKER_EMU_C2_TENANT_ID" --vault-url "$FEDBROKER_EMU_C2_VAULT_URL" --key "$FEDBROKER_EMU_C2_KEY_NAME" --identity "${FEDBROKER_EMU_MI_CLIENT_IDS##*,}"
probe_json=$("$bin" probe --json --tenant "$FEDBROKER_EMU_C1_TENANT_ID" --vault-url "$FEDBROKER_EMU_C1_VAULT_URL" --key "$FEDBROKER_EMU_C1_UNGRANTED_KEY_NAME" --identity "$mi"); probe_status=$?
check "probe fails (exit 1) for the ungranted key" test "$probe_status" -eq 1
check "probe names ForbiddenByRbac for it" grep -q '"code" : "ForbiddenByRbac"' <<<"$probe_json"

# The broker itself: serve (plaintext on loopback, SQLite in a temp dir), a health call, a clean SIGTERM.
# start_serve NAME ARGS...: starts `fedbroker serve` in the background, waits (bounded) for its
# "serving on" line; sets serve_pid and serve_port (empty if it never served).
start_serve() {
  local name=$1; shift
  "$bin" serve "$@" >"$dir/$name.out" 2>"$dir/$name.log" &
  serve_pid=$!
  for _ in $(seq 1 300); do grep -q serving "$dir/$name.out" 2>/dev/null && break; kill -0 "$serve_pid" 2>/dev/null || break; sleep 0.1; done
  serve_port=$(sed -nE 's/.*serving on [^:]+:([0-9]+).*/\1/p' "$dir/$name.out")
}
start_serve serve --plaintext --listen 127.0.0.1:0 --data-dir "$dir/broker"
check "fedbroker serve answers health" grep -q SERVING <<<"$("$bin" client health --plaintext --connect "127.0.0.1:${serve_port:-1}")"
check "what serve creates is its owner's alone (umask 077: store, journal)" bash -c \
  "[ -n \"\$(find '$dir/broker' -mindepth 1 | head -1)\" ] && [ -z \"\$(find '$dir/broker' -mindepth 1 -perm /077)\" ]"
check "fedbroker client explains a refusal (exit 1)" bash -c "! '$bin' client key-status --tenant customer-1 --plaintext --connect 127.0.0.1:${serve_port:-1} 2>/dev/null"
kill -TERM "$serve_pid"; wait "$serve_pid"; serve_status=$?
check "fedbroker serve stops cleanly on SIGTERM (exit 0)" test "$serve_status" -eq 0

# Configuration (docs/configuration.md): a wrong type stops the broker at start (exit 64) naming
# the key, whichever layer it came from; serve from a JSON file, with a flag overriding it.
printf '{"server": {"maxStreams": "many"}}\n' >"$dir/bad.json"
"$bin" serve --config "$dir/bad.json" --plaintext --listen 127.0.0.1:0 --data-dir "$dir/bad" >/dev/null 2>"$dir/bad.err"; bad_status=$?
check "a wrong type in the file is refused (exit 64)" test "$bad_status" -eq 64
check "the refusal names server.maxStreams" grep -q "server.maxStreams" "$dir/bad.err"
FEDBROKER_SERVER_MAX_STREAMS=abc "$bin" serve --plaintext --listen 127.0.0.1:0 --data-dir "$dir/bad" >/dev/null 2>"$dir/bad.err"; bad_status=$?
check "a wrong type in the environment is refused (exit 64)" test "$bad_status" -eq 64
check "the refusal names the key" grep -q "server.maxStreams" "$dir/bad.err"
check "plaintext off loopback is refused" bash -c "! '$bin' serve --plaintext --listen 0.0.0.0:0 --data-dir '$dir/bad' 2>/dev/null"
FEDBROKER_SERVER_CALLER_IDENTITY=cn "$bin" serve --plaintext --listen 127.0.0.1:0 --data-dir "$dir/bad" >/dev/null 2>"$dir/bad.err"; bad_status=$?
check "an unknown server.callerIdentity is refused (exit 64), naming the key" bash -c "[ $bad_status -eq 64 ] && grep -q server.callerIdentity '$dir/bad.err'"
FEDBROKER_SERVER_IDLE_TIMEOUT_SECONDS=0 "$bin" serve --plaintext --listen 127.0.0.1:0 --data-dir "$dir/bad" >/dev/null 2>"$dir/bad.err"; bad_status=$?
check "a zero server.idleTimeoutSeconds is refused (exit 64), naming the key" bash -c "[ $bad_status -eq 64 ] && grep -q server.idleTimeoutSeconds '$dir/bad.err'"
FEDBROKER_SERVER_ANSWER_RESERVE_SECONDS=0 "$bin" serve --plaintext --listen 127.0.0.1:0 --data-dir "$dir/bad" >/dev/null 2>"$dir/bad.err"; bad_status=$?
check "a zero server.answerReserveSeconds is refused (exit 64), naming the key" bash -c "[ $bad_status -eq 64 ] && grep -q server.answerReserveSeconds '$dir/bad.err'"
# The keys a file may set are exactly the keys the reader asks for; a misspelt one is refused;
# --check-config accepts a good file without starting anything (what deploy-check runs).
grep -ho 'r\.\(string\|int\|double\|bool\)("[^"]*"' Sources/fedbroker/*.swift | sed 's/.*("//; s/"$//' | sort -u >"$dir/keys-read"
check "serve --list-config-keys lists exactly the keys the reader reads" bash -c "'$bin' serve --list-config-keys | sort | diff - '$dir/keys-read'"
printf '{"server": {"maxStream": 8}}\n' >"$dir/typo.json"
"$bin" serve --config "$dir/typo.json" --plaintext --listen 127.0.0.1:0 --data-dir "$dir/bad" >/dev/null 2>"$dir/bad.err"; bad_status=$?
check "an unknown key in the file is refused (exit 64), naming it" bash -c "[ $bad_status -eq 64 ] && grep -q server.maxStream '$dir/bad.err'"
printf '{"server": {"listen": "0.0.0.0:7443", "tlsCert": "/nonexistent/tls.crt", "tlsKey": "/nonexistent/tls.key", "clientCA": "/nonexistent/ca.crt"}}\n' >"$dir/check.json"
check "serve --check-config accepts a good file without opening its files" bash -c "'$bin' serve --check-config --config '$dir/check.json' | grep -q 'configuration OK'"
check "a missing --config file is refused" bash -c "! '$bin' serve --config '$dir/absent.json' --plaintext --listen 127.0.0.1:0 2>/dev/null"
printf '{"server": {"listen": "127.0.0.1:1", "plaintext": true, "maxStreams": 8}, "store": {"dataDir": "%s"}}\n' "$dir/fromfile" >"$dir/serve.json"
start_serve serve2 --config "$dir/serve.json" --listen 127.0.0.1:0
check "serve from --config (flag overrides listen) answers health" grep -q SERVING <<<"$("$bin" client health --plaintext --connect "127.0.0.1:${serve_port:-1}")"
check "the file's store.dataDir holds the SQLite store" test -s "$dir/fromfile/broker.db"
kill -TERM "$serve_pid"; wait "$serve_pid"; serve_status=$?
check "serve from --config stops cleanly (exit 0)" test "$serve_status" -eq 0

# Microsoft's SDKs against the emulator's default scenario, before the slot rotation below
# retires the first managed identity's credential.
if [ -n "$sdk_python" ]; then
  if sdk_out=$("$sdk_python" scripts/sdk-check/check.py 2>&1); then passed=$((passed + 1)); else failed=$((failed + 1)); fi
  printf '%s\n' "$sdk_out" | grep -v '^sdk: [0-9]'  # one line per SDK check; the summary below counts them as one
fi
# Onboarding from the shell, the way the README shows it: serve with the admin API and two
# bootstrap slots, a staff token from the emulator's sign-in stand-in, then `fedbroker tenant …`
# through register, three classified validation failures fixed by playing the customer, validate,
# activate, a caller, offboard, and the audit trail.
json_field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval("d"+sys.argv[1]))' "$1"; }
control() { curl -sf -X "$1" -H 'Content-Type: application/json' "$FEDBROKER_EMU_CONTROL_URL/control/$2" ${3:+-d "$3"}; }
mis=(${FEDBROKER_EMU_MI_CLIENT_IDS//,/ }); pids=(${FEDBROKER_EMU_MI_PRINCIPAL_IDS//,/ })
FEDBROKER_SLOTS_MAX_TOKEN_LIFETIME_SECONDS=1 \
start_serve admin --plaintext --listen 127.0.0.1:0 --data-dir "$dir/admin" --staff-tenant "$FEDBROKER_EMU_ISV_TENANT_ID" \
  --admin-plaintext --admin-listen 127.0.0.1:0 --bootstrap-slots "${mis[0]}:${pids[0]},${mis[1]}:${pids[1]}"
for _ in $(seq 1 300); do grep -q "admin API on" "$dir/admin.out" 2>/dev/null && break; sleep 0.1; done
admin_port=$(sed -nE 's/.*admin API on [^:]+:([0-9]+).*/\1/p' "$dir/admin.out")
check "serve announces the admin API" test -n "$admin_port"
export FEDBROKER_ADMIN_URL="http://127.0.0.1:${admin_port:-1}"
control POST "users/$FEDBROKER_EMU_STAFF_ADMIN_OID/token" "{\"resource\":\"$FEDBROKER_EMU_ADMIN_AUDIENCE\"}" | json_field '["access_token"]' >"$dir/token"
export FEDBROKER_ADMIN_TOKEN_FILE="$dir/token"
check "fedbroker tenant --help explains itself" "$bin" tenant --help
cust=$(control POST tenants '{"displayName":"Adatum"}' | json_field '["id"]')
vault_url=$(control POST vaults "{\"tenantId\":\"$cust\",\"name\":\"adatum-kv\"}" | json_field '["url"]')
control POST vaults/adatum-kv/keys '{"name":"cmk"}' >/dev/null
"$bin" tenant register --name Adatum --geo europe --entra-tenant "$cust" --vault-uri "$vault_url" --key cmk --json >"$dir/reg.json"
check "tenant register succeeds" test -s "$dir/reg.json"
tid=$(json_field '["id"]' <"$dir/reg.json"); binding=$(json_field '["binding"]["tag_value"]' <"$dir/reg.json")
"$bin" tenant validate "$tid" >"$dir/v1.out"; v1=$?
check "validate before consent fails (exit 1)" test "$v1" -eq 1
check "it says consent is missing (AADSTS, the customer acts)" grep -q "cause: AADSTS.*who acts: customer" "$dir/v1.out"
curl -sf -o /dev/null --cacert "$FEDBROKER_EMU_CA_BUNDLE" "$(json_field '["customer"]["consent_url"]' <"$dir/reg.json")"
check "the consent URL grants consent" test $? -eq 0
"$bin" tenant validate "$tid" >"$dir/v2.out"; v2=$?
check "validate without the role fails with ForbiddenByRbac" bash -c "[ $v2 -eq 1 ] && grep -q 'cause: ForbiddenByRbac' '$dir/v2.out'"
sp=$(control GET state | python3 -c 'import json,sys; d=json.load(sys.stdin); print(next(s["objectId"] for s in d["servicePrincipals"] if s["tenantId"]==sys.argv[1] and s["appId"]==sys.argv[2]))' "$cust" "$FEDBROKER_APP_CLIENT_ID" 2>/dev/null)
control POST vaults/adatum-kv/role-assignments "{\"principalId\":\"$sp\",\"keyName\":\"cmk\"}" >/dev/null
"$bin" tenant validate "$tid" >"$dir/v3.out"; v3=$?
check "validate without the tag fails with BINDING_TAG_MISSING" bash -c "[ $v3 -eq 1 ] && grep -q 'cause: BINDING_TAG_MISSING' '$dir/v3.out'"
control PATCH vaults/adatum-kv/keys/cmk "{\"tags\":{\"fedbroker-binding\":\"$binding\"}}" >/dev/null
check "validate passes once the customer is done" "$bin" tenant validate "$tid"
check "activate without --yes and no answer aborts (exit 6)" bash -c "'$bin' tenant activate '$tid' </dev/null >/dev/null 2>&1; [ \$? -eq 6 ]"
check "activate --yes says it cannot be undone" grep -q "cannot be undone" <<<"$("$bin" tenant activate "$tid" --yes)"
check "tenant list shows it active" grep -q "$tid.*active" <<<"$("$bin" tenant list --state active)"
check "caller add" "$bin" caller add billing --identity spiffe://isv.example/billing-api --grant "generate_data_key,unwrap:$tid"
check "caller revoke takes unwrap away" bash -c "'$bin' caller revoke billing --operation unwrap | grep -q 'generate_data_key:$tid'"
"$bin" caller add reports --identity spiffe://isv.example/reports-api --grant "unwrap:*" >/dev/null
check "caller revoke --tenant refuses a grant for every tenant (exit 2), which it cannot narrow" bash -c \
  "'$bin' caller revoke reports --operation unwrap --tenant '$tid' 2>&1 >/dev/null | grep -q 'for every tenant'; [ \${PIPESTATUS[0]} -eq 2 ] && '$bin' caller show reports | grep -q 'unwrap:\\*'"
check "the CLI sends no staff token over http:// off loopback (exit 64)" bash -c \
  "FEDBROKER_ADMIN_URL=http://fedbroker.example:8443 '$bin' tenant list 2>&1 | grep -q 'must be https'; [ \${PIPESTATUS[0]} -eq 64 ]"
check "client wrap refuses a plaintext that is not base64 (exit 64)" bash -c \
  "'$bin' client wrap --tenant '$tid' --plaintext-base64 'not base64!' --plaintext --connect 127.0.0.1:1 >/dev/null 2>&1; [ \$? -eq 64 ]"
check "a missing tenant exits 3" bash -c "'$bin' tenant show tnt_nope >/dev/null 2>&1; [ \$? -eq 3 ]"
check "set-key after activation is a conflict (exit 2)" bash -c "'$bin' tenant set-key '$tid' --vault-uri '$vault_url' --key other >/dev/null 2>&1; [ \$? -eq 2 ]"
# An SRE rotates slot fic-1 to a new managed identity with the tenant on it, as
# docs/runbooks/rotate-a-slot.md shows: the tenant moves, fic-1 is retired, its FIC deleted.
check "fedbroker slot --help explains itself" "$bin" slot --help
check "slot list shows the bootstrap slots" grep -q "fic-2 *active" <<<"$("$bin" slot list)"
tenant_slot=$("$bin" tenant show "$tid" --json | json_field '["slot_id"]')
old_principal=$("$bin" slot show "$tenant_slot" --json | json_field '["principal_id"]')
new_mi=$(control POST managed-identities "{\"tenantId\":\"$FEDBROKER_EMU_ISV_TENANT_ID\",\"name\":\"fedbroker-fic-rotated\"}")
new_client=$(json_field '["clientId"]' <<<"$new_mi"); new_principal=$(json_field '["principalId"]' <<<"$new_mi")
"$bin" slot rotate "$tenant_slot" --to-identity "$new_client" --principal-id "$new_principal" >"$dir/rotate.out" 2>"$dir/rotate.err"; rotate_status=$?
cat "$dir/rotate.err" "$dir/rotate.out"
check "slot rotate succeeds (exit 0)" test "$rotate_status" -eq 0
check "the rotated slot is retired" grep -q "$tenant_slot *retired" <<<"$("$bin" slot list)"
check "the tenant is on the new slot" test "$("$bin" tenant show "$tid" --json | json_field '["slot_id"]')" = fic-3
fic_subjects() { control GET state | python3 -c 'import json,sys; d=json.load(sys.stdin); print(" ".join(f["subject"] for a in d["applications"] for f in a.get("federatedIdentityCredentials", [])))'; }
check "the old FIC is gone from Graph" bash -c "! grep -q '$old_principal' <<<'$(fic_subjects)'"
check "the new identity is trusted" grep -q "$new_principal" <<<"$(fic_subjects)"
check "a second rotate of a retired slot is a conflict (exit 2)" bash -c "'$bin' slot rotate '$tenant_slot' --to-identity '$new_client' --principal-id '$new_principal' >/dev/null 2>&1; [ \$? -eq 2 ]"
check "tenant offboard --yes" "$bin" tenant offboard "$tid" --yes
check "audit query shows the staff's actions" grep -q "tenant.offboarded" <<<"$("$bin" audit query --tenant "$tid")"
check "no token is exit 4" bash -c "FEDBROKER_ADMIN_TOKEN_FILE= FEDBROKER_ADMIN_TOKEN=x '$bin' tenant list >/dev/null 2>&1; [ \$? -eq 4 ]"
if [ -n "$sdk_python" ]; then
  # Every kind of answer the admin API gives, validated against the document's schemas.
  if openapi_out=$("$sdk_python" scripts/openapi-check.py "$FEDBROKER_ADMIN_URL" "$dir/token" Sources/AdminAPIModel/openapi.yaml \
      "$FEDBROKER_EMU_C2_TENANT_ID" "$FEDBROKER_EMU_C2_VAULT_URL" "$FEDBROKER_EMU_C2_KEY_NAME" 2>&1); then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
  fi
  printf '%s\n' "$openapi_out"
fi
kill -TERM "$serve_pid"; wait "$serve_pid"; serve_status=$?
check "serve with the admin API stops cleanly (exit 0)" test "$serve_status" -eq 0
unset FEDBROKER_ADMIN_URL FEDBROKER_ADMIN_TOKEN_FILE


kill -TERM "$pid"
wait "$pid"; status=$?
pid=
check "SIGTERM stops it cleanly (exit 0)" test "$status" -eq 0
check "it said it stopped" grep -q "emulator stopped" "$log"

echo "smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
