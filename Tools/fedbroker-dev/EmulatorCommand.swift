import ArgumentParser
import AzureEmulator
import FedBrokerCore
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

/// `fedbroker-dev emulator`: IMDS, Entra, Graph and Key Vault on loopback, seeded with the default
/// scenario, until SIGINT/SIGTERM.
struct EmulatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "emulator",
        abstract: "Run the Azure emulator (IMDS, Entra token endpoint, Graph FICs, Key Vault) on loopback.",
        discussion: """
            Generates a CA and server certificate into the state directory, seeds the default scenario on \
            first start (an ISV tenant with a multi-tenant app trusting two managed identities; two consented \
            customer tenants with purge-protected vaults and RSA-3072 keys), persists every change there, and \
            writes DIR/env.sh with FEDBROKER_EMU_* exports. Source it from another shell:

              . DIR/env.sh && curl -s -H Metadata:true "$FEDBROKER_EMU_IMDS_URL/metadata/identity/oauth2/token?api-version=2018-02-01&resource=api://AzureADTokenExchange&client_id=${FEDBROKER_EMU_MI_CLIENT_IDS%%,*}"

            The control API (see docs/emulator.md) scripts tenants, keys, roles and faults.
            """
    )

    @Option(name: .long, help: "Directory for the CA, persisted state and env.sh (created if missing).")
    var stateDir: String

    @Option(name: .long, help: "Address to listen on: 127.0.0.1 or localhost (loopback only).")
    var host: String = "127.0.0.1"

    @Option(name: .long, help: "IMDS port (plain HTTP). 0 picks a free port.")
    var imdsPort: Int = 0

    @Option(name: .long, help: "Entra (login) port (HTTPS). 0 picks a free port.")
    var authorityPort: Int = 0

    @Option(name: .long, help: "Microsoft Graph port (HTTPS). 0 picks a free port.")
    var graphPort: Int = 0

    @Option(name: .long, help: "Control API port (plain HTTP). 0 picks a free port.")
    var controlPort: Int = 0

    @Option(name: .long, help: "Seconds before a FIC created or deleted through Graph affects token exchange.")
    var ficPropagationSeconds: Double = 0

    @Flag(name: .long, inversion: .prefixedNo, help: "Seed the default scenario when the state directory is empty.")
    var seed: Bool = true

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func validate() throws {
        guard ["127.0.0.1", "localhost"].contains(host) else {
            throw ValidationError("--host must be a loopback address (127.0.0.1 or localhost): the emulator is for tests.")
        }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level '\(logLevel)' is not a log level.") }
        for (name, port) in [("imds", imdsPort), ("authority", authorityPort), ("graph", graphPort), ("control", controlPort)]
        where !(0...65535).contains(port) {
            throw ValidationError("--\(name)-port must be 0...65535.")
        }
    }

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = Logger.Level(rawValue: logLevel) ?? .info
            return handler
        }
        let logger = Logger(label: "fedbroker.emulator")
        var configuration = AzureEmulator.Configuration()
        configuration.host = host
        configuration.imdsPort = imdsPort
        configuration.authorityPort = authorityPort
        configuration.graphPort = graphPort
        configuration.controlPort = controlPort
        configuration.stateDirectory = URL(fileURLWithPath: stateDir, isDirectory: true).standardizedFileURL
        configuration.seedDefaultScenario = seed
        configuration.settings.ficPropagationSeconds = ficPropagationSeconds

        let emulator = try await AzureEmulator(configuration: configuration, logger: logger)
        let group = ServiceGroup(
            configuration: .init(services: [emulator], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        async let running: Void = group.run()
        let endpoints = try await emulator.waitUntilReady()
        let envPath = configuration.stateDirectory!.appendingPathComponent("env.sh").path
        var lines = [
            "fedbroker emulator ready",
            "  IMDS       \(endpoints.imds)",
            "  Entra      \(endpoints.authority)",
            "  Graph      \(endpoints.graph)",
            "  Control    \(endpoints.control)",
        ]
        for (name, url) in endpoints.vaults.sorted(by: { $0.key < $1.key }) { lines.append("  Key Vault  \(url)  (\(name))") }
        lines.append("  CA bundle  \(emulator.pki.caCertificatePEM.isEmpty ? "-" : configuration.stateDirectory!.appendingPathComponent("ca.pem").path)")
        lines.append("Source \(envPath) in another shell; Ctrl-C stops the emulator.")
        // Written straight to the descriptor so a supervisor reading a pipe sees it at once.
        FileHandle.standardOutput.write(Data((lines.joined(separator: "\n") + "\n").utf8))
        try await running
        logger.info("emulator stopped")
    }
}
