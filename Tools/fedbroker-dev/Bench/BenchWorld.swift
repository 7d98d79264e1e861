import AsyncHTTPClient
import AzureEmulator
import AzureHTTP
import AzureIdentity
import BrokerApp
import BrokerClient
import BrokerServer
import BrokerStore
import BrokerWire
import FedBrokerCore
import Foundation
import Logging
import NIOSSL
import SwiftProtobuf
import FedBrokerTestSupport

/// What the in-process benchmarks stand on: the emulator, a SQLite store with the default
/// scenario's two customers on two slots, the broker over mTLS, and beside it an echo server
/// with the same transport and TLS that answers every request with a canned Unwrap response
/// (the baseline: frames, TLS and the client library, no broker logic).
struct BenchWorld {
    let emulator: AzureEmulator
    let scenario: DefaultScenario
    let environment: AzureEnvironment
    let http: HTTPClient
    let store: SQLBrokerStore
    let audit: AuditWriter
    /// The broker's audit journal (nil when records commit to the store before each answer).
    let journal: AuditJournal?
    let service: BrokerService
    let broker: BrokerTransportServer
    let echo: BrokerTransportServer
    let pki: LocalPKI
    let directory: URL

    static let callerName = "bench"

    func client(port: Int, connections: Int) throws -> FedBrokerClient {
        var configuration = FedBrokerClient.Configuration(host: "127.0.0.1", port: port, tls: try pki.clientTLS(commonName: Self.callerName), serverHostname: "localhost")
        configuration.connections = connections
        return FedBrokerClient(configuration: configuration)
    }

    /// Waits until the journal has shipped every record to the store, so the shipping behind one
    /// measured window does not run in the next one (the echo's, or the other store's broker).
    /// Polls: this is the bench, not a test, and the journal has no "shipped" signal to await.
    ///
    /// - Returns: the seconds waited.
    func shipped(timeoutSeconds: Double = 60) async throws -> Double {
        guard let journal else { return 0 }
        let start = DispatchTime.now().uptimeNanoseconds
        while await journal.health.backlog > 0 {
            guard secondsSince(start) < timeoutSeconds else {
                throw BenchError("the audit journal still held \(await journal.health.backlog) unshipped records after \(timeoutSeconds) s")
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        return secondsSince(start)
    }

    /// - Parameter storeDirectory: where the SQLite store (and so the audit trail every operation
    ///   commits before it answers) lives; its disk's fsync latency is part of every figure.
    static func withWorld<T: Sendable>(
        logger: Logger, storeDirectory: String, journal: AuditJournal.Sync? = .everyBatch, databaseURL: String? = nil, _ body: (BenchWorld) async throws -> T) async throws -> T {
        RSAKeyMaterial.reuse(true)
        var emulatorConfiguration = AzureEmulator.Configuration()
        emulatorConfiguration.seedDefaultScenario = true
        return try await AzureEmulator.withRunning(configuration: emulatorConfiguration, logger: logger) { emulator, endpoints in
            guard let scenario = emulator.defaultScenario else { throw BenchError("the emulator seeded no scenario") }
            // Latency is measured here, not throttling: the customers' vaults get a budget the
            // benchmark cannot spend, so no call waits on a 429 (the broker's own pacing of
            // 800 per 10 s per vault stays, and the default sample counts stay under it).
            for customer in scenario.customers {
                try emulator.state.setVaultBudget(vault: customer.vaultName, budget: 1_000_000, windowSeconds: 10)
            }
            let directory = URL(fileURLWithPath: storeDirectory).appendingPathComponent("fedbroker-bench-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let caPath = directory.appendingPathComponent("emulator-ca.pem").path
            try emulator.pki.caCertificatePEM.write(toFile: caPath, atomically: true, encoding: .utf8)

            var environment = AzureEnvironment(
                imdsURL: endpoints.imds, authorityURL: endpoints.authority, applicationClientID: scenario.appClientID, caBundlePath: caPath,
                vaultHostSuffixes: ["localhost"])
            environment.graphURL = endpoints.graph
            // The cached part serves one blob hundreds of thousands of times: with the default
            // use bound some "cached" samples would be vault calls.
            var serviceConfiguration = BrokerService.Configuration(environment: environment)
            serviceConfiguration.cache.maximumUses = Int.max
            let pki = try LocalPKI()
            // The broker exactly as `serve` assembles it; the echo baseline is a bare listener.
            // PostgreSQL: a database of the run's own on the named server, dropped afterwards.
            var scratch: String?
            if let databaseURL { scratch = try await PostgresScratchDatabase.create(on: databaseURL, prefix: "bench") }
            let storeConfiguration = try scratch.map { try StoreConfiguration(databaseURL: $0) } ?? .sqlite(path: directory.appendingPathComponent("broker.db").path)
            var configuration = BrokerAppConfiguration(store: storeConfiguration, service: serviceConfiguration)
            configuration.transport.tls = try pki.serverTLS()
            // As `serve` runs by default: audit records durable in the local journal, shipped to
            // the store behind; without it every key operation waits for the store's commit.
            if let journal {
                configuration.auditJournal = .init(directory: directory.appendingPathComponent("audit-journal").path)
                configuration.auditJournal?.sync = journal
            }
            let app: BrokerApp
            do {
                app = try await BrokerApp.build(configuration, signals: [], logger: logger)
            } catch {
                if let scratch, let databaseURL { try? await PostgresScratchDatabase.drop(scratch, on: databaseURL) }
                throw error
            }
            let store = app.store
            let http = try environment.makeHTTPClient()  // the bench's own direct Key Vault calls
            let result: Result<T, any Error>
            do {
                result = .success(
                    try await app.serving {
                        try await seed(store, scenario: scenario, extraTenants: 0, slotCount: scenario.managedIdentities.count, progress: nil)
                        _ = try await store.createCaller(
                            Caller(id: callerName, identity: LocalPKI.callerIdentity(callerName), grants: [CallerGrant(operations: Set(KeyOperation.allCases), tenants: .all)]),
                            actor: "bench")
                        var transport = BrokerTransportServer.Configuration()
                        transport.tls = configuration.transport.tls
                        let echo = try await BrokerTransportServer.bind(configuration: transport, service: CannedUnwrapHandler(), logger: logger)
                        let world = BenchWorld(
                            emulator: emulator, scenario: scenario, environment: environment, http: http, store: store, audit: app.audit,
                            journal: app.journal, service: app.service, broker: app.transport, echo: echo, pki: pki, directory: directory)
                        let outcome: Result<T, any Error>
                        do { outcome = .success(try await body(world)) } catch { outcome = .failure(error) }
                        try? await echo.close()
                        return try outcome.get()
                    })
            } catch {
                result = .failure(error)
            }
            try? await http.shutdown()
            if let scratch, let databaseURL { try? await PostgresScratchDatabase.drop(scratch, on: databaseURL) }
            return try result.get()
        }
    }

    /// Slots for the scenario's managed identities (and made-up ones up to `slotCount`), the
    /// scenario's customers as active tenants `customer-N`, and `extraTenants` more active
    /// tenants spread over the slots (their vaults are never called).
    static func seed(
        _ store: SQLBrokerStore, scenario: DefaultScenario, extraTenants: Int, slotCount: Int, progress: ((Int) -> Void)?
    ) async throws {
        var slots: [FICSlotID] = []
        for index in 0..<slotCount {
            let mi = index < scenario.managedIdentities.count ? scenario.managedIdentities[index] : nil
            let clientID = mi?.clientId ?? UUID().uuidString.lowercased()
            let principalID = mi?.principalId ?? UUID().uuidString.lowercased()
            let identity = try FICSlotIdentity(
                applicationID: scenario.appClientID, managedIdentityClientID: clientID, managedIdentityPrincipalID: principalID,
                issuer: "https://login.microsoftonline.com/\(scenario.isvTenantID)/v2.0", subject: principalID)
            let slot = try await store.createSlot(FICSlotID(rawValue: "fic-\(index + 1)")!, identity: identity, actor: "bench")
            _ = try await store.transitionSlot(slot.id, expectedVersion: slot.version, event: .activate, actor: "bench")
            slots.append(slot.id)
        }
        var registrations: [TenantRegistration] = []
        for (index, customer) in scenario.customers.enumerated() {
            registrations.append(try TenantRegistration(
                id: TenantID(rawValue: "customer-\(index + 1)")!, entraTenantID: EntraTenantID(validating: customer.tenantID),
                displayName: "Customer \(index + 1)", geo: "europe", key: KeyReference(vaultURL: customer.vaultURL, keyName: customer.keyName)))
        }
        for index in 0..<extraTenants {
            registrations.append(try TenantRegistration(
                id: TenantID(rawValue: "tenant-\(index + 1)")!, entraTenantID: EntraTenantID(validating: UUID().uuidString.lowercased()),
                displayName: "Tenant \(index + 1)", geo: "europe",
                key: KeyReference(vaultURL: "https://tenant-\(index + 1).vault.azure.net", keyName: "cmk")))
        }
        for (index, registration) in registrations.enumerated() {
            var tenant = try await store.registerTenant(registration, actor: "bench")
            tenant = try await store.transitionTenant(tenant.id, expectedVersion: tenant.version, event: .validationSucceeded, actor: "bench")
            tenant = try await store.transitionTenant(tenant.id, expectedVersion: tenant.version, event: .activate, actor: "bench")
            // The scenario's customers trust the scenario's identities: customer-N on fic-N.
            if index < scenario.customers.count, tenant.slotID != slots[index] {
                _ = try await store.assignTenant(tenant.id, expectedVersion: tenant.version, to: slots[index], actor: "bench")
            }
            if (index + 1) % 500 == 0 { progress?(index + 1) }
        }
    }
}

/// The baseline server's handler: the same response an Unwrap gets, with no work behind it.
struct CannedUnwrapHandler: BrokerRequestHandler {
    let response: WireResponse = .with {
        $0.status = .ok
        $0.unwrap = .with {
            $0.plaintext = Data(repeating: 7, count: 32)
            $0.keyID = "https://localhost:1/keys/cmk/00000000000000000000000000000000"
        }
    }
    func handle(_ request: WireRequest, caller: CallerIdentity, deadline: Date) async -> WireResponse { response }
}
