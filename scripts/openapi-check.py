#!/usr/bin/env python3
"""Holds the running admin API to its OpenAPI document: calls each kind of operation over HTTP
and validates every answer (status, content type, body) against the schema the document gives
for that status (or its `default`), with JSON Schema 2020-12, the dialect of OpenAPI 3.1.

usage: openapi-check.py ADMIN_URL TOKEN_FILE OPENAPI_YAML CUSTOMER_TENANT_ID VAULT_URL KEY_NAME
Prints one line per check and "openapi: N passed, N failed"; exits 1 if any failed.
"""
import json
import sys
import urllib.error
import urllib.request

import jsonschema
import yaml

admin, token_file, document_path, customer, vault, key = sys.argv[1:7]
token = open(token_file).read().strip()
document = yaml.safe_load(open(document_path))
passed = failed = 0


def operation(method, template):
    return document["paths"][template][method.lower()]


def schema_for(op, status, content_type):
    responses = op["responses"]
    response = responses.get(str(status)) or responses.get("default")
    if response is None:
        return None, f"status {status} is not documented"
    if "$ref" in response:
        name = response["$ref"].split("/")[-1]
        response = document["components"]["responses"][name]
    content = response.get("content")
    if content is None:
        return {"type": "null"} if content_type is None else None, None
    base = (content_type or "").split(";")[0].strip()
    if base not in content:
        return None, f"content type {content_type!r} is not documented for {status} (documented: {list(content)})"
    return content[base]["schema"], None


def call(method, template, path=None, body=None, headers=None, expect=None):
    global passed, failed
    url = admin + (path or template)
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request) as response:
            status, content_type, raw, etag = response.status, response.headers.get("Content-Type"), response.read(), response.headers.get("ETag")
    except urllib.error.HTTPError as error:
        status, content_type, raw, etag = error.code, error.headers.get("Content-Type"), error.read(), error.headers.get("ETag")
    name = f"{method} {path or template} -> {status}"
    problems = []
    if expect is not None and status != expect:
        problems.append(f"expected {expect}")
    schema, why = schema_for(operation(method, template), status, content_type if raw else None)
    if why:
        problems.append(why)
    parsed = None
    if raw:
        try:
            parsed = json.loads(raw)
        except ValueError:
            problems.append("the body is not JSON")
    if schema is not None and parsed is not None:
        root = {"$ref": schema["$ref"], "components": document["components"]} if "$ref" in schema else dict(schema, components=document["components"])
        errors = sorted(jsonschema.Draft202012Validator(root).iter_errors(parsed), key=lambda e: list(e.path))
        problems += [f"{'/'.join(map(str, e.path)) or 'body'}: {e.message[:200]}" for e in errors[:3]]
    if problems:
        failed += 1
        print(f"openapi: FAILED: {name}: {'; '.join(problems)}", file=sys.stderr)
    else:
        passed += 1
    return parsed, etag


registration = {"display_name": "Schema check", "geo": "europe",
                "provider_config": {"type": "azure", "tenant_id": customer, "vault_uri": vault, "key_name": key}}
call("GET", "/livez", expect=200)
call("GET", "/readyz", expect=200)
tenant, etag = call("POST", "/v1/tenants", body=registration, headers={"Idempotency-Key": "openapi-check"}, expect=201)
tid = (tenant or {}).get("id", "tnt_missing")
call("POST", "/v1/tenants", body=registration, headers={"Idempotency-Key": "openapi-check"}, expect=201)
call("POST", "/v1/tenants", body=registration, expect=409)
call("POST", "/v1/tenants", body=dict(registration, color="blue"), expect=400)
call("POST", "/v1/tenants", body=dict(registration, geo="atlantis"), expect=422)
call("GET", "/v1/tenants", path="/v1/tenants?limit=1", expect=200)
_, etag = call("GET", "/v1/tenants/{tenant_id}", path=f"/v1/tenants/{tid}", expect=200)
call("GET", "/v1/tenants/{tenant_id}", path="/v1/tenants/tnt_absent", expect=404)
_, etag = call("POST", "/v1/tenants/{tenant_id}/validate", path=f"/v1/tenants/{tid}/validate", expect=200)
call("POST", "/v1/tenants/{tenant_id}/activate", path=f"/v1/tenants/{tid}/activate", expect=428)
call("POST", "/v1/tenants/{tenant_id}/activate", path=f"/v1/tenants/{tid}/activate", headers={"If-Match": etag or ""}, expect=409)
call("PUT", "/v1/tenants/{tenant_id}/key", path=f"/v1/tenants/{tid}/key", body={"vault_uri": vault, "key_name": key}, headers={"If-Match": '"v1"'}, expect=412)
_, etag = call("POST", "/v1/tenants/{tenant_id}/suspend", path=f"/v1/tenants/{tid}/suspend", body={"reason": "schema check"}, headers={"If-Match": etag or ""}, expect=200)
_, etag = call("POST", "/v1/tenants/{tenant_id}/restore", path=f"/v1/tenants/{tid}/restore", headers={"If-Match": etag or ""}, expect=200)
_, etag = call("GET", "/v1/tenants/{tenant_id}", path=f"/v1/tenants/{tid}", expect=200)
call("DELETE", "/v1/tenants/{tenant_id}", path=f"/v1/tenants/{tid}", headers={"If-Match": etag or ""}, expect=200)
caller, etag = call("POST", "/v1/callers", body={"id": "schema-check", "identity": "spiffe://isv.example/schema-check", "grants": [{"operations": ["unwrap"], "tenants": ["*"]}]}, expect=201)
call("GET", "/v1/callers", expect=200)
_, etag = call("PATCH", "/v1/callers/{caller_id}", path="/v1/callers/schema-check", body={"enabled": False}, headers={"If-Match": etag or ""}, expect=200)
call("DELETE", "/v1/callers/{caller_id}", path="/v1/callers/schema-check", headers={"If-Match": etag or ""}, expect=204)
call("GET", "/v1/audit", path=f"/v1/audit?tenant={tid}&limit=2", expect=200)
print(f"openapi: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
