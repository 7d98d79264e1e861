import AzureEmulator
import AzureIdentity
import BrokerApp
import BrokerClient
import BrokerStore
import BrokerWire
import FedBrokerCore
import FedBrokerTestSupport
import Foundation
import Testing

/// AKS workload identity: a slot's managed identity has no IMDS. The pod's projected
/// service-account token (a file the kubelet rotates) is trusted by the identity through a FIC
/// of the identity's own, and exchanged in the ISV tenant for the identity's token, which the
/// slot's FIC on the application trusts — the same token IMDS would have given.
@Suite struct WorkloadIdentityTests {
    static let serviceAccount = ServiceAccountIssuer.subject(namespace: "fedbroker", serviceAccount: "broker")

    /// The broker with a token file for the first slot's identity, an AKS cluster's issuer the
    /// emulated Entra trusts, and the identity's FIC trusting the cluster's `fedbroker/broker`.
    static func withTokenFile(
        _ body: (AdminWorld, _ cluster: ServiceAccountIssuer, _ identity: String, _ file: URL) async throws -> Void
    ) async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("fedbroker-token-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: file) }
        var identity = ""
        try await AdminWorld.with(configure: { configuration, scenario in
            identity = scenario.managedIdentities[0].clientId
            configuration.slots.tokenFiles = [identity: file.path]
            configuration.slots.isvTenantID = scenario.isvTenantID
            configuration.slots.runJobs = false
        }) { world in
            let cluster = try ServiceAccountIssuer()
            try cluster.register(with: world.emulator.state)
            try world.emulator.state.addManagedIdentityFederatedCredential(
                clientID: identity, name: "aks-fedbroker", issuer: cluster.issuer, subject: serviceAccount)
            try await body(world, cluster, identity, file)
        }
    }

    @Test("a slot's tenant is served through the service-account token, and IMDS is never asked")
    func aSlotWorksThroughItsTokenFile() async throws {
        try await Self.withTokenFile { world, cluster, identity, file in
            let tenants = try await world.activeTenants(2, prefix: "wi")
            let store = world.app.store
            var onFileSlot: TenantID?
            for tenant in tenants where try await store.tenant(tenant).slotID?.rawValue == "fic-1" { onFileSlot = tenant }
            let tenant = try #require(onFileSlot)
            _ = try await store.createCaller(
                Caller(id: "wi", identity: LocalPKI.callerIdentity("wi"), grants: [CallerGrant(operations: Set(KeyOperation.allCases), tenants: .all)]), actor: "test")
            let broker = try world.broker("wi")
            let counters = { world.emulator.state.counters.snapshot }

            // No file yet: a refusal that names the file; IMDS is not asked instead.
            do {
                _ = try await broker.generateDataKey(tenant: tenant.rawValue, deadline: Date().addingTimeInterval(30))
                Issue.record("a key was made without a service-account token")
            } catch BrokerCallError.status(let status) {
                #expect(status.reason == .identityUnavailable, "\(status)")
                #expect(status.message.contains("federated token file"), "\(status.message)")
            }

            // The kubelet writes the projected token; the next call goes through both hops.
            try cluster.token(subject: Self.serviceAccount, issuedAt: Date()).write(to: file, atomically: true, encoding: .utf8)
            let generated = try await broker.generateDataKey(tenant: tenant.rawValue, deadline: Date().addingTimeInterval(30))
            let unwrapped = try await broker.unwrap(generated.blob, deadline: Date().addingTimeInterval(30))
            #expect(unwrapped == generated.plaintext)
            #expect(counters()["entra.token.mi.\(identity)", default: 0] >= 1)  // hop 1: the identity's own exchange
            #expect(counters()["imds.token.\(identity)", default: 0] == 0)
            #expect(world.app.service.assertionSources.usesTokenFile(identity))
            #expect(!world.app.service.assertionSources.usesTokenFile(world.scenario.managedIdentities[1].clientId))
            await broker.close()
        }
    }

    @Test("a token for a service account the identity does not trust is refused; an expired one never leaves the pod")
    func untrustedAndExpiredTokensAreRefused() async throws {
        try await Self.withTokenFile { world, cluster, identity, file in
            // The catalog's own source, so no cached assertion stands in front of the file.
            let source = world.app.service.assertionSources.source(forClientID: identity)
            #expect(source is WorkloadIdentityAssertionSource)
            #expect(source.identity == "wi:\(identity)")
            let counters = { world.emulator.state.counters.snapshot }

            try cluster.token(subject: Self.serviceAccount, issuedAt: Date()).write(to: file, atomically: true, encoding: .utf8)
            let assertion = try await source.assertion(deadline: Date().addingTimeInterval(30))
            let principal = world.scenario.managedIdentities[0].principalId
            #expect(Self.claims(of: assertion.token)?["sub"] as? String == principal)

            // Another service account of the same cluster: no FIC on the identity matches it.
            let other = ServiceAccountIssuer.subject(namespace: "default", serviceAccount: "broker")
            try cluster.token(subject: other, issuedAt: Date()).write(to: file, atomically: true, encoding: .utf8)
            let refusal = await #expect(throws: AzureIdentityError.self) {
                _ = try await source.assertion(deadline: Date().addingTimeInterval(30))
            }
            guard case .isvTenant(let aad)? = refusal else {
                Issue.record("expected the ISV tenant's Entra refusal, got \(String(describing: refusal))")
                return
            }
            #expect(aad.code == 70021)
            #expect(aad.kind == .noMatchingFederatedCredential)

            // Expired and never rotated: a clear token-file error, and nothing is sent to Entra.
            try cluster.token(subject: Self.serviceAccount, issuedAt: Date().addingTimeInterval(-7200), lifetime: 3600)
                .write(to: file, atomically: true, encoding: .utf8)
            let exchangesBefore = counters()["entra.token.mi.\(identity)", default: 0]
            let expired = await #expect(throws: AzureIdentityError.self) {
                _ = try await source.assertion(deadline: Date().addingTimeInterval(30))
            }
            guard case .tokenFile(let path, let detail)? = expired else {
                Issue.record("expected a token-file error, got \(String(describing: expired))")
                return
            }
            #expect(path == file.path)
            #expect(detail.contains("expired"), "\(detail)")
            #expect(counters()["entra.token.mi.\(identity)", default: 0] == exchangesBefore)
            #expect(counters()["imds.token.\(identity)", default: 0] == 0)
        }
    }

    @Test("a token file without the ISV tenant fails the build, naming azure.isvTenantID")
    func aTokenFileNeedsTheISVTenant() async throws {
        let error = await #expect(throws: BrokerError.self) {
            try await AdminWorld.with(configure: { configuration, scenario in
                configuration.slots.tokenFiles = [scenario.managedIdentities[0].clientId: "/var/run/secrets/azure/tokens/azure-identity-token"]
                configuration.slots.isvTenantID = nil
            }) { _ in Issue.record("the broker was built") }
        }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message.contains("azure.isvTenantID") == true, "\(String(describing: error))")
    }

    /// A JWT's claims, unverified (the test only reads what the emulator issued).
    static func claims(of token: String) -> [String: Any]? {
        let parts = token.split(separator: ".")
        guard parts.count == 3, let bytes = Base64URL.decode(String(parts[1])) else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any]
    }
}
