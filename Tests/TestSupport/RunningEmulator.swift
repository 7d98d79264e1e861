import AzureEmulator
import AzureHTTP
import AzureIdentity
import BrokerStore
import FedBrokerCore
import Foundation
import Logging

/// The emulator with its default scenario, on loopback, and what a broker needs to talk to it:
/// a scratch directory, the emulator's CA written to a file, and the matching `AzureEnvironment`.
/// The broker-level fixtures (end-to-end, admin API, bench) start from here, so the wiring is
/// written once.
public struct RunningEmulator: Sendable {
    public let emulator: AzureEmulator
    public let endpoints: EmulatorState.Endpoints
    /// Removed when `with` returns.
    public let directory: URL
    public let caBundlePath: String
    public var scenario: DefaultScenario { emulator.defaultScenario! }

    /// What the broker reads: the emulator's endpoints, the scenario's application, its CA, and
    /// `localhost` as the only vault host (every emulated vault is https://localhost:PORT).
    public var environment: AzureEnvironment {
        var environment = AzureEnvironment(
            imdsURL: endpoints.imds, authorityURL: endpoints.authority, applicationClientID: scenario.appClientID,
            caBundlePath: caBundlePath, vaultHostSuffixes: ["localhost"])
        environment.graphURL = endpoints.graph
        return environment
    }

    public static func with<T: Sendable>(
        logger: Logger, clock: any WallClock = SystemWallClock(), _ body: (RunningEmulator) async throws -> T
    ) async throws -> T {
        RSAKeyMaterial.reuse(true)
        var configuration = AzureEmulator.Configuration()
        configuration.seedDefaultScenario = true
        configuration.secretObserver = TestLogging.secretObserver
        return try await AzureEmulator.withRunning(configuration: configuration, clock: clock, logger: logger) { emulator, endpoints in
            guard emulator.defaultScenario != nil else { throw FixtureError("the emulator seeded no scenario") }
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fedbroker-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let caPath = directory.appendingPathComponent("emulator-ca.pem").path
            try emulator.pki.caCertificatePEM.write(toFile: caPath, atomically: true, encoding: .utf8)
            return try await body(RunningEmulator(emulator: emulator, endpoints: endpoints, directory: directory, caBundlePath: caPath))
        }
    }

    /// One active FIC slot per scenario identity, `fic-1`, `fic-2`, …, in the scenario's order.
    @discardableResult
    public func activateSlots(in store: any BrokerStore) async throws -> [FICSlotID] {
        var slots: [FICSlotID] = []
        for (index, mi) in scenario.managedIdentities.enumerated() {
            let identity = try FICSlotIdentity(
                applicationID: scenario.appClientID, managedIdentityClientID: mi.clientId, managedIdentityPrincipalID: mi.principalId,
                issuer: "https://login.microsoftonline.com/\(scenario.isvTenantID)/v2.0", subject: mi.principalId)
            let slot = try await store.createSlot(try FICSlotID(validating: "fic-\(index + 1)"), identity: identity, actor: "sre")
            _ = try await store.transitionSlot(slot.id, expectedVersion: slot.version, event: .activate, actor: "sre")
            slots.append(slot.id)
        }
        return slots
    }
}

public struct FixtureError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
