#!/usr/bin/env python3
"""Writes the committed seed corpus under Fuzz/Corpus/<Target>/ (docs/fuzzing.md).

Small, meaningful inputs each target starts from: valid protocol streams, a valid wrapped-key
blob, and real-looking Azure bodies and headers from the shared Azure wire notes. Re-run after a
format change: `python3 Fuzz/make-seeds.py`. Deterministic: the same bytes every time.
"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Corpus")


def write(target, name, data):
    os.makedirs(os.path.join(ROOT, target), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(ROOT, target, name), "wb") as f:
        f.write(data)


# --- protobuf, by hand (fedbroker.v1, Protos/fedbroker/v1/broker.proto) ---------------------
def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(number, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def uint_field(number, value):
    return varint(number << 3) + varint(value)


# --- wrapped-key envelope v1 (Sources/FedBrokerCore/Envelope/WrappedKeyEnvelope.swift) -------
def prefixed(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack(">H", len(b)) + b


def envelope(flags=0, tenant="contoso", sealed_len=48):
    out = b"FBK" + bytes([1, 1, flags])
    out += prefixed(tenant) + prefixed("https://contoso-keys.vault.azure.net")
    out += prefixed("tenant-kek") + prefixed("d4e54a830a2f4e9c94495913ec4c4308")
    out += prefixed(bytes((i * 7 + 3) % 256 for i in range(384)))  # RSA-3072 wrap: 384 bytes
    out += bytes(range(12))  # nonce
    out += prefixed(bytes((i * 13 + 1) % 256 for i in range(sealed_len)))  # sealed data key
    out += bytes(range(100, 116))  # tag
    return out


BLOB = envelope()
write("FuzzEnvelope", "v1-plain", BLOB)
write("FuzzEnvelope", "v1-context-bound", envelope(flags=1, tenant="fabrikam.eu-1"))
write("FuzzEnvelope", "truncated", BLOB[:40])

# --- requests ---------------------------------------------------------------------------------
requests = {
    "generate-data-key": uint_field(1, 5000) + field(10, field(1, "contoso") + field(2, b"orders/42")),
    "wrap": field(11, field(1, "contoso") + field(2, bytes(range(32)))),
    "unwrap": uint_field(1, 2000) + field(12, field(1, BLOB) + field(2, b"")),
    "rewrap": field(13, field(1, envelope(flags=1)) + field(2, b"ctx")),
    "key-status": field(14, field(1, "fabrikam")),
    "health": field(15, b""),
    "unknown-tenant-with-newline": field(14, field(1, "evil\ninjected line")),
}
for name, payload in requests.items():
    write("FuzzRequest", name, payload)

# --- frames (Sources/BrokerWire/Frame.swift) --------------------------------------------------
PREFACE = b"FBRK" + struct.pack(">H", 1)


def frame(kind, stream, payload=b"", flags=0):
    return struct.pack(">IBBI", len(payload), kind, flags, stream) + payload


REQUEST, RESPONSE, CANCEL, PING, GOAWAY, SETTINGS = 1, 2, 3, 4, 5, 6


def frames_input(read_size, control, drain_after, stream):
    return bytes([read_size, control, drain_after]) + stream


health = requests["health"]
write("FuzzFrames", "preface-ping-requests-cancel",
      frames_input(63, 0, 0, PREFACE + frame(PING, 0, bytes(8)) + frame(REQUEST, 1, health)
                   + frame(REQUEST, 3, requests["unwrap"]) + frame(CANCEL, 3)))
write("FuzzFrames", "drip-fed-over-the-stream-limit",
      frames_input(0, 0, 0, PREFACE + b"".join(frame(REQUEST, 2 * i + 1, requests["key-status"]) for i in range(5))))
write("FuzzFrames", "answered-at-once",
      frames_input(7, 1, 0, PREFACE + b"".join(frame(REQUEST, 2 * i + 1, requests["wrap"]) for i in range(5))))
write("FuzzFrames", "expired-at-once", frames_input(15, 2, 0, PREFACE + frame(REQUEST, 1, health) + frame(REQUEST, 3, health)))
write("FuzzFrames", "drain-after-one",
      frames_input(31, 8, 1, PREFACE + frame(REQUEST, 1, health) + frame(REQUEST, 3, health) + frame(CANCEL, 1) + frame(PING, 0, bytes(8), flags=1)))
write("FuzzFrames", "connection-refused", frames_input(63, 4, 0, PREFACE + frame(REQUEST, 1, health)))
write("FuzzFrames", "partial-frame-then-timer", frames_input(63, 16, 0, PREFACE + frame(REQUEST, 1, health)[:7]))
write("FuzzFrames", "bad-preface-http", frames_input(63, 0, 0, b"GET / HTTP/1.1\r\nHost: broker\r\n\r\n"))
write("FuzzFrames", "other-version", frames_input(63, 0, 0, b"FBRK\x00\x02"))
write("FuzzFrames", "oversized-frame", frames_input(63, 0, 0, PREFACE + struct.pack(">IBBI", 1 << 30, REQUEST, 0, 1)))
write("FuzzFrames", "client-sends-settings", frames_input(63, 0, 0, PREFACE + frame(SETTINGS, 0, b"") + frame(GOAWAY, 0, b"")))
write("FuzzFrames", "request-with-garbage-payload", frames_input(63, 0, 0, PREFACE + frame(REQUEST, 1, b"\xff\xff\xff")))

# --- Azure bodies (first byte: 0 key, 1 key operation, 2 vault error, 3 Entra token,
#     4 Entra error, 5 IMDS token, 6 IMDS error) ---------------------------------------------
N = ("2HJAE5fU3Cw2Rt9hEuq-F6XjINKGa-zskfISVqopqUy60GOs2eyhxbWbJBeUXNor_gf-tXtNeuqeBgitLeVa640UDvnEjYTKWjCniTxZRaU7ewY8BfTSk-"
     "7KxoDdLsPSpX_MX4rwlAx-_1UGk5t4sQgTbm9T6Fm2oqFd37dsz5-Gj27UP2GTAShfJPFD7MqU_zIgOI0pfqsbNL5xTQVM29K6rX4jSPtylZV3uWJtkoQIQnr"
     "IHhk1d0SC0KwlBV3V7R_LVYjiXLyIXsFzSNYgQ68ZjAwt8iL7I8Osa-ehQLM13DVvLASaf7Jnu3sC3CWl3Gyirgded6cfMmswJzY87w")
azure = {
    "vault-key": (0, '{"key":{"kid":"https://myvault.vault.azure.net/keys/CreateSoftKeyTest/78deebed173b48e48f55abf87ed4cf71",'
                     '"kty":"RSA","key_ops":["encrypt","decrypt","sign","verify","wrapKey","unwrapKey"],"n":"' + N + '","e":"AQAB"},'
                     '"attributes":{"enabled":true,"nbf":1493942400,"exp":1893456000,"created":1493942451,"updated":1493942451,'
                     '"recoveryLevel":"CustomizedRecoverable+Purgeable","recoverableDays":7,"exportable":false},'
                     '"tags":{"purpose":"unit test","test name ":"CreateGetDeleteKeyTest"}}'),
    "vault-wrap-result": (1, '{"kid":"https://heathskeyvault.vault.azure.net/keys/321046799/d4e54a830a2f4e9c94495913ec4c4308",'
                             '"value":"R-AyksTYLspsBLk33787h294JvT5rHiiKLGAQBdG3WY"}'),
    "vault-forbidden-by-rbac": (2, '{"error":{"code":"Forbidden","message":"Caller is not authorized to perform action on resource.\\r\\n'
                                   'Action: \'Microsoft.KeyVault/vaults/keys/unwrap/action\'\\r\\nDecisionReason: \'DeniedWithNoValidRBAC\' \\r\\n",'
                                   '"innererror":{"code":"ForbiddenByRbac"}}}'),
    "vault-unauthorized-akv": (2, '{"error":{"code":"Unauthorized","message":"AKV10032: Invalid issuer. Expected one of '
                                  'https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/, found https://sts.windows.net/x/."}}'),
    "vault-throttled": (2, '{"error":{"code":"Throttled","message":"Request was not processed because too many requests were received. '
                           'Reason: VaultRequestTypeLimitReached"}}'),
    "entra-token": (3, '{"token_type":"Bearer","expires_in":86399,"ext_expires_in":86399,"access_token":"eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.e30.c2ln"}'),
    "entra-error": (4, '{"error":"invalid_request","error_description":"AADSTS70021: No matching federated identity record found for '
                       'presented assertion. Trace ID: 255d1aef-8c98-452f-ac51-23d051240864 Correlation ID: '
                       'fb3d2015-bc17-4bb9-bb85-30c5cf1aaaa7 Timestamp: 2016-01-09 02:02:12Z","error_codes":[70021],'
                       '"timestamp":"2016-01-09 02:02:12Z","trace_id":"255d1aef-8c98-452f-ac51-23d051240864",'
                       '"correlation_id":"fb3d2015-bc17-4bb9-bb85-30c5cf1aaaa7"}'),
    "imds-token": (5, '{"access_token":"eyJ0eXAi.e30.c2ln","client_id":"be5947ed-3560-4afe-9504-59967a63f810","expires_in":"3599",'
                      '"expires_on":"1750003599","ext_expires_in":"262800","not_before":"1749999999","resource":"api://AzureADTokenExchange",'
                      '"token_type":"Bearer"}'),
    "imds-error": (6, '{"error":"invalid_request","error_description":"Identity not found"}'),
    "imds-html-error": (6, "<html><body>502 Bad Gateway</body></html>"),
}
for name, (selector, body) in azure.items():
    write("FuzzAzureResponses", name, bytes([selector]) + body.encode())

# --- headers -----------------------------------------------------------------------------------
headers = {
    "retry-after-seconds": "7",
    "retry-after-date": "Tue, 14 Jul 2026 03:33:20 GMT",
    "retry-after-huge": "10000000",
    "challenge-key-vault": 'Bearer authorization="https://login.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47", resource="https://vault.azure.net"',
    "challenge-managed-hsm": 'Bearer authorization_uri="https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47", '
                             'scope="https://managedhsm.azure.net/.default"',
}
for name, value in headers.items():
    write("FuzzHeaders", name, value)
