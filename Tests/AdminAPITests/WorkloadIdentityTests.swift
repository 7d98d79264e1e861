import AzureIdentity
import BrokerApp
import BrokerClient
import BrokerStore
import BrokerWire
import FedBrokerCore
import Foundation
import Testing

/// AKS workload identity: a slot whose assertions come from a federated token file instead of
/// IMDS. The file is read when an assertion is needed, so a token written (or rotated) by the
/// kubelet is picked up without a restart.
@Suite struct WorkloadIdentityTests {
    @Test func aSlotReadsItsAssertionsFromItsTokenFile() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("fedbroker-token-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: file) }
        var fileIdentity = ""
        try await AdminWorld.with(configure: { configuration, scenario in
            fileIdentity = scenario.managedIdentities[0].clientId
            configuration.slots.tokenFiles = [fileIdentity: file.path]
        }) { world in
            let tenants = try await world.activeTenants(2, prefix: "wi")
            let store = world.app.store
            var onFileSlot: TenantID?
            for tenant in tenants where try await store.tenant(tenant).slotID?.rawValue == "fic-1" { onFileSlot = tenant }
            let tenant = try #require(onFileSlot)
            _ = try await store.createCaller(
                Caller(id: "wi", identity: "wi", grants: [CallerGrant(operations: Set(KeyOperation.allCases), tenants: .all)]), actor: "test")
            let broker = try world.broker("wi")

            // No file yet: the slot has no assertion, and IMDS is not asked instead.
            do {
                _ = try await broker.generateDataKey(tenant: tenant.rawValue, deadline: Date().addingTimeInterval(30))
                Issue.record("a key was made without an assertion")
            } catch BrokerCallError.status(let status) {
                #expect(status.reason == .identityUnavailable, "\(status)")
                #expect(status.message.contains("federated token file"), "\(status.message)")
            }

            // The kubelet writes the projected token (here: the identity's own token from the
            // emulated platform), and the next call uses it.
            let imds = IMDSAssertionSource(clientID: fileIdentity, endpoint: world.endpoints.imds, httpClient: world.http)
            let token = try await imds.assertion(deadline: Date().addingTimeInterval(30))
            try token.token.write(to: file, atomically: true, encoding: .utf8)
            let generated = try await broker.generateDataKey(tenant: tenant.rawValue, deadline: Date().addingTimeInterval(30))
            let unwrapped = try await broker.unwrap(generated.blob, deadline: Date().addingTimeInterval(30))
            #expect(unwrapped == generated.plaintext)
            #expect(world.app.service.assertionSources.usesTokenFile(fileIdentity))
            #expect(!world.app.service.assertionSources.usesTokenFile(world.scenario.managedIdentities[1].clientId))
            await broker.close()
        }
    }
}
