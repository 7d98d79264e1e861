#!/usr/bin/env bash
# Regenerates Sources/BrokerWire/Generated/*.pb.swift from Protos/. The generated code is
# committed: CI and users never need protoc. Needs Debian's protobuf-compiler (apt-get install
# protobuf-compiler) and builds protoc-gen-swift from the resolved swift-protobuf checkout in a
# scratch path of its own (about a minute, once).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v protoc >/dev/null || { echo "generate-protos.sh: install protoc (apt-get install protobuf-compiler)" >&2; exit 2; }
swift package resolve >/dev/null
plugin_dir=.build-protoc-gen-swift
swift build -c release --product protoc-gen-swift --package-path .build/checkouts/swift-protobuf --scratch-path "$plugin_dir" >/dev/null
protoc --plugin=protoc-gen-swift="$plugin_dir/release/protoc-gen-swift" \
  --swift_out=Sources/BrokerWire/Generated --swift_opt=Visibility=Public --swift_opt=FileNaming=PathToUnderscores \
  -I Protos Protos/fedbroker/v1/broker.proto
echo "generated: $(ls Sources/BrokerWire/Generated/*.pb.swift)"
