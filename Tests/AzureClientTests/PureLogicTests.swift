import AzureHTTP
@testable import AzureIdentity
import FedBrokerCore
import Foundation
@testable import KeyVault
import Testing
import FedBrokerTestSupport

@Suite struct TokenCacheStateMachineTests {
    let t0 = Date(timeIntervalSince1970: 10_000)
    func token(_ name: String, lifetime: Double) -> AccessToken { AccessToken(token: name, expiresOn: t0.addingTimeInterval(lifetime)) }

    @Test func coldCacheFetchesOnceAndOthersWait() {
        var m = TokenCacheStateMachine()
        #expect(m.tokenRequested(now: t0) == .fetchAndWait)
        #expect(m.tokenRequested(now: t0) == .wait)
        #expect(m.tokenRequested(now: t0) == .wait)
        m.fetchSucceeded(token("a", lifetime: 3600), now: t0, jitter: 0)
        #expect(m.tokenRequested(now: t0) == .use(token("a", lifetime: 3600)))
    }

    @Test func refreshesAheadWhileServingTheCurrentToken() {
        var m = TokenCacheStateMachine()
        _ = m.tokenRequested(now: t0)
        let a = token("a", lifetime: 3600)
        m.fetchSucceeded(a, now: t0, jitter: 0)
        // refresh ahead = max(300, 15% of 3600 = 540) = 540 s before expiry
        #expect(m.tokenRequested(now: t0.addingTimeInterval(3059)) == .use(a))
        #expect(m.tokenRequested(now: t0.addingTimeInterval(3060)) == .useAndRefresh(a))
        #expect(m.tokenRequested(now: t0.addingTimeInterval(3061)) == .use(a))  // one refresh in flight
        m.fetchSucceeded(token("b", lifetime: 7200), now: t0.addingTimeInterval(3062), jitter: 0)
        #expect(m.tokenRequested(now: t0.addingTimeInterval(3063)) == .use(token("b", lifetime: 7200)))
    }

    @Test func failedRefreshKeepsServingTheValidTokenButNeverAnExpiredOne() {
        var m = TokenCacheStateMachine()
        _ = m.tokenRequested(now: t0)
        let a = token("a", lifetime: 3600)
        m.fetchSucceeded(a, now: t0, jitter: 0)
        #expect(m.tokenRequested(now: t0.addingTimeInterval(3100)) == .useAndRefresh(a))
        #expect(m.fetchFailed(now: t0.addingTimeInterval(3101)) == a)
        #expect(m.tokenRequested(now: t0.addingTimeInterval(3102)) == .use(a))  // retry waits 5 s
        #expect(m.tokenRequested(now: t0.addingTimeInterval(3106)) == .useAndRefresh(a))
        _ = m.fetchFailed(now: t0.addingTimeInterval(3107))
        // 60 s before expiry the token is no longer handed out: callers wait for a fetch instead.
        #expect(m.tokenRequested(now: t0.addingTimeInterval(3541)) == .fetchAndWait)
        #expect(m.fetchFailed(now: t0.addingTimeInterval(3542)) == nil)
    }

    @Test func jitterMovesTheRefreshEarlierAndInvalidateDropsTheToken() {
        var m = TokenCacheStateMachine()
        _ = m.tokenRequested(now: t0)
        let a = token("a", lifetime: 3600)
        m.fetchSucceeded(a, now: t0, jitter: 1)  // 540 * 1.5 = 810 s ahead
        #expect(m.tokenRequested(now: t0.addingTimeInterval(2789)) == .use(a))
        #expect(m.tokenRequested(now: t0.addingTimeInterval(2790)) == .useAndRefresh(a))
        m.fetchSucceeded(a, now: t0.addingTimeInterval(2790), jitter: 0)
        m.invalidate("other")
        #expect(m.tokenRequested(now: t0.addingTimeInterval(2791)) != .fetchAndWait)
        m.invalidate("a")
        #expect(m.tokenRequested(now: t0.addingTimeInterval(2791)) == .fetchAndWait)
    }

    @Test func shortLivedTokensRefreshBeforeTheyStopBeingHandedOut() {
        var m = TokenCacheStateMachine()
        _ = m.tokenRequested(now: t0)
        let a = token("a", lifetime: 200)  // shorter than the 300 s refresh lead
        m.fetchSucceeded(a, now: t0, jitter: 0)
        #expect(m.tokenRequested(now: t0) == .useAndRefresh(a))
    }
}

@Suite struct TokenCacheTests {
    @Test func nearExpiryIsRefreshedBeforeCallersSeeAnExpiredToken() async throws {
        let clock = ManualWallClock(Date(timeIntervalSince1970: 50_000))
        let fetches = CallLog()
        let fetchTimes = TimeLog()
        let cache = TokenCache<String>(clock: clock, jitter: { 0 }) { _, _ in
            fetches.record(true)
            fetchTimes.record(clock.now)
            return AccessToken(token: "t\(fetches.all.count)", expiresOn: clock.now.addingTimeInterval(3600))
        }
        let deadline = { clock.now.addingTimeInterval(30) }
        #expect(try await cache.token(for: "k", deadline: deadline()).token == "t1")
        var seen: [AccessToken] = []
        // Walk through two lifetimes in 60 s steps: every token handed out has ≥ 60 s left.
        for _ in 0..<120 {
            clock.advance(by: 60)
            let token = try await cache.token(for: "k", deadline: deadline())
            #expect(token.expiresOn.timeIntervalSince(clock.now) >= 60)
            seen.append(token)
            // A token inside its refresh window (540 s before expiry) starts a fetch in the
            // background. Let that fetch land before the clock moves on, so the time it records is
            // the one it started at; a yield alone left it behind by a step on a loaded machine.
            var spins = 0
            while try await cache.token(for: "k", deadline: deadline()).expiresOn.timeIntervalSince(clock.now) <= 540,
                spins < 100_000
            {
                await Task.yield()
                spins += 1
            }
            #expect(spins < 100_000, "the background refresh never landed")
        }
        #expect(Set(seen.map(\.token)).count >= 2)
        #expect(fetches.all.count <= 4)
        // Every refetch started ahead of time (540 s before expiry), so no caller ever waited for one.
        let times = fetchTimes.all
        for (previous, next) in zip(times, times.dropFirst()) {
            #expect(next.timeIntervalSince(previous) <= 3600 - 540)
        }
    }

    @Test("A token that arrives with less than the minimum validity (expires_in 0) is refused, to every waiter, not handed out")
    func tooShortATokenIsNeverHandedOut() async throws {
        let clock = ManualWallClock()
        let fetches = CallLog()
        let cache = TokenCache<String>(clock: clock, jitter: { 0 }) { _, _ in
            fetches.record(true)
            return AccessToken(token: "short", expiresOn: clock.now.addingTimeInterval(fetches.all.count == 1 ? 0 : 3600))
        }
        let error = await #expect(throws: AzureIdentityError.self) {
            _ = try await cache.token(for: "k", deadline: clock.now.addingTimeInterval(30))
        }
        guard case .malformedResponse(_, let detail)? = error else {
            Issue.record("handed out or failed otherwise: \(String(describing: error))")
            return
        }
        #expect(detail.contains("less than 60 s left"))
        // The next caller fetches again and gets a real one.
        clock.advance(by: 10)
        #expect(try await cache.token(for: "k", deadline: clock.now.addingTimeInterval(30)).expiresOn > clock.now.addingTimeInterval(60))
        #expect(fetches.all.count == 2)
    }

    @Test("A fetch begun before removeAll answers its own callers, and neither installs its token nor clears the fetch begun after it",
          .timeLimit(.minutes(1)))
    func aForgottenFetchDoesNotOverwriteTheOneAfterIt() async throws {
        let clock = ManualWallClock()
        let fetches = CallLog()
        let (gate, open) = AsyncStream.makeStream(of: Void.self)
        let cache = TokenCache<String>(clock: clock, jitter: { 0 }) { _, _ in
            fetches.record(true)
            let n = fetches.all.count
            if n == 1 { for await _ in gate { break } }  // the first fetch is slow
            return AccessToken(token: "t\(n)", expiresOn: clock.now.addingTimeInterval(3600))
        }
        let deadline: @Sendable () -> Date = { clock.now.addingTimeInterval(600) }
        let first = Task { try await cache.token(for: "k", deadline: deadline()) }
        while fetches.all.isEmpty { await Task.yield() }
        // The vault refused the tenant's tokens: forget them while the first fetch is out.
        await cache.removeAll { _ in true }
        #expect(try await cache.token(for: "k", deadline: deadline()).token == "t2")
        open.yield()
        #expect(try await first.value.token == "t1", "its own caller gets what it fetched")
        #expect(try await cache.token(for: "k", deadline: deadline()).token == "t2", "the forgotten fetch replaced the newer token")
        #expect(fetches.all.count == 2)
    }

    @Test func concurrentColdCallersShareOneFetchAndFailuresReachThem() async throws {
        let clock = ManualWallClock()
        let fetches = CallLog()
        let cache = TokenCache<String>(clock: clock, jitter: { 0 }) { key, _ in
            fetches.record(true)
            await Task.yield()
            if key == "bad" { throw AzureIdentityError.malformedResponse(service: "test", detail: "no") }
            return AccessToken(token: key, expiresOn: clock.now.addingTimeInterval(3600))
        }
        let tokens = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<50 { group.addTask { try await cache.token(for: "k", deadline: clock.now.addingTimeInterval(120)).token } }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(tokens == Array(repeating: "k", count: 50))
        #expect(fetches.all.count == 1)
        await #expect(throws: AzureIdentityError.malformedResponse(service: "test", detail: "no")) {
            _ = try await cache.token(for: "bad", deadline: clock.now.addingTimeInterval(120))
        }
    }
}

@Suite struct ConcurrencyGateTests {
    @Test("A caller queued for an IMDS slot leaves at its deadline or its cancellation, and takes no slot from those behind it",
          .timeLimit(.minutes(1)))
    func queuedCallersLeaveAtTheirDeadlineOrCancellation() async throws {
        let gate = ConcurrencyGate(limit: 1, perSecond: 1_000)
        let clock = SystemWallClock()
        let (started, startedSink) = AsyncStream.makeStream(of: Void.self)
        let (release, releaseSink) = AsyncStream.makeStream(of: Void.self)
        // The one slot is held by a slow request.
        let holder = Task {
            try await gate.run(clock: clock, deadline: Date().addingTimeInterval(600)) {
                startedSink.yield()
                for await _ in release { break }
            }
        }
        var startedIterator = started.makeAsyncIterator()
        await startedIterator.next()

        // A caller with 0.2 s left gives up at its deadline, not when the holder is done.
        let began = ContinuousClock.now
        await #expect(throws: AzureIdentityError.deadlineExceeded(lastFailure: "waiting for an IMDS slot (5 requests at once)")) {
            try await gate.run(clock: clock, deadline: Date().addingTimeInterval(0.2)) {}
        }
        #expect(ContinuousClock.now - began < .seconds(30), "it waited for the holder")

        // A cancelled caller leaves the queue at once.
        let cancelled = Task { try await gate.run(clock: clock, deadline: Date().addingTimeInterval(600)) { Issue.record("a cancelled caller ran") } }
        cancelled.cancel()
        await #expect(throws: CancellationError.self) { try await cancelled.value }

        // Neither kept a place: once the holder is done, the next caller runs at once.
        releaseSink.yield()
        try await holder.value
        #expect(try await gate.run(clock: clock, deadline: Date().addingTimeInterval(5)) { "ran" } == "ran")
    }
}

@Suite struct ClassificationTests {
    @Test(arguments: [
        (70021, "invalid_request", 400, AADSTSError.Kind.noMatchingFederatedCredential, true, AADSTSError.Responsible.sre),
        (700016, "unauthorized_client", 400, .applicationNotInTenant, false, .customer),
        (7000112, "unauthorized_client", 400, .applicationDisabled, false, .customer),
        (700024, "invalid_client", 401, .assertionExpired, false, .sre),
        (90002, "invalid_tenant", 400, .unknownTenant, false, .onboarding),
        (53003, "invalid_grant", 400, .conditionalAccess, false, .customer),
        (7000215, "invalid_client", 401, .invalidClient, false, .sre),
        (7002138, "invalid_client", 401, .invalidClient, false, .sre),  // subject case differs: fixed by nobody's waiting
        (90055, "temporarily_unavailable", 429, .throttledOrUnavailable, true, .nobody),
        (500011, "invalid_resource", 400, .invalidScope, false, .onboarding),
    ])
    func aadstsByCode(_ code: Int, _ error: String, _ status: Int, _ kind: AADSTSError.Kind, _ retryable: Bool, _ who: AADSTSError.Responsible) {
        let e = AADSTSError(httpStatus: status, error: error, code: code, serviceDescription: "descriptions are never read")
        #expect(e.kind == kind)
        #expect(e.isRetryable == retryable)
        #expect(e.responsible == who)
        // The customer's own decisions stop service for the tenant; nothing else does.
        #expect(e.isCustomerRefusal == [.applicationNotInTenant, .applicationDisabled, .conditionalAccess].contains(kind))
    }

    @Test func aadstsWithoutACodeFallsBackOnErrorAndStatus() {
        #expect(AADSTSError(httpStatus: 503, error: "x", code: nil, serviceDescription: "").kind == .throttledOrUnavailable)
        #expect(AADSTSError(httpStatus: 401, error: "invalid_client", code: nil, serviceDescription: "").kind == .invalidClient)
    }

    @Test(arguments: [
        (403, "Forbidden", Optional("ForbiddenByRbac"), KeyVaultError.Kind.forbiddenByRbac),
        (403, "Forbidden", "KeyDisabled", .keyDisabled),
        (403, "Forbidden", "KeyOperationForbidden", .keyOperationForbidden),
        (403, "Forbidden", "ForbiddenByPolicy", .forbiddenByPolicy),
        (403, "Forbidden", "ForbiddenByFirewall", .forbiddenByFirewall),
        (401, "Unauthorized", nil, .unauthorized),
        (404, "KeyNotFound", nil, .keyNotFound),
        (400, "BadParameter", nil, .badParameter),
        (429, "Throttled", nil, .throttled),
        (503, "ServiceUnavailable", nil, .serverError),
    ])
    func keyVaultByStatusAndInnerCode(_ status: Int, _ code: String, _ inner: String?, _ kind: KeyVaultError.Kind) {
        #expect(KeyVaultError.classify(status: status, code: code, innerCode: inner) == kind)
    }

    @Test func challengeParsing() throws {
        let azure = try #require(VaultChallenge(header: #"Bearer authorization="https://login.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47", resource="https://vault.azure.net""#))
        #expect(azure.tenantID == "72f988bf-86f1-41af-91ab-2d7cd011db47")
        #expect(azure.resource == "https://vault.azure.net")
        let scoped = try #require(VaultChallenge(header: #"Bearer authorization_uri="https://login.microsoftonline.com/t1", scope="https://managedhsm.azure.net/.default""#))
        #expect(scoped.tenantID == "t1")
        #expect(scoped.resource == "https://managedhsm.azure.net")
        // What the serving path asks a token for, by the key's vault: Managed HSM refuses a Key
        // Vault token, though onboarding's probe (which follows the challenge) would pass.
        #expect(AzureEnvironment.vaultTokenResource(forVaultURL: "https://contoso.managedhsm.azure.net") == "https://managedhsm.azure.net")
        #expect(AzureEnvironment.vaultTokenResource(forVaultURL: "https://CONTOSO.MANAGEDHSM.AZURE.NET/") == "https://managedhsm.azure.net")
        #expect(AzureEnvironment.vaultTokenResource(forVaultURL: "https://contoso.vault.azure.net") == "https://vault.azure.net")
        #expect(AzureEnvironment.vaultTokenResource(forVaultURL: "https://managedhsm.azure.net.evil.example") == "https://vault.azure.net")
        #expect(VaultChallenge(header: #"Basic realm="x""#) == nil)
        #expect(VaultChallenge(header: #"Bearer authorization="http://insecure/t", resource="r""#) == nil)
    }

    @Test func keyIDsParseFromKids() throws {
        let id = try #require(VaultKeyID(kid: "https://contoso.vault.azure.net/keys/cmk/78deebed173b48e48f55abf87ed4cf71"))
        #expect(id == VaultKeyID(vaultURL: "https://contoso.vault.azure.net/", name: "cmk", version: "78deebed173b48e48f55abf87ed4cf71"))
        #expect(id.vaultAuthority == "contoso.vault.azure.net:443")
        #expect(VaultKeyID(kid: "https://localhost:8443/keys/k")?.version == nil)
        #expect(VaultKeyID(kid: "https://localhost:8443/secrets/k") == nil)
    }

    @Test func environmentReadsFedbrokerVariables() {
        let e = AzureEnvironment.fromEnvironment(["FEDBROKER_IMDS_URL": "http://127.0.0.1:1", "FEDBROKER_APP_CLIENT_ID": "app", "FEDBROKER_CA_BUNDLE": ""])
        #expect(e.imdsURL == "http://127.0.0.1:1")
        #expect(e.applicationClientID == "app")
        #expect(e.caBundlePath == nil)
        #expect(e.authorityURL == "https://login.microsoftonline.com")
    }
}

/// Records times from concurrent code.
final class TimeLog: Sendable {
    private let times = Synchronization.Mutex<[Date]>([])
    func record(_ value: Date) { times.withLock { $0.append(value) } }
    var all: [Date] { times.withLock { $0 } }
}

import Synchronization
