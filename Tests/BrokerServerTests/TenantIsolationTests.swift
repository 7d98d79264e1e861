import BrokerClient
import BrokerStore
import BrokerWire
import FedBrokerCore
import Foundation
import Testing
import FedBrokerTestSupport

/// Invariant 2 across tenants, in the end-to-end world (EndToEndTests.withWorld: two customers
/// on two slots, `svc-a` granted customer-1 only, `svc-b` customer-2 only): a blob, a status
/// query or a rewrap never crosses from one tenant to another, whatever the blob claims, and a
/// refusal tells the caller nothing about the other tenant.
@Suite struct TenantIsolationTests {
    let world = EndToEndTests()

    func deadline() -> Date { Date().addingTimeInterval(120) }

    /// `blob` re-serialized with its fields changed, as a caller holding it could do.
    static func altered(_ blob: [UInt8], _ change: (inout WrappedKeyEnvelope) -> Void) throws -> [UInt8] {
        var envelope = try WrappedKeyEnvelope(parsing: blob)
        change(&envelope)
        return try envelope.serialized()
    }

    /// What the other tenant's record would give away if a message echoed it.
    static func revealing(_ status: WireStatus?, about tenant: Tenant) -> [String] {
        let message = (status?.message ?? "").lowercased()
        return [tenant.entraTenantID.rawValue, tenant.key.vaultURL].filter { message.contains($0.lowercased()) }
    }

    @Test("A blob of tenant A re-serialized to name tenant B, B's vault or B's key is refused for a caller granted both tenants or only one, before any vault call")
    func aBlobNamingAnotherTenantsVaultOrKeyIsRefused() async throws {
        try await world.withWorld { w in
            try await w.addCaller("svc-ab", tenants: w.tenants)
            let a = try w.client("svc-a", retrying: false)
            let b = try w.client("svc-b", retrying: false)
            let both = try w.client("svc-ab", retrying: false)
            let (plaintextA, blobA, _) = try await a.generateDataKey(tenant: "customer-1", deadline: deadline())
            let (plaintextB, blobB, _) = try await b.generateDataKey(tenant: "customer-2", deadline: deadline())
            let envelopeB = try WrappedKeyEnvelope(parsing: blobB)
            let recordB = try await w.store.tenant(w.tenants[1])

            // Still tenant A's blob, but naming B's vault and key (name and version).
            let bsKey = try Self.altered(blobA) {
                $0.vaultURL = envelopeB.vaultURL
                $0.keyName = envelopeB.keyName
                $0.keyVersion = envelopeB.keyVersion
            }
            // Claiming to be tenant B's, with A's key reference.
            let bsTenant = try Self.altered(blobA) { $0.tenantID = envelopeB.tenantID }
            let vaultCallsBefore = w.counter("keyvault.unwrapkey") + w.counter("keyvault.wrapkey")

            for caller in [a, both] {
                let refused = await world.refusal { _ = try await caller.unwrap(bsKey, deadline: deadline()) }
                #expect(refused?.code == .invalidArgument)
                #expect(refused?.reason == .blobInvalid)
                #expect(Self.revealing(refused, about: recordB) == [])
                let rewrapped = await world.refusal { _ = try await caller.rewrap(bsKey, deadline: deadline()) }
                #expect(rewrapped?.code == .invalidArgument)
                #expect(rewrapped?.reason == .blobInvalid)
            }
            // Granted A only: B is not the caller's to ask about, so authorization answers first.
            let notGranted = await world.refusal { _ = try await a.unwrap(bsTenant, deadline: deadline()) }
            #expect(notGranted?.code == .permissionDenied)
            #expect(notGranted?.reason == .notAuthorized)
            #expect(Self.revealing(notGranted, about: recordB) == [])
            // Granted both: B's record names another key than the blob, so the blob is invalid.
            let granted = await world.refusal { _ = try await both.unwrap(bsTenant, deadline: deadline()) }
            #expect(granted?.code == .invalidArgument)
            #expect(granted?.reason == .blobInvalid)
            #expect(Self.revealing(granted, about: recordB) == [])

            // Every refusal came from the records alone: no vault saw a request, nobody was suspended.
            #expect(w.counter("keyvault.unwrapkey") + w.counter("keyvault.wrapkey") == vaultCallsBefore)
            #expect(try await w.store.tenant(w.tenants[0]).state == .active)
            #expect(try await w.store.tenant(w.tenants[1]).state == .active)
            // And both tenants are served as before, each to its own caller.
            #expect(try await a.unwrap(blobA, deadline: deadline()) == plaintextA)
            #expect(try await b.unwrap(blobB, deadline: deadline()) == plaintextB)
        }
    }

    @Test("A blob of tenant A relabelled as wholly tenant B's (tenant, vault, key, version) opens for no caller, and tenant B stays active")
    func aWhollyRelabelledBlobOpensForNobody() async throws {
        try await world.withWorld { w in
            try await w.addCaller("svc-ab", tenants: w.tenants)
            let a = try w.client("svc-a", retrying: false)
            let b = try w.client("svc-b", retrying: false)
            let both = try w.client("svc-ab", retrying: false)
            let (_, blobA, _) = try await a.generateDataKey(tenant: "customer-1", deadline: deadline())
            let (plaintextB, blobB, _) = try await b.generateDataKey(tenant: "customer-2", deadline: deadline())
            let envelopeB = try WrappedKeyEnvelope(parsing: blobB)
            let relabelled = try Self.altered(blobA) {
                $0.tenantID = envelopeB.tenantID
                $0.vaultURL = envelopeB.vaultURL
                $0.keyName = envelopeB.keyName
                $0.keyVersion = envelopeB.keyVersion
            }

            // B's own caller, and a caller granted both: B's vault cannot open A's envelope key
            // (its unwrapkey answers 400 BadParameter), and the seal binds the original header.
            // Forged several times over, so that a vault refusal counted as the vault failing
            // would open B's circuit.
            var refusals: [WireStatus?] = []
            for caller in [b, both, b, both, b, both] {
                refusals.append(await world.refusal { _ = try await caller.unwrap(relabelled, deadline: deadline()) })
            }
            for refused in refusals {
                #expect(refused?.retryable == false, "\(String(describing: refused))")
                // The vault's 400 (it cannot unwrap what its key did not wrap) is the blob's fault,
                // not the vault's: BLOB_INVALID.
                #expect(refused?.code == .invalidArgument, "\(String(describing: refused))")
                #expect(refused?.reason == .blobInvalid, "\(String(describing: refused))")
            }
            // A blob the caller forged is not the customer withdrawing access, nor B's vault
            // failing: B stays active and its own blobs open at once.
            #expect(try await w.store.tenant(w.tenants[1]).state == .active)
            #expect(try await b.unwrap(blobB, deadline: deadline()) == plaintextB)
        }
    }

    @Test("KeyStatus of a tenant the caller is not granted is PERMISSION_DENIED, answered exactly as for a tenant that does not exist")
    func keyStatusAcrossTenantsRevealsNothing() async throws {
        try await world.withWorld { w in
            let a = try w.client("svc-a", retrying: false)
            let recordB = try await w.store.tenant(w.tenants[1])
            let existing = await world.refusal { _ = try await a.keyStatus(tenant: "customer-2", deadline: deadline()) }
            let missing = await world.refusal { _ = try await a.keyStatus(tenant: "customer-404", deadline: deadline()) }
            let (existingStatus, missingStatus) = (try #require(existing), try #require(missing))
            #expect(existingStatus.code == .permissionDenied)
            #expect(existingStatus.reason == .notAuthorized)
            // Same code, reason, retry advice and wording, once the name asked about is set aside.
            #expect(missingStatus.code == existingStatus.code)
            #expect(missingStatus.reason == existingStatus.reason)
            #expect(missingStatus.retryable == existingStatus.retryable)
            #expect(missingStatus.retryAfterMs == existingStatus.retryAfterMs)
            #expect(
                existingStatus.message.replacingOccurrences(of: "customer-2", with: "T")
                    == missingStatus.message.replacingOccurrences(of: "customer-404", with: "T"))
            #expect(Self.revealing(existingStatus, about: recordB) == [])
            // The caller's own tenant answers.
            #expect(try await a.keyStatus(tenant: "customer-1", deadline: deadline()).keyStatus.state == "active")
        }
    }

    @Test("Rewrap of tenant B's blob by a caller granted only A is refused before any vault call, with no blob returned")
    func rewrapAcrossTenantsIsRefused() async throws {
        try await world.withWorld { w in
            let a = try w.client("svc-a", retrying: false)
            let b = try w.client("svc-b", retrying: false)
            let (plaintextB, blobB, _) = try await b.generateDataKey(tenant: "customer-2", deadline: deadline())
            let vaultCallsBefore = w.counter("keyvault.unwrapkey") + w.counter("keyvault.wrapkey")
            let refused = await world.refusal { _ = try await a.rewrap(blobB, deadline: deadline()) }
            #expect(refused?.code == .permissionDenied)
            #expect(refused?.reason == .notAuthorized)
            #expect(w.counter("keyvault.unwrapkey") + w.counter("keyvault.wrapkey") == vaultCallsBefore)
            // B's own caller rewraps it, and the new blob still opens to the same key, for B only.
            let rewrapped = try await b.rewrap(blobB, deadline: deadline())
            #expect(try await b.unwrap(rewrapped, deadline: deadline()) == plaintextB)
            let stillRefused = await world.refusal { _ = try await a.unwrap(rewrapped, deadline: deadline()) }
            #expect(stillRefused?.reason == .notAuthorized)
        }
    }
}
