"""Drives the emulator with Microsoft's own Python SDKs (azure-identity, msal underneath,
azure-keyvault-keys), pointed at it only through documented settings: the IMDS host
(AZURE_POD_IDENTITY_AUTHORITY_HOST), the authority host, the CA bundle, and
verify_challenge_resource=False (the vault host is localhost, not *.vault.azure.net).

Reads the FEDBROKER_EMU_* variables of the emulator's env.sh. Prints one line per check and
"sdk: N passed, N failed"; exits non-zero on any failure.
"""
import os
import sys

env = os.environ
os.environ["AZURE_POD_IDENTITY_AUTHORITY_HOST"] = env["FEDBROKER_EMU_IMDS_URL"]
os.environ["REQUESTS_CA_BUNDLE"] = env["FEDBROKER_EMU_CA_BUNDLE"]
os.environ["SSL_CERT_FILE"] = env["FEDBROKER_EMU_CA_BUNDLE"]

from azure.core.exceptions import HttpResponseError  # noqa: E402
from azure.identity import ClientAssertionCredential, ManagedIdentityCredential  # noqa: E402
from azure.keyvault.keys import KeyClient  # noqa: E402
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm  # noqa: E402

passed = failed = 0


def check(name, fn):
    global passed, failed
    try:
        fn()
        passed += 1
        print(f"sdk: ok     {name}")
    except Exception as exc:  # noqa: BLE001 - report and go on
        failed += 1
        print(f"sdk: FAILED {name}: {type(exc).__name__}: {exc}")


mi_client_id = env["FEDBROKER_EMU_MI_CLIENT_IDS"].split(",")[0]
authority = env["FEDBROKER_EMU_AUTHORITY_URL"]
state = {}


def managed_identity():
    mi = ManagedIdentityCredential(client_id=mi_client_id)
    state["assertion"] = mi.get_token("api://AzureADTokenExchange/.default").token
    assert state["assertion"].count(".") == 2


def exchange():
    mi = ManagedIdentityCredential(client_id=mi_client_id)
    cred = ClientAssertionCredential(
        tenant_id=env["FEDBROKER_EMU_C1_TENANT_ID"],
        client_id=env["FEDBROKER_EMU_APP_CLIENT_ID"],
        func=lambda: mi.get_token("api://AzureADTokenExchange/.default").token,
        authority=authority,
        disable_instance_discovery=True,
    )
    state["credential"] = cred
    assert cred.get_token("https://vault.azure.net/.default").token


def get_key():
    client = KeyClient(env["FEDBROKER_EMU_C1_VAULT_URL"], state["credential"], verify_challenge_resource=False)
    key = client.get_key(env["FEDBROKER_EMU_C1_KEY_NAME"])
    assert key.key_type == "RSA", key.key_type
    assert key.properties.recovery_level == "Recoverable", key.properties.recovery_level
    state["key"] = key


def wrap_unwrap():
    crypto = CryptographyClient(state["key"], state["credential"], verify_challenge_resource=False)
    dek = os.urandom(32)
    wrapped = crypto.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, dek)
    # Unwrap through a remote-only client (by kid), as a broker does.
    remote = CryptographyClient(state["key"].id, state["credential"], verify_challenge_resource=False)
    assert remote.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key).key == dek


def forbidden_is_typed():
    client = KeyClient(env["FEDBROKER_EMU_C1_VAULT_URL"], state["credential"], verify_challenge_resource=False)
    try:
        client.get_key(env["FEDBROKER_EMU_C1_UNGRANTED_KEY_NAME"])
    except HttpResponseError as exc:
        assert exc.status_code == 403, exc.status_code
        assert exc.error.code == "Forbidden", exc.error.code
        return
    raise AssertionError("expected a 403")


check("ManagedIdentityCredential gets an AzureADTokenExchange token from IMDS", managed_identity)
check("ClientAssertionCredential exchanges it in the customer tenant", exchange)
check("KeyClient.get_key after the 401 challenge", get_key)
check("CryptographyClient wrap_key / unwrap_key round trip", wrap_unwrap)
check("HttpResponseError 403 Forbidden on the ungranted key", forbidden_is_typed)
print(f"sdk: {passed} passed, {failed} failed")
sys.exit(0 if failed == 0 else 1)
