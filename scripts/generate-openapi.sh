#!/usr/bin/env bash
# Regenerates the admin API's Swift code from its OpenAPI document, the source of truth:
#   Sources/AdminAPIModel/openapi.yaml  ->  Sources/AdminAPIModel/Generated/Types.swift
#                                           Sources/AdminAPI/Generated/Server.swift
#                                           Sources/AdminClient/Generated/Client.swift
# The generated code is committed, so neither CI nor a normal build ever compiles the generator
# (its build takes minutes on 2 cores). Run this after editing openapi.yaml and commit the result.
#
# The generator is built once, from the swift-openapi-generator release the package's runtime
# matches, in a scratch folder outside the package (FEDBROKER_OPENAPI_GENERATOR=path skips that).
set -euo pipefail
cd "$(dirname "$0")/.."
version=1.14.3
work=${TMPDIR:-/tmp}/fedbroker-openapi-generator-$version
gen=${FEDBROKER_OPENAPI_GENERATOR:-}
if [ -z "$gen" ]; then
  if [ ! -d "$work/src" ]; then
    git clone -q --branch "$version" https://github.com/apple/swift-openapi-generator "$work/src"
  fi
  (cd "$work/src" && swift build --product swift-openapi-generator --scratch-path "$work/.build" >&2)
  gen=$work/.build/debug/swift-openapi-generator
fi
doc=Sources/AdminAPIModel/openapi.yaml
run() { # mode config output
  local config
  config=$(mktemp --suffix=.yaml)
  printf 'generate:\n  - %s\n%s\n' "$1" "$2" > "$config"
  rm -rf "$3"; mkdir -p "$3"
  "$gen" generate --config "$config" --output-directory "$3" "$doc" >/dev/null
  rm -f "$config"
}
run types  $'accessModifier: public\nnamingStrategy: idiomatic' Sources/AdminAPIModel/Generated
run server $'accessModifier: public\nnamingStrategy: idiomatic\nadditionalImports:\n  - AdminAPIModel' Sources/AdminAPI/Generated
run client $'accessModifier: public\nnamingStrategy: idiomatic\nadditionalImports:\n  - AdminAPIModel' Sources/AdminClient/Generated
echo "generated from $doc:"; ls Sources/AdminAPIModel/Generated Sources/AdminAPI/Generated Sources/AdminClient/Generated
