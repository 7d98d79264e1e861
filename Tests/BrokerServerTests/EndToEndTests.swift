import AsyncHTTPClient
import AzureEmulator
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
import Testing
import FedBrokerTestSupport

/// Emulator + store + broker + client, over real sockets: HTTP(S) to the emulator, mTLS between
/// client and broker, SQLite for the store. Two customer tenants on two FIC slots.
@Suite struct EndToEndTests {
    struct World {
        let emulator: AzureEmulator
        let store: SQLBrokerStore
        let audit: AuditWriter
        let server: BrokerTransportServer
        let service: BrokerService
        let pki: LocalPKI
        let tenants: [TenantID]

        /// `retrying: false` shows the broker's own answer: no client-side retry hides it. The
        /// client records the keys and blobs it sees in the secret ledger (TestLogging).
        func client(_ name: String, retrying: Bool = true) throws -> LedgeredClient {
            var configuration = FedBrokerClient.Configuration(host: "127.0.0.1", port: server.port, tls: try pki.clientTLS(commonName: name), serverHostname: "localhost")
            if !retrying { configuration.backoff = Backoff(initial: 0.05, maximum: 0.05, maxRetries: 0) }
            return LedgeredClient(FedBrokerClient(configuration: configuration))
        }
        /// Another caller, identified like svc-a and svc-b, with every key operation on `tenants`.
        func addCaller(_ name: String, tenants: [TenantID]) async throws {
            _ = try await store.createCaller(Caller(id: name, identity: LocalPKI.callerIdentity(name), grants: [CallerGrant(operations: Set(KeyOperation.allCases), tenants: .only(Set(tenants)))]), actor: "sre")
        }
        func counter(_ name: String) -> Int { emulator.state.counters.snapshot[name] ?? 0 }
    }

    /// `store`: nil for SQLite in a temporary directory.
    func withWorld(
        store storeConfiguration: StoreConfiguration? = nil,
        configure: (inout BrokerService.Configuration) -> Void = { _ in }, _ body: (World) async throws -> Void
    ) async throws {
        let logger = TestLogging.logger(label: "e2e")
        try await RunningEmulator.with(logger: logger) { running in
            let (emulator, scenario, dir) = (running.emulator, running.scenario, running.directory)
            var serviceConfiguration = BrokerService.Configuration(environment: running.environment)
            // Attempt timeouts guard production against hung servers; a loaded 2-core test run can
            // take longer than 10 s to answer, and a retried attempt would count twice below.
            serviceConfiguration.azureAttemptTimeout = 120
            configure(&serviceConfiguration)
            let pki = try LocalPKI()
            var configuration = BrokerAppConfiguration(
                store: storeConfiguration ?? .sqlite(path: dir.appendingPathComponent("broker.db").path), service: serviceConfiguration)
            configuration.transport.tls = try pki.serverTLS()
            let app = try await BrokerApp.build(configuration, signals: [], logger: logger)
            let store = app.store

            // The store: two active slots (the scenario's identities), two active tenants, two callers.
            try await app.serving {
                try await running.activateSlots(in: store)
                var tenants: [TenantID] = []
                for (index, customer) in scenario.customers.enumerated() {
                    let registration = try TenantRegistration(
                        id: TenantID(rawValue: "customer-\(index + 1)")!, entraTenantID: EntraTenantID(validating: customer.tenantID),
                        displayName: "Customer \(index + 1)", geo: "europe", key: KeyReference(vaultURL: customer.vaultURL, keyName: customer.keyName))
                    var tenant = try await store.registerTenant(registration, actor: "onboarding")
                    tenant = try await store.transitionTenant(tenant.id, expectedVersion: tenant.version, event: .validationSucceeded, actor: "onboarding")
                    tenant = try await store.transitionTenant(tenant.id, expectedVersion: tenant.version, event: .activate, actor: "onboarding")
                    tenants.append(tenant.id)
                }
                _ = try await store.createCaller(Caller(id: "svc-a", identity: LocalPKI.callerIdentity("svc-a"), grants: [CallerGrant(operations: Set(KeyOperation.allCases), tenants: .only([tenants[0]]))]), actor: "sre")
                _ = try await store.createCaller(Caller(id: "svc-b", identity: LocalPKI.callerIdentity("svc-b"), grants: [CallerGrant(operations: Set(KeyOperation.allCases), tenants: .only([tenants[1]]))]), actor: "sre")
                let world = World(
                    emulator: emulator, store: store, audit: app.audit, server: app.transport, service: app.service, pki: pki,
                    tenants: tenants)
                try await body(world)
            }
        }
    }

    func deadline() -> Date { Date().addingTimeInterval(120) }

    @Test func dataKeysForTwoTenantsOnTwoSlotsWithCachingAndIsolation() async throws {
        try await withWorld { w in
            let a = try w.client("svc-a")
            let b = try w.client("svc-b")
            let (plaintextA, blobA, kidA) = try await a.generateDataKey(tenant: "customer-1", deadline: deadline())
            #expect(plaintextA.count == 32)
            #expect(kidA.contains("/keys/cmk/"))
            let (_, blobB, _) = try await b.generateDataKey(tenant: "customer-2", deadline: deadline())
            #expect(w.counter("keyvault.wrapkey") == 2)
            #expect(w.counter("imds.token") == 2)  // one assertion per slot

            // Unwrap: one vault call, then the cache.
            #expect(try await a.unwrap(blobA, deadline: deadline()) == plaintextA)
            #expect(try await a.unwrap(blobA, deadline: deadline()) == plaintextA)
            #expect(w.counter("keyvault.unwrapkey") == 1)

            // Caller B can never obtain tenant A's key material, by any method.
            for refused in [
                await refusal { _ = try await b.unwrap(blobA, deadline: deadline()) },
                await refusal { _ = try await b.rewrap(blobA, deadline: deadline()) },
                await refusal { _ = try await b.generateDataKey(tenant: "customer-1", deadline: deadline()) },
            ] {
                #expect(refused?.code == .permissionDenied)
                #expect(refused?.reason == .notAuthorized)
            }
            // A relabelled blob (A's, claiming to be B's) does not open for B either: B's record
            // names another key.
            var relabelled = try WrappedKeyEnvelope(parsing: blobA)
            relabelled.tenantID = "customer-2"
            let opened = await refusal { _ = try await b.unwrap(relabelled.serialized(), deadline: deadline()) }
            #expect(opened?.code == .invalidArgument)
            #expect(opened?.reason == .blobInvalid)
            #expect(try await b.unwrap(blobB, deadline: deadline()).count == 32)
        }
    }

    @Test func identicalConcurrentUnwrapsShareOneVaultCall() async throws {
        try await withWorld { w in
            let a = try w.client("svc-a")
            let (plaintext, blob, _) = try await a.generateDataKey(tenant: "customer-1", deadline: deadline())
            let before = w.counter("keyvault.unwrapkey")
            let results = try await withThrowingTaskGroup(of: [UInt8].self) { group in
                for _ in 0..<20 { group.addTask { try await a.unwrap(blob, deadline: deadline()) } }
                return try await group.reduce(into: [[UInt8]]()) { $0.append($1) }
            }
            #expect(results.count == 20 && results.allSatisfy { $0 == plaintext })
            #expect(w.counter("keyvault.unwrapkey") - before == 1)
        }
    }

    @Test func contextBindingTamperingAndUnknownTenants() async throws {
        try await withWorld { w in
            let a = try w.client("svc-a")
            let secret: [UInt8] = Array("a secret key material".utf8)
            let blob = try await a.wrap(tenant: "customer-1", plaintext: secret, context: Array("order/1".utf8), deadline: deadline())
            #expect(try await a.unwrap(blob, context: Array("order/1".utf8), deadline: deadline()) == secret)
            let otherContext = await refusal { _ = try await a.unwrap(blob, context: Array("order/2".utf8), deadline: deadline()) }
            #expect(otherContext?.code == .invalidArgument)
            #expect(otherContext?.reason == .contextMismatch)
            // A flipped tag: the seal fails, and for a context-bound blob the broker cannot tell an
            // altered blob from another context, so it names the context.
            var tampered = blob
            tampered[tampered.count - 1] ^= 1
            let altered = await refusal { _ = try await a.unwrap(tampered, context: Array("order/1".utf8), deadline: deadline()) }
            #expect(altered?.code == .invalidArgument)
            #expect(altered?.reason == .contextMismatch)
            let garbage = await refusal { _ = try await a.unwrap([1, 2, 3], deadline: deadline()) }
            #expect(garbage?.code == .invalidArgument)
            #expect(garbage?.reason == .blobInvalid)
            // Not granted: existence is not revealed (TenantIsolationTests compares the two answers).
            let unknown = await refusal { _ = try await a.keyStatus(tenant: "customer-404", deadline: deadline()) }
            #expect(unknown?.code == .permissionDenied)
            #expect(unknown?.reason == .notAuthorized)
            let status = try await a.keyStatus(tenant: "customer-1", deadline: deadline())
            #expect(status.keyStatus.state == "active")
            #expect(status.keyStatus.slot.hasPrefix("fic-"))
        }
    }

    /// A disabled key is a refusal of its version, not of the tenant: blobs under it stop opening
    /// at once (cached plaintexts included, invariant 3) and no new data key is wrapped with it,
    /// but the tenant stays active, so enabling the key is all it takes to serve again.
    @Test func disabledKeyStopsItsBlobsAtOnceAndPurgesTheCache() async throws {
        try await withWorld { w in
            let a = try w.client("svc-a", retrying: false)
            let (plaintext, cachedBlob, _) = try await a.generateDataKey(tenant: "customer-1", deadline: deadline())
            #expect(try await a.unwrap(cachedBlob, deadline: deadline()) == plaintext)  // now cached
            let (_, freshBlob, _) = try await a.generateDataKey(tenant: "customer-1", deadline: deadline())

            try w.emulator.state.updateKey(vault: "contoso-kv", name: "cmk", enabled: false)
            let disabled = await refusal { _ = try await a.unwrap(freshBlob, deadline: deadline()) }
            #expect(disabled?.code == .failedPrecondition)
            #expect(disabled?.reason == .keyVersionUnavailable)
            #expect(disabled?.retryable == false)
            // The refusal purged the tenant's cached keys: even the cached blob goes to the vault, and is refused.
            let purged = await refusal { _ = try await a.unwrap(cachedBlob, deadline: deadline()) }
            #expect(purged?.reason == .keyVersionUnavailable)
            // The refusal also dropped the key's known state: no new data key under a disabled key.
            let minted = await refusal { _ = try await a.generateDataKey(tenant: "customer-1", deadline: deadline()) }
            #expect(minted?.code == .failedPrecondition)
            #expect(minted?.reason == .keyDisabled)
            #expect(try await w.store.tenant(w.tenants[0]).state == .active)
            // The other tenant is unaffected.
            let b = try w.client("svc-b")
            #expect(try await b.generateDataKey(tenant: "customer-2", deadline: deadline()).plaintext.count == 32)
            // Enabled again: the same blob opens, with no operator.
            try w.emulator.state.updateKey(vault: "contoso-kv", name: "cmk", enabled: true)
            #expect(try await a.unwrap(cachedBlob, deadline: deadline()) == plaintext)
            // Every key operation was audited, failures included.
            try await w.audit.shutdown()
            let records = try await w.store.auditRecords(tenant: w.tenants[0], from: .distantPast, to: .distantFuture, limit: 100)
            let operations = records.map(\.operation)
            #expect(operations.filter { $0 == "key.generate_data_key" }.count == 3)
            #expect(records.contains { $0.operation == "key.unwrap" && $0.outcome == .failure(code: "keyVersionUnavailable") })
            #expect(records.contains { $0.operation == "key.unwrap" && $0.outcome.isSuccess && $0.clientRequestID != nil })
        }
    }

    @Test("Any 401/403 from the vault ends this replica's cached keys of the tenant at once, whatever its inner code (here the vault's firewall)")
    func anyRefusalPurgesTheTenantsCachedKeys() async throws {
        try await withWorld { w in
            let a = try w.client("svc-a", retrying: false)
            let (plaintext, cachedBlob, _) = try await a.generateDataKey(tenant: "customer-1", deadline: deadline())
            #expect(try await a.unwrap(cachedBlob, deadline: deadline()) == plaintext)  // now cached
            let (_, freshBlob, _) = try await a.generateDataKey(tenant: "customer-1", deadline: deadline())

            // The customer's firewall shuts the broker out of the vault.
            let firewall = FaultRule(service: .keyvault, target: "contoso-kv", status: 403)
            w.emulator.state.faults.add(firewall)
            let refused = await refusal { _ = try await a.unwrap(freshBlob, deadline: deadline()) }
            #expect(refused?.reason == .vaultUnavailable, "\(String(describing: refused))")
            #expect(refused?.message.contains("ForbiddenByFirewall") == true, "\(String(describing: refused))")
            // The cached blob no longer opens from memory: it goes to the vault, which refuses it.
            let cached = await refusal { _ = try await a.unwrap(cachedBlob, deadline: deadline()) }
            #expect(cached?.reason == .vaultUnavailable, "a cached key was served after the vault refused the broker")
            #expect(try await w.store.tenant(w.tenants[0]).state == .active, "a firewall is not taken as a lost role")

            // The firewall lets the broker in again: the same blob opens, with no operator.
            _ = w.emulator.state.faults.remove(id: firewall.id)
            #expect(try await a.unwrap(cachedBlob, deadline: deadline()) == plaintext)
        }
    }

    /// The broker's answer to a call that must fail.
    func refusal(_ call: () async throws -> Void) async -> WireStatus? {
        do {
            try await call()
            Issue.record("the call succeeded")
        } catch let BrokerCallError.status(status) {
            return status
        } catch {
            Issue.record("unexpected error \(error)")
        }
        return nil
    }

    @Test func aFailingVaultOpensItsCircuitAndOtherVaultsAreServed() async throws {
        try await withWorld(configure: { $0.circuitBreaker = .init(failureThreshold: 3, openSeconds: 600) }) { w in
            let a = try w.client("svc-a", retrying: false)
            let b = try w.client("svc-b", retrying: false)
            let (_, blobA, _) = try await a.generateDataKey(tenant: "customer-1", deadline: deadline())
            let (_, blobB, _) = try await b.generateDataKey(tenant: "customer-2", deadline: deadline())
            let rule = FaultRule(service: .keyvault, operation: "unwrapkey", target: "contoso-kv", status: 503, remaining: 100)
            w.emulator.state.faults.add(rule)
            func vaultAttempts() -> Int { 100 - (w.emulator.state.faults.all.first { $0.id == rule.id }?.remaining ?? 0) }

            // Three 503s in a row (the broker's own retries) open the circuit; the retry after
            // them is refused without being sent.
            let first = await refusal { _ = try await a.unwrap(blobA, deadline: deadline()) }
            #expect(first?.reason == .vaultUnavailable)
            #expect(first?.retryable == true)
            #expect(vaultAttempts() == 3)
            // While open: refused at once, nothing reaches the vault, and the caller is told when to retry.
            let second = await refusal { _ = try await a.unwrap(blobA, deadline: deadline()) }
            #expect(second?.reason == .vaultUnavailable)
            #expect(second?.code == .unavailable)
            #expect((second?.retryAfterMs ?? 0) > 500_000)
            #expect(vaultAttempts() == 3)
            // The tenant is not suspended: an unhealthy vault is not a revocation.
            #expect(try await w.store.tenant(w.tenants[0]).state == .active)
            // Another customer's vault is unaffected.
            #expect(try await b.unwrap(blobB, deadline: deadline()).count == 32)
        }
    }

    @Test func aTenantOverItsConcurrencyLimitIsRefusedAtOnceWhileOthersAreServed() async throws {
        try await withWorld(configure: { $0.tenantConcurrency = 2 }) { w in
            let a = try w.client("svc-a", retrying: false)
            let b = try w.client("svc-b", retrying: false)
            // Three distinct blobs (no single flight), a slow vault for tenant 1 only.
            var blobs: [[UInt8]] = []
            for _ in 0..<3 { blobs.append(try await a.generateDataKey(tenant: "customer-1", deadline: deadline()).blob) }
            let (_, blobB, _) = try await b.generateDataKey(tenant: "customer-2", deadline: deadline())
            w.emulator.state.faults.add(FaultRule(service: .keyvault, operation: "unwrapkey", target: "contoso-kv", latencyMilliseconds: 3000))

            let outcomes = await withTaskGroup(of: WireReason?.self) { group in
                for blob in blobs {
                    group.addTask {
                        do {
                            _ = try await a.unwrap(blob, deadline: deadline())
                            return nil
                        } catch let BrokerCallError.status(status) {
                            #expect(status.retryable)
                            #expect(status.code == .resourceExhausted)
                            return status.reason
                        } catch {
                            return .unspecified
                        }
                    }
                }
                // Tenant 2 is served while tenant 1's vault holds both of its permits.
                group.addTask {
                    (try? await b.unwrap(blobB, deadline: deadline()).count) == 32 ? nil : .unspecified
                }
                return await group.reduce(into: [WireReason?]()) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 == nil }.count == 3)  // two of tenant 1's, and tenant 2's
            #expect(outcomes.filter { $0 == .overloaded }.count == 1)
            #expect(w.service.tenantLimitInFlight("customer-1") == 0)  // every permit came back
        }
    }

    @Test func noKeyLeavesBeforeItsAuditRecordIsStored() async throws {
        try await withWorld { w in
            let a = try w.client("svc-a", retrying: false)
            let (plaintext, blob, _) = try await a.generateDataKey(tenant: "customer-1", deadline: deadline())
            #expect(try await a.unwrap(blob, deadline: deadline()) == plaintext)
            // Both answers came after their records committed: no flush, no shutdown needed to see them.
            let stored = try await w.store.auditRecords(tenant: w.tenants[0], from: .distantPast, to: .distantFuture, limit: 100)
            #expect(stored.map(\.operation).filter { $0.hasPrefix("key.") } == ["key.generate_data_key", "key.unwrap"])

            // The store stops taking audit records: the cached key is not released.
            try await w.store.executeForTesting("ALTER TABLE audit_records RENAME TO audit_records_away")
            let refused = await refusal { _ = try await a.unwrap(blob, deadline: deadline()) }
            #expect(refused?.code == .unavailable)
            #expect(refused?.reason == .auditUnavailable)
            #expect(refused?.retryable == true)

            // Back: the same blob unwraps again, and the withheld operation's record was kept, not lost.
            try await w.store.executeForTesting("ALTER TABLE audit_records_away RENAME TO audit_records")
            #expect(try await a.unwrap(blob, deadline: deadline()) == plaintext)
            let after = try await w.store.auditRecords(tenant: w.tenants[0], from: .distantPast, to: .distantFuture, limit: 100)
            #expect(after.filter { $0.operation == "key.unwrap" }.count == 3)
        }
    }

    @Test func aTenantSuspendedInTheStoreLosesItsCachedKeysThroughTheChangeFeed() async throws {
        try await withWorld { w in
            let (events, applied) = AsyncStream<(ChangeEvent, Int)>.makeStream()
            let start = try await w.store.latestChangeSequence()
            let follower = Task { await w.service.followChanges(after: start, pollInterval: .milliseconds(50)) { applied.yield(($0, $1)) } }
            defer { follower.cancel() }
            let a = try w.client("svc-a")
            let (plaintext, blob, _) = try await a.generateDataKey(tenant: "customer-1", deadline: deadline())
            #expect(try await a.unwrap(blob, deadline: deadline()) == plaintext)
            #expect(w.counter("keyvault.unwrapkey") == 1)
            #expect(w.service.cache.count == 1)

            // Staff (or another replica) suspends the tenant: the follower purges its keys. The
            // broker's own follower (BrokerApp runs one) and this test's follow the same feed;
            // whichever applies the event first purges the key, so once this one has applied
            // it the cache is empty, and between them exactly one key was purged.
            var tenant = try await w.store.tenant(w.tenants[0])
            tenant = try await w.store.transitionTenant(tenant.id, expectedVersion: tenant.version, event: .accessLost(.roleRemoved), actor: "replica-2")
            var purged = -1
            for await (event, count) in events where event.kind == .tenant && event.entityID == tenant.id.rawValue {
                purged = count
                break
            }
            #expect(purged == 0 || purged == 1)
            #expect(w.service.cache.count == 0)

            // Restored: the next unwrap goes to the vault again, the key was not kept.
            _ = try await w.store.transitionTenant(tenant.id, expectedVersion: tenant.version, event: .accessRestored, actor: "sre")
            #expect(try await a.unwrap(blob, deadline: deadline()) == plaintext)
            #expect(w.counter("keyvault.unwrapkey") == 2)
        }
    }
}
