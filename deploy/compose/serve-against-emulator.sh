#!/bin/sh
# broker-emu's entrypoint (compose profile "emulator"): the production broker, configured by
# serve.json and pointed at the Azure emulator, whose network namespace it shares (the
# emulator listens on loopback only, and its Entra and vaults are https://localhost:PORT).
#
# The emulator's env.sh (in its state directory) exports the Azure endpoints, its CA bundle,
# the application and FEDBROKER_VAULT_HOST_SUFFIXES=localhost under the variable names serve
# reads (README, "Configuration"); the scenario's ids come as FEDBROKER_EMU_*. From those this
# adds the ISV tenant (staff sign-in and FIC issuer) and the scenario's two managed identities
# as the bootstrap FIC slots (docs/slots.md, "The first slot"), then execs serve.
set -eu
state=${EMU_STATE_DIR:-/emu}
[ -r "$state/env.sh" ] || { echo "serve-against-emulator: $state/env.sh is missing: is the emulator up?" >&2; exit 1; }
. "$state/env.sh"

clients=$FEDBROKER_EMU_MI_CLIENT_IDS
principals=$FEDBROKER_EMU_MI_PRINCIPAL_IDS
pairs=
while [ -n "$clients" ]; do
  pairs="${pairs:+$pairs,}${clients%%,*}:${principals%%,*}"
  case $clients in
    *,*) clients=${clients#*,}; principals=${principals#*,} ;;
    *) clients= ;;
  esac
done

export FEDBROKER_SLOTS_BOOTSTRAP="$pairs"
export FEDBROKER_ADMIN_STAFF_TENANT_ID="$FEDBROKER_EMU_ISV_TENANT_ID"
export FEDBROKER_AZURE_ISV_TENANT_ID="$FEDBROKER_EMU_ISV_TENANT_ID"
exec fedbroker serve --config "${SERVE_CONFIG:-/etc/fedbroker/serve.json}"
