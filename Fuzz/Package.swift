// swift-tools-version:6.2
import PackageDescription

// libFuzzer targets for the parsers that read input from outside (docs/fuzzing.md). A package of
// its own: each target is an executable whose only file defines `LLVMFuzzerTestOneInput`, which
// links only with `--sanitize=fuzzer` (libFuzzer supplies `main`), so a plain
// `swift build --build-tests` of the root package must never see them. It links the light
// targets only (FedBrokerCore, BrokerWire, AzureWire): no AsyncHTTPClient, NIOSSL/BoringSSL,
// PostgresNIO or Hummingbird, so the instrumented release build stays short.
//
// Build and run with scripts/fuzz.sh.
let fuzzSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "fedbroker-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "fedbroker", path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
    ],
    targets: [
        // Bytes -> ServerFrameDecoder (preface, then frames) -> ServerConnectionStateMachine.
        .executableTarget(
            name: "FuzzFrames",
            dependencies: [
                .product(name: "BrokerWire", package: "fedbroker"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: fuzzSettings
        ),
        // Bytes -> WrappedKeyEnvelope(parsing:); what parses serializes back to the same bytes.
        .executableTarget(
            name: "FuzzEnvelope",
            dependencies: [.product(name: "FedBrokerCore", package: "fedbroker")],
            swiftSettings: fuzzSettings
        ),
        // Bytes -> WireRequest -> the blob's envelope and the tenant's TenantID, as the service reads them.
        .executableTarget(
            name: "FuzzRequest",
            dependencies: [
                .product(name: "BrokerWire", package: "fedbroker"),
                .product(name: "FedBrokerCore", package: "fedbroker"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: fuzzSettings
        ),
        // First byte picks the parser: Key Vault, Entra or IMDS bodies (AzureWire).
        .executableTarget(
            name: "FuzzAzureResponses",
            dependencies: [
                .product(name: "AzureWire", package: "fedbroker"),
                .product(name: "FedBrokerCore", package: "fedbroker"),
            ],
            swiftSettings: fuzzSettings
        ),
        // Retry-After and the WWW-Authenticate bearer challenge.
        .executableTarget(
            name: "FuzzHeaders",
            dependencies: [
                .product(name: "AzureWire", package: "fedbroker"),
                .product(name: "FedBrokerCore", package: "fedbroker"),
            ],
            swiftSettings: fuzzSettings
        ),
    ]
)
