import AzureEmulator
import BrokerClient
import BrokerServer
import BrokerStore
import BrokerWire
import FedBrokerCore
import FedBrokerTestSupport
import Foundation
import Synchronization
import Testing

/// Issue 12's request-path defects, end to end (emulator over HTTPS, mTLS client, real store):
/// each test failed before its fix.
@Suite struct RequestPathHardeningTests {
    let e2e = EndToEndTests()
    func deadline(_ seconds: Double = 120) -> Date { Date().addingTimeInterval(seconds) }

    /// Every vault and Entra request the emulator answered, by counter name.
    func azureRequests(_ w: EndToEndTests.World) -> Int {
        w.emulator.state.counters.snapshot.filter { $0.key.hasPrefix("keyvault.") || $0.key.hasPrefix("entra.") || $0.key.hasPrefix("imds.") }
            .values.reduce(0, +)
    }

    @Test func aKeyVersionThatWouldRewriteTheVaultPathIsRefusedBeforeAnythingIsSent() async throws {
        try await e2e.withWorld { w in
            let a = try w.client("svc-a", retrying: false)
            let (_, blob, _) = try await a.generateDataKey(tenant: "customer-1", deadline: deadline())
            let sent = azureRequests(w)
            // The blob is re-serialized by hand: the envelope type itself refuses such a version.
            let injected = try Self.replacingKeyVersion(of: blob, with: "v1/decrypt?api-version=7.4&x=")
            let refused = await e2e.refusal { _ = try await a.unwrap(injected, deadline: deadline()) }
            #expect(refused?.code == .invalidArgument)
            #expect(refused?.reason == .blobInvalid)
            #expect(azureRequests(w) == sent)
        }
    }

    @Test func anOldVersionDisabledFailsItsUnwrapAloneAndTheTenantStaysServed() async throws {
        try await e2e.withWorld { w in
            let a = try w.client("svc-a", retrying: false)
            let (_, oldBlob, oldKid) = try await a.generateDataKey(tenant: "customer-1", deadline: deadline())
            let oldVersion = try #require(oldKid.split(separator: "/").last.map(String.init))
            _ = try w.emulator.state.rotateKey(vault: "contoso-kv", name: "cmk")
            try w.emulator.state.updateKey(vault: "contoso-kv", name: "cmk", version: oldVersion, enabled: false)

            let refused = await e2e.refusal { _ = try await a.unwrap(oldBlob, deadline: deadline()) }
            #expect(refused?.code == .failedPrecondition)
            #expect(refused?.reason == .keyVersionUnavailable)
            #expect(refused?.message.contains(oldVersion) == true)
            // The tenant goes on: new data keys (under the new version) wrap and unwrap.
            let (plaintext, blob, kid) = try await a.generateDataKey(tenant: "customer-1", deadline: deadline())
            #expect(!kid.hasSuffix(oldVersion))
            #expect(try await a.unwrap(blob, deadline: deadline()) == plaintext)
            #expect(try await w.store.tenant(w.tenants[0]).state == .active)
        }
    }

    @Test func aDisabledKeyStopsNewDataKeysWithinTheBound() async throws {
        try await e2e.withWorld(configure: { $0.keyStateMaximumAge = 1 }) { w in
            let a = try w.client("svc-a", retrying: false)
            let (_, blob, _) = try await a.generateDataKey(tenant: "customer-1", deadline: deadline())
            // Key Vault wraps with a disabled key all the same (the emulator too): only the
            // broker's knowledge of the key's state stops the blobs nobody could open.
            try w.emulator.state.updateKey(vault: "contoso-kv", name: "cmk", enabled: false)
            let disabledAt = Date()
            var refused: WireStatus?
            while refused == nil, Date().timeIntervalSince(disabledAt) < 10 {
                do {
                    _ = try await a.generateDataKey(tenant: "customer-1", deadline: deadline())
                } catch let BrokerCallError.status(status) {
                    refused = status
                }
            }
            // The bound is the key state's age (1 s here), plus one request. A loaded CI machine took
            // 3.6 s once; 8 s still tells this bound from the 60 s default and from never.
            #expect(Date().timeIntervalSince(disabledAt) < 8)
            #expect(refused?.code == .failedPrecondition)
            #expect(refused?.reason == .keyDisabled)
            let wrap = await e2e.refusal { _ = try await a.wrap(tenant: "customer-1", plaintext: [1, 2, 3], deadline: deadline()) }
            #expect(wrap?.reason == .keyDisabled)
            let rewrap = await e2e.refusal { _ = try await a.rewrap(blob, deadline: deadline()) }
            #expect(rewrap?.code == .failedPrecondition)
            #expect([WireReason.keyDisabled, .keyVersionUnavailable].contains(rewrap?.reason))
            #expect(try await w.store.tenant(w.tenants[0]).state == .active)

            // Enabled again: served again within the same bound, with no operator.
            try w.emulator.state.updateKey(vault: "contoso-kv", name: "cmk", enabled: true)
            let enabledAt = Date()
            var served = false
            while !served, Date().timeIntervalSince(enabledAt) < 10 {
                served = (try? await a.generateDataKey(tenant: "customer-1", deadline: deadline())) != nil
            }
            #expect(served)
        }
    }

    @Test("A vault's 429 with a huge Retry-After: clamped to the vault's 16 s pause, the vault's later calls refused without being sent, another customer's vault served, the process alive")
    func aHugeRetryAfterIsClampedAndTheProcessLives() async throws {
        try await e2e.withWorld { w in
            let a = try w.client("svc-a", retrying: false)
            let b = try w.client("svc-b", retrying: false)
            // The tenant's chain first (IMDS, Entra, the key's state: more than 5 s on a loaded CI
            // machine), so the 429 meets a call that still has its time.
            let (_, blob, _) = try await a.generateDataKey(tenant: "customer-1", deadline: deadline(60))
            w.emulator.state.faults.add(FaultRule(service: .keyvault, operation: "wrapkey", target: "contoso-kv", status: 429, remaining: 1, retryAfterSeconds: 10_000_000))
            // The 16 s pause is past the 10 s deadline, so the broker answers at the 429.
            let refused = await e2e.refusal { _ = try await a.generateDataKey(tenant: "customer-1", deadline: deadline(10)) }
            #expect(refused?.reason == .vaultThrottled)
            #expect(refused?.retryable == true)
            #expect((1...16_000).contains(refused?.retryAfterMs ?? 0), "\(String(describing: refused))")
            // The fault is used up; the vault is left alone all the same. (4 s deadlines: refused
            // at once for as long as 12 s of the pause are left.)
            let sent = w.counter("keyvault.wrapkey")
            let paused = await e2e.refusal { _ = try await a.generateDataKey(tenant: "customer-1", deadline: deadline(4)) }
            #expect(paused?.reason == .vaultThrottled)
            #expect((1...16_000).contains(paused?.retryAfterMs ?? 0), "\(String(describing: paused))")
            #expect(w.counter("keyvault.wrapkey") == sent, "sent to a vault that asked for a pause")
            // An unwrap that misses the cache too, though its shared vault call would run for 30 s:
            // answered with the pause as its hint, not held until its deadline.
            w.service.cache.purge(tenantID: "customer-1")
            let unwraps = w.counter("keyvault.unwrapkey")
            let unwrap = await e2e.refusal { _ = try await a.unwrap(blob, deadline: deadline(4)) }
            #expect(unwrap?.reason == .vaultThrottled, "\(String(describing: unwrap))")
            #expect((1...16_000).contains(unwrap?.retryAfterMs ?? 0), "\(String(describing: unwrap))")
            #expect(w.counter("keyvault.unwrapkey") == unwraps)
            // Another customer's vault is served meanwhile.
            #expect(try await b.generateDataKey(tenant: "customer-2", deadline: deadline()).plaintext.count == 32)
            #expect(w.counter("keyvault.wrapkey") == sent + 1)
        }
    }

    @Test func aHugeTenantStringIsNeitherEchoedNorStoredWhole() async throws {
        try await e2e.withWorld { w in
            let stranger = try w.client("not-registered", retrying: false)
            let huge = String(repeating: "\u{1b}[31mx", count: 900 * 1024 / 7)
            let refused = await e2e.refusal { _ = try await stranger.keyStatus(tenant: huge, deadline: deadline()) }
            #expect(refused?.code == .invalidArgument)
            #expect((refused?.message.utf8.count ?? .max) <= 1024)
            #expect(refused?.message.contains("\u{1b}") == false)
            try await w.audit.shutdown()
            let entries = try await w.store.auditEntries(AuditQuery(operation: "key.key_status", limit: 10))
            let entry = try #require(entries.first)
            #expect((entry.record.detail?.utf8.count ?? 0) <= 1024)
            #expect(entry.record.detail?.contains("\u{1b}") == false)
        }
    }

    @Test func eachWaiterOnASharedUnwrapKeepsItsOwnDeadline() async throws {
        try await e2e.withWorld { w in
            let a = try w.client("svc-a", retrying: false)
            // The issue's figures are a 0.3 s first caller and a 3 s vault; a loaded 2-core CI run
            // needs more than 0.3 s just to reach the vault, so 1 s and 4 s keep the same order.
            //
            // On a loaded machine an attempt may not set the scene up, and is then made again
            // from a fresh slow rule: the first caller may time out before its vault call starts
            // (the rule is left unused), or the vault call of an attempt that already timed out,
            // still on its way, may take the rule after the next attempt started (the next
            // attempt's own call is then fast, and its first caller succeeds: seen once in CI).
            // Each attempt unwraps a blob of its own: an earlier attempt's answer, or a call of it
            // that went on after its caller left, may have cached the last one's key.
            for attempt in 0..<10 {
                let (plaintext, blob, _) = try await a.generateDataKey(tenant: "customer-1", deadline: deadline())
                w.emulator.state.faults.clear()
                w.emulator.state.faults.add(FaultRule(service: .keyvault, operation: "unwrapkey", target: "contoso-kv", remaining: 1, latencyMilliseconds: 4000))
                let before = w.counter("keyvault.unwrapkey")
                let finished = Finished()
                let first = Task {
                    defer { finished.set() }
                    return try await a.unwrap(blob, deadline: deadline(1))
                }
                while w.emulator.state.faults.all.contains(where: { $0.remaining == 1 }), !finished.value {
                    try await Task.sleep(for: .milliseconds(5))  // a bounded poll on state, not a timing assumption
                }
                guard !w.emulator.state.faults.all.contains(where: { $0.remaining == 1 }) else {
                    _ = await first.result
                    continue  // timed out before any vault call took the rule
                }
                // The second caller joins the first one's vault call (same blob, same context).
                let answers = Mutex<[String]>([])
                let second = Task {
                    defer { answers.withLock { $0.append("second") } }
                    return try await a.unwrap(blob, deadline: deadline(30))
                }
                let refusal: WireStatus?
                do {
                    _ = try await first.value
                    // Its call was fast: an earlier attempt's call took the slow rule. Again.
                    _ = await second.result
                    continue
                } catch BrokerCallError.deadlineExceeded {
                    refusal = nil
                } catch let BrokerCallError.status(status) {
                    refusal = status
                }
                // DEADLINE_EXCEEDED, or, when the refusal's own audit record was not confirmed in
                // the grace a passed deadline gets (0.2 s, which a loaded CI machine's fsync can
                // miss), that refusal withheld as AUDIT_UNAVAILABLE: either way a refusal of its own.
                if let refusal {
                    #expect(refusal.code == .deadlineExceeded || refusal.reason == .auditUnavailable, "\(refusal.code) \(refusal.reason): \(refusal.message)")
                }
                answers.withLock { $0.append("first") }
                #expect(try await second.value == plaintext)
                // The first was answered at its own deadline, not when the shared 4 s vault call ended.
                #expect(answers.withLock { $0 } == ["first", "second"])
                // One vault call for both callers. (After a retry, a call of an earlier attempt
                // may still arrive and count: checked on a first attempt only.)
                if attempt == 0 { #expect(w.counter("keyvault.unwrapkey") - before == 1) }
                return
            }
            Issue.record("no attempt in 10 had its first caller's own vault call take the slow rule")
        }
    }

    @Test func aContextPresentedWithAnUnboundBlobIsRefused() async throws {
        try await e2e.withWorld { w in
            let a = try w.client("svc-a", retrying: false)
            let (_, blob, _) = try await a.generateDataKey(tenant: "customer-1", deadline: deadline())
            let refused = await e2e.refusal { _ = try await a.unwrap(blob, context: Array("order/1".utf8), deadline: deadline()) }
            #expect(refused?.code == .invalidArgument)
            #expect(refused?.reason == .contextMismatch)
        }
    }

    @Test func aCallerWhoseRecordRequiresContextMustPresentOne() async throws {
        try await e2e.withWorld { w in
            _ = try await w.store.createCaller(
                Caller(
                    id: "svc-strict", identity: LocalPKI.callerIdentity("svc-strict"),
                    grants: [CallerGrant(operations: Set(KeyOperation.allCases), tenants: .only([w.tenants[0]]))], requireContext: true),
                actor: "sre")
            let strict = try w.client("svc-strict", retrying: false)
            let refused = await e2e.refusal { _ = try await strict.generateDataKey(tenant: "customer-1", deadline: deadline()) }
            #expect(refused?.code == .invalidArgument)
            #expect(refused?.reason == .contextMismatch)
            let context = Array("order/7".utf8)
            let blob = try await strict.wrap(tenant: "customer-1", plaintext: [7, 7, 7], context: context, deadline: deadline())
            #expect(try await strict.unwrap(blob, context: context, deadline: deadline()) == [7, 7, 7])
            let unbound = await e2e.refusal { _ = try await strict.unwrap(blob, deadline: deadline()) }
            #expect(unbound?.reason == .contextMismatch)
        }
    }

    @Test func withTheStoreDownAnUnwrapGetsARetryableUnavailableWithinItsDeadline() async throws {
        // Runs where scripts/test.sh runs the PostgreSQL tests; this one stops a server of its own.
        guard ProcessInfo.processInfo.environment["FEDBROKER_TEST_DATABASE_URL"] != nil else { return }
        let postgres = try ThrowawayPostgres()
        defer { postgres.destroy() }
        // connect_timeout=5: the store gives up on the stopped server after 5 s (the lookup, then
        // the refusal's audit record), well inside the request's 30 s, so the broker's answer comes
        // back, not the client's own deadline. (With a 2 s request the store's bound and the
        // client's were 0.3 s apart, which a loaded CI machine missed; 1 s was too short for the
        // world's own setup on a loaded machine.) StoreDeadlineTests checks the deadline-bound
        // store call on its own.
        try await e2e.withWorld(store: try StoreConfiguration(databaseURL: postgres.url + "&connect_timeout=5"), configure: { $0.recordMaximumAge = 0.05 }) { w in
            let a = try w.client("svc-a", retrying: false)
            let (plaintext, blob, _) = try await a.generateDataKey(tenant: "customer-1", deadline: deadline())
            try postgres.stop()
            let started = Date()
            let refused = await e2e.refusal { _ = try await a.unwrap(blob, deadline: deadline(30)) }
            let elapsed = Date().timeIntervalSince(started)
            #expect(refused?.code == .unavailable, "answered after \(elapsed) s")
            #expect([WireReason.storeUnavailable, .auditUnavailable].contains(refused?.reason))
            #expect(refused?.retryable == true)
            // Back: served again, nothing to repair.
            try postgres.start()
            var opened: [UInt8]?
            let restarted = Date()
            while opened == nil, Date().timeIntervalSince(restarted) < 30 {
                opened = try? await a.unwrap(blob, deadline: deadline(5))
            }
            #expect(opened == plaintext)
        }
    }

    /// Whether a task has ended (Task itself does not say, short of awaiting it).
    final class Finished: Sendable {
        private let done = Mutex(false)
        func set() { done.withLock { $0 = true } }
        var value: Bool { done.withLock { $0 } }
    }

    /// `blob` with its key version replaced by `version` (any bytes), the rest untouched.
    static func replacingKeyVersion(of blob: [UInt8], with version: String) throws -> [UInt8] {
        var offset = 6
        func field() -> Range<Int> {
            let length = Int(blob[offset]) << 8 | Int(blob[offset + 1])
            defer { offset += 2 + length }
            return (offset + 2)..<(offset + 2 + length)
        }
        for _ in 0..<3 { _ = field() }  // tenant, vault URL, key name
        let versionRange = field()
        let bytes = Array(version.utf8)
        return Array(blob[..<(versionRange.lowerBound - 2)]) + [UInt8(bytes.count >> 8), UInt8(bytes.count & 0xFF)] + bytes
            + Array(blob[versionRange.upperBound...])
    }
}
