// swift-tools-version:6.2
import PackageDescription

// One settings list for every target, so the whole package compiles under the same rules.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

// Generated code (OpenAPI) compiles under the generator's own assumptions.
let generatedSwiftSettings: [SwiftSetting] = []

// Tests import what they use without re-declaring every transitive module.
let testSwiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "fedbroker",
    platforms: [.macOS(.v15)],
    products: [
        // What production runs: serve, migrate, the staff and SRE CLI, probe. No emulator in it.
        .executable(name: "fedbroker", targets: ["fedbroker"]),
        // For developers only, never shipped: the emulator, the demo, the benchmark.
        .executable(name: "fedbroker-dev", targets: ["fedbroker-dev"]),
        .library(name: "FedBrokerCore", targets: ["FedBrokerCore"]),
        // Azure's answers parsed within bounds, with no HTTP stack: what Fuzz/ links.
        .library(name: "AzureWire", targets: ["AzureWire"]),
        .library(name: "AzureEmulator", targets: ["AzureEmulator"]),
        .library(name: "AzureHTTP", targets: ["AzureHTTP"]),
        .library(name: "AzureIdentity", targets: ["AzureIdentity"]),
        .library(name: "KeyVault", targets: ["KeyVault"]),
        .library(name: "GraphClient", targets: ["GraphClient"]),
        .library(name: "SlotOperations", targets: ["SlotOperations"]),
        .library(name: "BrokerStore", targets: ["BrokerStore"]),
        .library(name: "BrokerWire", targets: ["BrokerWire"]),
        // What internal services link to call the broker.
        .library(name: "BrokerClient", targets: ["BrokerClient"]),
        // The admin API's generated client, for tools that onboard tenants from code.
        .library(name: "AdminClient", targets: ["AdminClient"]),
        .library(name: "BrokerApp", targets: ["BrokerApp"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.8.0"),
        .package(url: "https://github.com/swift-extras/swift-extras-base64.git", from: "1.2.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        // Metrics: libraries record through swift-metrics; only BrokerApp knows the Prometheus backend.
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/vapor/sqlite-nio.git", from: "1.13.2"),
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0", traits: ["JSON"]),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-openapi-runtime.git", from: "1.13.4"),
        .package(url: "https://github.com/hummingbird-project/swift-openapi-hummingbird.git", from: "2.1.0"),
        .package(url: "https://github.com/swift-server/swift-openapi-async-http-client.git", from: "1.5.0"),
        // Tests read the OpenAPI document to hold the server to it.
        .package(url: "https://github.com/jpsim/Yams.git", from: "5.0.1"),
    ],
    targets: [
        // Domain types and pure logic. No NIO, no HTTP, no SQL: CI greps for it.
        .target(
            name: "FedBrokerCore",
            dependencies: [.product(name: "ExtrasBase64", package: "swift-extras-base64")],
            swiftSettings: swiftSettings
        ),
        // Azure's answers (Key Vault, Entra, IMDS bodies, the bearer challenge) parsed within bounds:
        // bytes in, a typed value or a structured error out. No HTTP stack, so fuzzers link it cheaply.
        .target(
            name: "AzureWire",
            dependencies: ["FedBrokerCore"],
            swiftSettings: swiftSettings
        ),
        // The HTTP plumbing the Azure clients share: requests under a deadline, retries, environment, transport failures.
        .target(
            name: "AzureHTTP",
            dependencies: [
                "FedBrokerCore",
                "AzureWire",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: swiftSettings
        ),
        // Managed-identity assertions, the client-assertion exchange, the token cache, AADSTS errors.
        .target(
            name: "AzureIdentity",
            dependencies: [
                "FedBrokerCore",
                "AzureHTTP",
                "AzureWire",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: swiftSettings
        ),
        // The Key Vault keys data-plane client. Tokens come from the caller (AzureIdentity: ChainProbe only).
        .target(
            name: "KeyVault",
            dependencies: [
                "FedBrokerCore",
                "AzureHTTP",
                "AzureIdentity",
                "AzureWire",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: swiftSettings
        ),
        // The application's federated identity credentials through Microsoft Graph. Tokens come from the caller.
        .target(
            name: "GraphClient",
            dependencies: [
                "FedBrokerCore",
                "AzureHTTP",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // SRE jobs on FIC slots (add, drain, retire, rotate): submitted as store rows, run under a
        // lease by one replica at a time, each step committed before the next.
        .target(
            name: "SlotOperations",
            dependencies: [
                "FedBrokerCore",
                "BrokerStore",
                "AzureHTTP",
                "AzureIdentity",
                "GraphClient",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // The framed protocol: frames, preface, messages (protobuf, generated code committed), statuses.
        .target(
            name: "BrokerWire",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            exclude: ["Generated/README.md"],
            swiftSettings: swiftSettings
        ),
        // The broker's service logic and (next) its NIO server: envelope crypto, the data-key cache.
        .target(
            name: "BrokerServer",
            dependencies: [
                "FedBrokerCore",
                "BrokerWire",
                "BrokerStore",
                "AzureHTTP",
                "AzureIdentity",
                "KeyVault",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: swiftSettings
        ),
        // The client library internal services link (next: the NIO connection pool around this state machine).
        .target(
            name: "BrokerClient",
            dependencies: [
                "BrokerWire",
                "FedBrokerCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: swiftSettings
        ),
        // The stand-in for IMDS, Entra, Graph and Key Vault. Never imported by production targets:
        // it lives under Tools/ (development only) beside fedbroker-dev, not under Sources/.
        .target(
            name: "AzureEmulator",
            dependencies: [
                "FedBrokerCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Tools/AzureEmulator",
            swiftSettings: swiftSettings
        ),
        // Tenants, FIC slots, callers and the audit trail, behind one protocol. PostgreSQL for
        // production replicas, SQLite for one node. The SQL's source of truth is sql/; it is compiled
        // in as generated string constants (scripts/generate-migrations.sh), so the single binary
        // migrates any database it is pointed at with no resource bundle to ship beside it.
        .target(
            name: "BrokerStore",
            dependencies: [
                "FedBrokerCore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                // ConnectionPoolError, so pool failures are matched by type, not by name.
                .product(name: "_ConnectionPoolModule", package: "postgres-nio"),
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: swiftSettings
        ),
        // The admin API's types, generated from openapi.yaml (scripts/generate-openapi.sh; committed).
        .target(
            name: "AdminAPIModel",
            dependencies: [.product(name: "OpenAPIRuntime", package: "swift-openapi-runtime")],
            exclude: ["openapi.yaml"],
            swiftSettings: generatedSwiftSettings
        ),
        // The admin API: onboarding, callers and audit over HTTPS, staff authenticated by Entra ID.
        .target(
            name: "AdminAPI",
            dependencies: [
                "AdminAPIModel",
                "SlotOperations",
                "FedBrokerCore",
                "BrokerStore",
                "AzureHTTP",
                "AzureIdentity",
                "KeyVault",
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                .product(name: "OpenAPIHummingbird", package: "swift-openapi-hummingbird"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: generatedSwiftSettings
        ),
        // The admin API's generated client over AsyncHTTPClient: what the staff CLI speaks.
        .target(
            name: "AdminClient",
            dependencies: [
                "AdminAPIModel",
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                .product(name: "OpenAPIAsyncHTTPClient", package: "swift-openapi-async-http-client"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            swiftSettings: generatedSwiftSettings
        ),
        // prctl for ProcessHardening (variadic in C, so not callable from Swift).
        .target(name: "CFedBrokerSystem"),
        // The one assembly: store, audit, Azure clients, service, framed transport, admin listener
        // and change-feed follower as Services of one ServiceGroup. serve, bench and tests call it.
        .target(
            name: "BrokerApp",
            dependencies: [
                "CFedBrokerSystem",
                "FedBrokerCore",
                "SlotOperations",
                "GraphClient",
                "BrokerStore",
                "BrokerServer",
                "AdminAPI",
                "AzureHTTP",
                "AzureIdentity",
                "KeyVault",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "fedbroker",
            dependencies: [
                "FedBrokerCore",
                "AzureHTTP",
                "AzureIdentity",
                "KeyVault",
                "BrokerServer",
                "BrokerClient",
                "BrokerWire",
                "BrokerApp",
                "AdminClient",
                "AdminAPIModel",
                "AdminAPI",
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                .product(name: "OpenAPIAsyncHTTPClient", package: "swift-openapi-async-http-client"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                "BrokerStore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: swiftSettings
        ),
        // The developer executable: the Azure emulator (a token issuer that signs whatever it is
        // told to), the demo and the benchmarks. It depends on `fedbroker` so that building it
        // builds the production binary too: the demo runs that binary as a child process, exactly as
        // deployed, and links none of its code.
        .executableTarget(
            name: "fedbroker-dev",
            dependencies: [
                "fedbroker",
                "FedBrokerCore",
                "AzureEmulator",
                "AzureHTTP",
                "AzureIdentity",
                "KeyVault",
                "BrokerServer",
                "BrokerClient",
                "BrokerWire",
                "BrokerApp",
                "BrokerStore",
                "FedBrokerTestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            path: "Tools/fedbroker-dev",
            swiftSettings: swiftSettings
        ),
        // What the tests and the developer executable (emulator, demo, bench) share: the
        // manual clock, the test PKI, the running emulator with the broker's environment.
        .target(
            name: "FedBrokerTestSupport",
            dependencies: [
                "FedBrokerCore",
                "AzureEmulator",
                "AzureHTTP",
                "AzureIdentity",
                "BrokerStore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/TestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "AdminAPITests",
            dependencies: [
                "FedBrokerTestSupport",
                "BrokerWire",
                "AdminAPI",
                "AdminAPIModel",
                "AdminClient",
                "AzureEmulator",
                "AzureHTTP",
                "AzureIdentity",
                "BrokerApp",
                "BrokerClient",
                "BrokerServer",
                "BrokerStore",
                "FedBrokerCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                .product(name: "OpenAPIAsyncHTTPClient", package: "swift-openapi-async-http-client"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: testSwiftSettings
        ),
        .testTarget(
            name: "FedBrokerCoreTests",
            dependencies: [
                "FedBrokerTestSupport","FedBrokerCore", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: testSwiftSettings
        ),
        .testTarget(
            name: "BrokerServerTests",
            dependencies: [
                "FedBrokerTestSupport",
                "BrokerApp",
                "BrokerServer",
                "BrokerClient",
                "BrokerStore",
                "AzureEmulator",
                "AzureHTTP",
                "AzureIdentity",
                "BrokerWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                "FedBrokerCore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
            ],
            swiftSettings: testSwiftSettings
        ),
        .testTarget(
            name: "BrokerClientTests",
            dependencies: [
                "BrokerClient",
                "BrokerWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: testSwiftSettings
        ),
        .testTarget(
            name: "BrokerWireTests",
            dependencies: [
                "BrokerWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: testSwiftSettings
        ),
        .testTarget(
            name: "AzureClientTests",
            dependencies: [
                "FedBrokerTestSupport",
                "AzureHTTP",
                "AzureWire",
                "AzureIdentity",
                "KeyVault",
                "GraphClient",
                "AzureEmulator",
                "FedBrokerCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "JWTKit", package: "jwt-kit"),
            ],
            swiftSettings: testSwiftSettings
        ),
        .testTarget(
            name: "BrokerStoreTests",
            dependencies: [
                "FedBrokerTestSupport",
                "BrokerStore",
                "FedBrokerCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            swiftSettings: testSwiftSettings
        ),
        .testTarget(
            name: "AzureEmulatorTests",
            dependencies: [
                "FedBrokerTestSupport",
                "AzureEmulator",
                "FedBrokerCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: testSwiftSettings
        ),
    ]
)
