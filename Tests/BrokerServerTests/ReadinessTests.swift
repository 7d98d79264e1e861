import AzureIdentity
import BrokerStore
import FedBrokerCore
import FedBrokerTestSupport
import Foundation
import Logging
import Synchronization
import Testing

@testable import BrokerServer
@testable import KeyVault

/// Readiness's checks and its caching, without sockets: the probes are closures, time is a
/// manual clock.
@Suite struct ReadinessTests {
    static let logger = Logger(label: "readiness-tests")

    static func slot(_ name: String, _ state: FICSlotState) throws -> FICSlot {
        let identity = try FICSlotIdentity(
            applicationID: "app", managedIdentityClientID: "mi-\(name)", managedIdentityPrincipalID: "p-\(name)",
            issuer: "https://login.microsoftonline.com/isv/v2.0", subject: "p-\(name)")
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        return FICSlot(id: try FICSlotID(validating: name), identity: identity, state: state, createdAt: now, updatedAt: now, version: .initial)
    }

    static let healthyAudit = AuditWriter.Health(closed: false, backlog: 3, maximumPending: 100)

    /// Counts what readiness asked of the probes.
    final class Calls: Sendable {
        let store = Mutex(0)
        let assertions = Mutex<[String]>([])

        /// A call that never returns by itself.
        final class Stuck: Sendable {
            let continuation = Mutex<CheckedContinuation<Void, Never>?>(nil)
        }
    }

    static func probes(
        slots: [FICSlot], calls: Calls = Calls(), storeRead: (@Sendable () async throws -> Void)? = nil,
        audit: AuditWriter.Health = healthyAudit, failing: Set<String> = [], expiresOn: Date = Date(timeIntervalSince1970: 1_900_000_000)
    ) -> Readiness.Probes {
        Readiness.Probes(
            storeRead: {
                calls.store.withLock { $0 += 1 }
                try await storeRead?()
            },
            slots: { slots },
            audit: { audit },
            assertion: { slot, _ in
                calls.assertions.withLock { $0.append(slot.id.rawValue) }
                if failing.contains(slot.id.rawValue) { throw AzureIdentityError.imds(status: 400, error: "invalid_request", description: "identity not found") }
                return AccessToken(token: "t", expiresOn: expiresOn)
            })
    }

    // MARK: Pure checks

    @Test("The store check names the failure by its code, never by an error's text")
    func storeCheck() {
        #expect(Readiness.storeCheck(.success(.milliseconds(12))) == .init(name: "store", ok: true, detail: "answered in 12 ms"))
        let timedOut = Readiness.storeCheck(.failure(.timedOut(seconds: 2)))
        #expect(!timedOut.ok && timedOut.required)
        #expect(timedOut.detail.contains("no answer within 2 s"))
        let failed = Readiness.storeCheck(.failure(Readiness.ProbeFailure(BrokerError(.databaseUnavailable, "password=hunter2 refused"))))
        #expect(failed.detail.contains("database_unavailable"))
        #expect(!failed.detail.contains("hunter2"))
    }

    @Test("The audit check fails when the writer is closed, its queue is full, or flushes fail past the grace")
    func auditCheck() {
        #expect(Readiness.auditCheck(Self.healthyAudit, graceSeconds: 30).ok)
        #expect(!Readiness.auditCheck(.init(closed: true, backlog: 0, maximumPending: 100), graceSeconds: 30).ok)
        let full = Readiness.auditCheck(.init(closed: false, backlog: 100, maximumPending: 100), graceSeconds: 30)
        #expect(!full.ok && full.detail.contains("full"))
        let fullByBytes = Readiness.auditCheck(
            .init(closed: false, backlog: 1, maximumPending: 100, backlogBytes: 64 << 20, maximumQueueBytes: 64 << 20), graceSeconds: 30)
        #expect(!fullByBytes.ok && fullByBytes.detail.contains("67108864 of 67108864 bytes"))
        let briefly = AuditWriter.Health(closed: false, backlog: 5, maximumPending: 100, failingFor: .seconds(10), lastFailure: "database_unavailable")
        #expect(Readiness.auditCheck(briefly, graceSeconds: 30).ok)
        var long = briefly
        long.failingFor = .seconds(31)
        let failing = Readiness.auditCheck(long, graceSeconds: 30)
        #expect(!failing.ok)
        #expect(failing.detail.contains("31 s") && failing.detail.contains("database_unavailable"))
    }

    @Test("Assertion candidates: active slots only, the last good one first, at most the limit")
    func candidates() throws {
        let slots = [try Self.slot("fic-1", .active), try Self.slot("fic-2", .draining), try Self.slot("fic-3", .active), try Self.slot("fic-4", .active)]
        #expect(Readiness.assertionCandidates(slots, preferring: nil, limit: 2).map(\.id.rawValue) == ["fic-1", "fic-3"])
        #expect(Readiness.assertionCandidates(slots, preferring: try FICSlotID(validating: "fic-4"), limit: 2).map(\.id.rawValue) == ["fic-4", "fic-1"])
        #expect(Readiness.assertionCandidates([try Self.slot("fic-2", .draining)], preferring: nil, limit: 2).isEmpty)
    }

    @Test("The identity check: no active slot fails naming the slots' states; one valid assertion passes; expired or failed ones fail")
    func identityCheck() throws {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let none = Readiness.identityCheck(slots: [try Self.slot("fic-1", .draining), try Self.slot("fic-2", .retired)], attempts: [], now: now)
        #expect(!none.ok)
        #expect(none.detail.contains("no active FIC slot") && none.detail.contains("1 draining") && none.detail.contains("1 retired"))
        #expect(Readiness.identityCheck(slots: [], attempts: [], now: now).detail.contains("no slots at all"))

        let slots = [try Self.slot("fic-1", .active), try Self.slot("fic-2", .active)]
        let fic1 = try FICSlotID(validating: "fic-1"), fic2 = try FICSlotID(validating: "fic-2")
        let good = Readiness.identityCheck(
            slots: slots,
            attempts: [.init(slot: fic1, outcome: .failed(.failed(code: "IMDS_ERROR"))), .init(slot: fic2, outcome: .obtained(expiresOn: now.addingTimeInterval(3600)))],
            now: now)
        #expect(good.ok)
        #expect(good.detail.contains("fic-2") && good.detail.contains("60 more min"))
        let bad = Readiness.identityCheck(
            slots: slots,
            attempts: [.init(slot: fic1, outcome: .failed(.timedOut(seconds: 3))), .init(slot: fic2, outcome: .obtained(expiresOn: now.addingTimeInterval(-1)))],
            now: now)
        #expect(!bad.ok)
        #expect(bad.detail.contains("fic-1: no answer within 3 s") && bad.detail.contains("fic-2: assertion already expired"))
    }

    @Test("The canary check: not run yet, failed and stale fail; required only when configured so")
    func canaryCheck() {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let configuration = Canary.Configuration(tenantID: "t", vaultURL: "https://isv.vault.azure.net", keyName: "canary")
        let notYet = Readiness.canaryCheck(nil, configuration: configuration, required: false, now: now)
        #expect(!notYet.ok && !notYet.required)
        let passed = Canary.Result(finishedAt: now.addingTimeInterval(-30), ok: true, detail: "round trip")
        #expect(Readiness.canaryCheck(passed, configuration: configuration, required: true, now: now).ok)
        let failed = Canary.Result(finishedAt: now.addingTimeInterval(-30), ok: false, detail: "token exchange failed (AADSTS700016)")
        let failedCheck = Readiness.canaryCheck(failed, configuration: configuration, required: true, now: now)
        #expect(!failedCheck.ok && failedCheck.required && failedCheck.detail.contains("AADSTS700016"))
        // 3 × 60 s + 20 s of timeout: a result older than that means the canary stopped.
        let stale = Canary.Result(finishedAt: now.addingTimeInterval(-201), ok: true, detail: "round trip")
        #expect(!Readiness.canaryCheck(stale, configuration: configuration, required: true, now: now).ok)
    }

    @Test("A report is ready when every required check passes; an optional failure is listed but does not count")
    func reportVerdict() {
        let now = Date()
        var report = Readiness.Report(
            checks: [.init(name: "store", ok: true, detail: ""), .init(name: "canary", ok: false, required: false, detail: "")], checkedAt: now)
        #expect(report.ready)
        #expect(report.failing.map(\.name) == ["canary"])
        report.checks[1].required = true
        #expect(!report.ready)
    }

    // MARK: The actor, with fake probes

    @Test("A report is reused for cacheSeconds, then evaluated again; maximumAge 0 forces a fresh one")
    func caching() async throws {
        let clock = ManualWallClock()
        let calls = Calls()
        let readiness = Readiness(
            configuration: .init(), probes: Self.probes(slots: [try Self.slot("fic-1", .active)], calls: calls), clock: clock, logger: Self.logger)
        let first = await readiness.report()
        #expect(first.ready)
        #expect(first.checks.map(\.name) == ["store", "audit", "identity"])
        clock.advance(by: 4)
        _ = await readiness.report()
        #expect(calls.store.withLock { $0 } == 1)
        clock.advance(by: 1.5)
        _ = await readiness.report()
        #expect(calls.store.withLock { $0 } == 2)
        _ = await readiness.report(maximumAge: 0)
        #expect(calls.store.withLock { $0 } == 3)
    }

    @Test("Concurrent askers share one evaluation")
    func singleFlight() async throws {
        let calls = Calls()
        let gate = AsyncStream<Void>.makeStream()
        let readiness = Readiness(
            configuration: .init(),
            probes: Self.probes(slots: [try Self.slot("fic-1", .active)], calls: calls, storeRead: {
                var iterator = gate.stream.makeAsyncIterator()
                await iterator.next()
            }),
            clock: ManualWallClock(), logger: Self.logger)
        async let a = readiness.report()
        async let b = readiness.report()
        async let c = readiness.report()
        // Let all three ask before the store answers.
        while calls.store.withLock({ $0 }) == 0 { await Task.yield() }
        gate.continuation.yield()
        gate.continuation.finish()
        let reports = await [a, b, c]
        #expect(reports.allSatisfy { $0.ready })
        #expect(calls.store.withLock { $0 } == 1)
    }

    /// Without the bound the report would never come: the time limit fails the test then. No
    /// wall-clock assertion: on a loaded 2-core machine the timer itself fires late.
    @Test("A store that never answers fails the store check within its timeout", .timeLimit(.minutes(1)))
    func hungStore() async throws {
        var configuration = Readiness.Configuration()
        configuration.storeTimeoutSeconds = 0.2
        let stuck = Calls.Stuck()
        let readiness = Readiness(
            configuration: configuration,
            probes: Self.probes(slots: [try Self.slot("fic-1", .active)], storeRead: {
                // Ignores cancellation, like a connection stuck in the kernel; let go at the end.
                await withCheckedContinuation { continuation in stuck.continuation.withLock { $0 = continuation } }
            }),
            clock: ManualWallClock(), logger: Self.logger)
        let report = await readiness.report()
        #expect(!report.ready)
        #expect(report.failing.map(\.name) == ["store"])
        #expect(report.failing.first?.detail.contains("no answer within 0.2 s") == true)
        stuck.continuation.withLock { $0.take() }?.resume()
    }

    @Test("A slot whose identity fails is passed over for the next active one, which is tried first from then on")
    func identityFallsThrough() async throws {
        let calls = Calls()
        let clock = ManualWallClock()
        let readiness = Readiness(
            configuration: .init(),
            probes: Self.probes(slots: [try Self.slot("fic-1", .active), try Self.slot("fic-2", .active)], calls: calls, failing: ["fic-1"]),
            clock: clock, logger: Self.logger)
        let report = await readiness.report()
        #expect(report.ready)
        #expect(calls.assertions.withLock { $0 } == ["fic-1", "fic-2"])
        _ = await readiness.report(maximumAge: 0)
        #expect(calls.assertions.withLock { $0 } == ["fic-1", "fic-2", "fic-2"])
    }

    @Test("No active slot, or every active slot failing, is not ready and says which")
    func identityFails() async throws {
        let none = Readiness(
            configuration: .init(), probes: Self.probes(slots: [try Self.slot("fic-1", .provisioning)]), clock: ManualWallClock(),
            logger: Self.logger)
        let report = await none.report()
        #expect(!report.ready)
        #expect(report.failing.map(\.name) == ["identity"])
        let failing = Readiness(
            configuration: .init(), probes: Self.probes(slots: [try Self.slot("fic-1", .active)], failing: ["fic-1"]), clock: ManualWallClock(),
            logger: Self.logger)
        let failed = await failing.report()
        #expect(failed.failing.first?.detail.contains("fic-1: IMDS_ERROR") == true)
    }

    // MARK: Canary pieces

    @Test("The canary runs at most once per interval")
    func canaryInterval() {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        #expect(Canary.isDue(lastStarted: nil, now: now, intervalSeconds: 60))
        #expect(!Canary.isDue(lastStarted: now.addingTimeInterval(-59), now: now, intervalSeconds: 60))
        #expect(Canary.isDue(lastStarted: now.addingTimeInterval(-60), now: now, intervalSeconds: 60))
        #expect(Canary.isDue(lastStarted: now.addingTimeInterval(10), now: now, intervalSeconds: 60))  // the clock went back
    }

    @Test("The canary refuses a vault that holds a registered customer's key, whatever its case")
    func canaryNeverOnACustomersVault() {
        let customers: Set<String> = ["https://contoso-kv.vault.azure.net"]
        #expect(Canary.refusal(vaultURL: "https://CONTOSO-kv.vault.azure.net", customerVaults: customers) != nil)
        #expect(Canary.refusal(vaultURL: "https://isv-canary.vault.azure.net", customerVaults: customers) == nil)
    }

    @Test("A chain report is a canary success only when its round trip passed; otherwise it names the failing step")
    func canaryResult() throws {
        let now = Date()
        let slot = try FICSlotID(validating: "fic-1")
        func step(_ name: String, _ ok: Bool, code: String? = nil) -> ChainProbe.Step {
            ChainProbe.Step(name: name, ok: ok, milliseconds: 10, detail: "", code: code)
        }
        var report = ChainProbe.Report(tenantID: "isv", key: VaultKeyID(vaultURL: "https://isv.vault.azure.net", name: "canary"))
        report.steps = [step("assertion", true), step("purge protection", false, code: "PURGE_PROTECTION_OFF"), step("round trip", true)]
        let passed = Canary.result(of: report, slot: slot, at: now)
        #expect(passed.ok && passed.detail.contains("fic-1"))
        report.steps = [step("assertion", true), step("token exchange", false, code: "AADSTS700016")]
        let failed = Canary.result(of: report, slot: slot, at: now)
        #expect(!failed.ok)
        #expect(failed.detail.contains("token exchange") && failed.detail.contains("AADSTS700016"))
    }

    @Test("Circuit counts: an open circuit past its period counts as half-open")
    func circuitCounts() {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let counts = CircuitCounts(
            states: [.closed(consecutiveFailures: 0), .closed(consecutiveFailures: 3), .open(until: now.addingTimeInterval(5)), .open(until: now.addingTimeInterval(-1)), .halfOpen(probeStartedAt: now)],
            now: now)
        #expect(counts == CircuitCounts(closed: 2, open: 1, halfOpen: 2))
        #expect(counts.byState.map(\.state) == ["closed", "open", "half_open"])
    }
}
