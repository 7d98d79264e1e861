import AdminAPIModel
import AdminClient
import AzureEmulator
import BrokerApp
import BrokerClient
import BrokerStore
import FedBrokerCore
import Foundation
import Synchronization
import Testing

/// What the slot tests need on top of `AdminWorld`: customers the application is trusted in,
/// tenants active on the slots, new managed identities, and a job followed to its end.
extension AdminWorld {
    /// A slot-job-running broker: fast moves, a short retire wait, a short lease.
    static func withSlotJobs(
        propagationSeconds: Double = 60, runJobs: Bool = true, _ body: (AdminWorld) async throws -> Void
    ) async throws {
        try await with(configure: { configuration, scenario in
            configuration.slots.isvTenantID = scenario.isvTenantID
            configuration.slots.runJobs = runJobs
            configuration.slots.movesPerSecond = 200
            configuration.slots.maximumTokenLifetimeSeconds = 1
            configuration.slots.leaseSeconds = 6
            configuration.slots.propagationSeconds = propagationSeconds
        }, body)
    }

    /// `count` active tenants, spread evenly over the active slots (see `activateTenants`).
    func activeTenants(_ count: Int, prefix: String = "cust") async throws -> [TenantID] {
        try await activateTenants(count, prefix: prefix, in: app.store, emulator: emulator, appID: scenario.appClientID)
    }

    /// A new user-assigned managed identity of the ISV, attached to this "VM" (IMDS serves it),
    /// trusted by nobody yet.
    func newIdentity(_ name: String) throws -> Directory.ManagedIdentity {
        try emulator.state.createManagedIdentity(tenantID: scenario.isvTenantID, name: name)
    }

    /// The application's listed FICs in the emulated Graph.
    func credentials() -> [Directory.FederatedCredential] {
        emulator.state.read { dir in
            dir.applicationKey(for: scenario.appClientID).map { dir.applications[$0]!.federatedCredentials.filter(FederatedCredentialMatcher.isListed) } ?? []
        }
    }

    /// Follows a job through the API until it ends (or fails the test after `seconds`).
    func finished(_ job: Components.Schemas.SlotJob, as client: Client, seconds: Double = 120) async throws -> Components.Schemas.SlotJob {
        let until = Date().addingTimeInterval(seconds)
        var current = job
        while current.state == .running {
            guard Date() < until else {
                Issue.record("job \(current.id) still at \(current.step) after \(seconds) s: \(current.message)")
                return current
            }
            try await Task.sleep(for: .milliseconds(100))
            current = try await client.getSlotJob(path: .init(jobId: job.id)).ok.body.json
        }
        return current
    }
}

/// Counts what a load generator saw.
final class LoadTally: Sendable {
    private struct State {
        var succeeded = 0
        var failures: [String] = []
    }
    private let state = Mutex(State())
    private let stopped = Mutex(false)

    func success() { state.withLock { $0.succeeded += 1 } }
    func failure(_ what: String) { state.withLock { if $0.failures.count < 20 { $0.failures.append(what) } else { $0.failures[19] = "…and more" } } }
    var succeeded: Int { state.withLock { $0.succeeded } }
    var failures: [String] { state.withLock { $0.failures } }
    func stop() { stopped.withLock { $0 = true } }
    var isStopped: Bool { stopped.withLock { $0 } }

    /// A bounded load until `stop()`: `workers` loops, each GenerateDataKey then Unwrap (the
    /// key must come back the same), round robin over `tenants`.
    func generate(on broker: FedBrokerClient, tenants: [TenantID], workers: Int) -> Task<Void, Never> {
        Task {
            await withTaskGroup(of: Void.self) { group in
                for worker in 0..<workers {
                    group.addTask {
                        var index = worker
                        while !self.isStopped {
                            let tenant = tenants[index % tenants.count].rawValue
                            index += workers
                            do {
                                let deadline = Date().addingTimeInterval(30)
                                let generated = try await broker.generateDataKey(tenant: tenant, deadline: deadline)
                                let plaintext = try await broker.unwrap(generated.blob, deadline: deadline)
                                if plaintext == generated.plaintext { self.success() } else { self.failure("\(tenant): a different key came back") }
                            } catch {
                                self.failure("\(tenant): \(error)")
                            }
                        }
                    }
                }
            }
        }
    }
}

extension AzureEmulator {
    /// A customer tenant that consented to the application and granted its service principal
    /// the crypto role on an RSA-3072 key.
    func trustedCustomer(_ name: String, appID: String) async throws -> (entraTenantID: String, vaultName: String, vaultURL: String) {
        let tenant = try state.createTenant(displayName: name)
        let principal = try state.createServicePrincipal(tenantID: tenant.id, appID: appID)
        let vaultName = "\(name.lowercased())-kv"
        let url = try await state.createVault(tenantID: tenant.id, name: vaultName, purgeProtection: true)
        _ = try state.createKey(vault: vaultName, name: "cmk")
        try state.assignRole(vault: vaultName, principalID: principal.objectId, keyName: "cmk")
        return (tenant.id, vaultName, url)
    }
}

/// `count` active tenants named `prefix-N`, each with its own trusted customer directory and
/// vault, placed by the store on the least-loaded active slot (so spread evenly over the slots).
func activateTenants(
    _ count: Int, prefix: String, in store: any BrokerStore, emulator: AzureEmulator, appID: String
) async throws -> [TenantID] {
    var ids: [TenantID] = []
    for index in 0..<count {
        let customer = try await emulator.trustedCustomer("\(prefix)\(index)", appID: appID)
        let id = try TenantID(validating: "\(prefix)-\(index)")
        let registered = try await store.registerTenant(
            try TenantRegistration(
                id: id, entraTenantID: try EntraTenantID(validating: customer.entraTenantID), displayName: "\(prefix) \(index)",
                geo: "europe", key: try KeyReference(vaultURL: customer.vaultURL, keyName: "cmk")),
            actor: "test")
        let validated = try await store.transitionTenant(id, expectedVersion: registered.version, event: .validationSucceeded, actor: "test")
        _ = try await store.transitionTenant(id, expectedVersion: validated.version, event: .activate, actor: "test")
        ids.append(id)
    }
    return ids
}
