import AzureEmulator
@testable import AzureIdentity
import FedBrokerCore
import Foundation
@testable import KeyVault
import Testing

/// The identity chain against the emulator over real sockets (HTTP for IMDS, TLS for the rest).
@Suite struct IdentityChainTests {
    @Test func fullChainForTwoTenantsThroughTwoFICs() async throws {
        try await withClients { f in
            for index in 0..<2 {
                let tokens = f.tokens(customer: index)
                let bundle = try await f.vault.getKey(f.key(index), token: tokens, deadline: f.deadline()).value
                #expect(bundle.keySizeBits == 3072)
                #expect(bundle.purgeProtected)
                let dek = (0..<32).map { _ in UInt8.random(in: 0...255) }
                let wrapped = try await f.vault.wrapKey(f.key(index), plaintext: dek, token: tokens, deadline: f.deadline())
                #expect(wrapped.kid == bundle.kid)
                #expect(!wrapped.clientRequestID.isEmpty)
                let unwrapped = try await f.vault.unwrapKey(try #require(VaultKeyID(kid: wrapped.kid)), wrapped: wrapped.value, token: tokens, deadline: f.deadline())
                #expect(unwrapped.value == dek)
                #expect(unwrapped.clientRequestID != wrapped.clientRequestID)
            }
            // One assertion per slot, one exchange per tenant: everything else came from the caches.
            #expect(f.counter("imds.token") == 2)
            #expect(f.counter("entra.token") == 2)
            #expect(f.counter("imds.token.\(f.scenario.managedIdentities[0].clientId)") == 1)
            #expect(f.counter("entra.token.\(f.scenario.customers[1].tenantID)") == 1)
        }
    }

    @Test func identityWithoutFICFailsAtOnceWithATyped70021() async throws {
        try await withClients { f in
            let stranger = try f.state.createManagedIdentity(tenantID: f.scenario.isvTenantID, name: "no-fic")
            let start = f.clock.now
            let error = await #expect(throws: AzureIdentityError.self) {
                _ = try await f.provider.token(
                    tenantID: f.scenario.customers[0].tenantID, source: f.source(clientID: stranger.clientId),
                    resource: "https://vault.azure.net", deadline: f.deadline(120))
            }
            guard case .entra(let aad) = error else { Issue.record("not an Entra error: \(String(describing: error))"); return }
            #expect(aad.code == 70021)
            #expect(aad.kind == .noMatchingFederatedCredential)
            #expect(aad.responsible == .sre)
            // No FIC is propagating for this identity: a configuration error, not worth a retry.
            #expect(f.clock.now == start)
            #expect(f.counter("entra.token") == 1)
        }
    }

    @Test func ficAddedWithPropagationDelaySucceedsAfterTheDelayInsideTheDeadline() async throws {
        try await withClients { f in
            f.state.updateSettings { $0.ficPropagationSeconds = 45 }
            let identity = try f.state.createManagedIdentity(tenantID: f.scenario.isvTenantID, name: "slot-3")
            try f.state.trust(identity: identity, appID: f.scenario.appClientID, name: "slot-3")
            let start = f.clock.now
            // The slot was just created: its FIC may propagate for up to ten minutes.
            let token = try await f.provider.token(
                tenantID: f.scenario.customers[0].tenantID,
                source: f.source(clientID: identity.clientId, propagatingUntil: f.clock.now.addingTimeInterval(600)),
                resource: "https://vault.azure.net", deadline: f.deadline(120))
            #expect(!token.token.isEmpty)
            #expect(f.clock.now.timeIntervalSince(start) >= 45)
            #expect(f.counter("entra.token") >= 2)
            #expect(f.counter("imds.token.\(identity.clientId)") == 1)  // the assertion was reused across retries
        }
    }

    @Test func unconsentedTenantIs700016AndNotRetried() async throws {
        try await withClients { f in
            let tenant = try f.state.createTenant(displayName: "Unconsented")
            let error = await #expect(throws: AzureIdentityError.self) {
                _ = try await f.provider.token(tenantID: tenant.id, source: f.source(0), resource: "https://vault.azure.net", deadline: f.deadline())
            }
            guard case .entra(let aad) = error else { Issue.record("\(String(describing: error))"); return }
            #expect(aad.code == 700016)
            #expect(aad.kind == .applicationNotInTenant)
            #expect(aad.isCustomerRefusal)
            #expect(!aad.isRetryable)
            #expect(f.counter("entra.token.\(tenant.id)") == 1)
        }
    }

    @Test func missingRoleIsForbiddenByRbacAndARevocation() async throws {
        try await withClients { f in
            let error = await #expect(throws: KeyVaultError.self) {
                _ = try await f.vault.unwrapKey(f.key(0, name: f.scenario.ungrantedKeyName), wrapped: Array(repeating: 1, count: 384),
                                                token: f.tokens(customer: 0), deadline: f.deadline())
            }
            #expect(error?.kind == .forbiddenByRbac)
            #expect(error?.isCustomerRevocation == true)
            #expect(KeyVaultError(kind: .unauthorized, clientRequestID: "c").isCustomerRevocation == false, "a 401 is the broker's token trouble")
            #expect(error?.isRetryable == false)
            #expect(error?.requestID != nil)
        }
    }

    @Test func disabledKeyRefusesUnwrap() async throws {
        try await withClients { f in
            let tokens = f.tokens(customer: 1)
            let wrapped = try await f.vault.wrapKey(f.key(1), plaintext: [1, 2, 3], token: tokens, deadline: f.deadline())
            try f.state.updateKey(vault: f.scenario.customers[1].vaultName, name: "cmk", enabled: false)
            let error = await #expect(throws: KeyVaultError.self) {
                _ = try await f.vault.unwrapKey(try #require(VaultKeyID(kid: wrapped.kid)), wrapped: wrapped.value, token: tokens, deadline: f.deadline())
            }
            #expect(error?.kind == .keyDisabled)
            #expect(error?.isCustomerRevocation == true)
        }
    }

    @Test func rotatedKeyStillUnwrapsWithTheOldVersion() async throws {
        try await withClients { f in
            let tokens = f.tokens(customer: 0)
            let old = try await f.vault.wrapKey(f.key(0), plaintext: [9, 8, 7], token: tokens, deadline: f.deadline())
            let rotated = try f.state.rotateKey(vault: f.scenario.customers[0].vaultName, name: "cmk")
            let new = try await f.vault.wrapKey(f.key(0), plaintext: [9, 8, 7], token: tokens, deadline: f.deadline())
            #expect(VaultKeyID(kid: new.kid)?.version == rotated.version)
            #expect(VaultKeyID(kid: old.kid)?.version != rotated.version)
            let unwrapped = try await f.vault.unwrapKey(try #require(VaultKeyID(kid: old.kid)), wrapped: old.value, token: tokens, deadline: f.deadline())
            #expect(unwrapped.value == [9, 8, 7])
        }
    }

    @Test func throttlingWithRetryAfterIsRetriedInsideTheDeadline() async throws {
        try await withClients { f in
            let tokens = f.tokens(customer: 0)
            _ = try await f.vault.getKey(f.key(0), token: tokens, deadline: f.deadline())  // warm the token cache
            f.state.faults.add(FaultRule(service: .keyvault, operation: "wrapkey", status: 429, remaining: 2, retryAfterSeconds: 3))
            let start = f.clock.now
            let wrapped = try await f.vault.wrapKey(f.key(0), plaintext: [1], token: tokens, deadline: f.deadline(30))
            #expect(!wrapped.value.isEmpty)
            #expect(f.clock.now.timeIntervalSince(start) >= 6)  // waited what the vault asked, twice

            // The same with a deadline shorter than Retry-After: a clean, typed, retryable failure, at once.
            f.state.faults.add(FaultRule(service: .keyvault, operation: "wrapkey", status: 429, remaining: 1, retryAfterSeconds: 10))
            let before = f.clock.now
            let error = await #expect(throws: KeyVaultError.self) {
                _ = try await f.vault.wrapKey(f.key(0), plaintext: [1], token: tokens, deadline: f.deadline(5))
            }
            #expect(error?.kind == .throttled)
            #expect(error?.retryAfter == 10)
            #expect(error?.isRetryable == true)
            #expect(f.clock.now == before)  // did not sleep towards a retry it could not make
        }
    }

    @Test func throttlingWithoutRetryAfterBacksOff() async throws {
        try await withClients { f in
            let tokens = f.tokens(customer: 1)
            _ = try await f.vault.getKey(f.key(1), token: tokens, deadline: f.deadline())
            f.state.faults.add(FaultRule(service: .keyvault, operation: "getkey", status: 429, remaining: 3))
            let start = f.clock.now
            _ = try await f.vault.getKey(f.key(1), token: tokens, deadline: f.deadline(60))
            let waited = f.clock.now.timeIntervalSince(start)
            // Azure's throttling guidance, 1 + 2 + 4 s: the vault's pause, not the retry loop's
            // 0.5 s backoff with jitter (which gave 1.75-3.5 s here).
            #expect(waited == 7)
            f.state.faults.add(FaultRule(service: .keyvault, operation: "getkey", status: 503, remaining: 10))
            let error = await #expect(throws: KeyVaultError.self) {
                _ = try await f.vault.getKey(f.key(1), token: tokens, deadline: f.deadline(2))
            }
            #expect(error?.kind == .serverError)
        }
    }

    @Test("A vault's 429 pauses every call to that vault, not only the one that got it; another vault is not paused; after the pause calls go again")
    func aThrottledVaultIsPausedForEveryCaller() async throws {
        try await withClients { f in
            let tokens = f.tokens(customer: 0)
            _ = try await f.vault.getKey(f.key(0), token: tokens, deadline: f.deadline())  // warm the token cache
            _ = try await f.vault.getKey(f.key(1), token: f.tokens(customer: 1), deadline: f.deadline())
            f.state.faults.add(FaultRule(service: .keyvault, operation: "wrapkey", status: 429, remaining: 1))
            // Deadlines shorter than the first pause (1 s without Retry-After): refused at once.
            let first = await #expect(throws: KeyVaultError.self) {
                _ = try await f.vault.wrapKey(f.key(0), plaintext: [1], token: tokens, deadline: f.clock.now.addingTimeInterval(0.5))
            }
            #expect(first?.kind == .throttled)
            #expect(first?.retryAfter == 1)
            // The fault is used up, so a call sent now would succeed: the second caller is refused
            // without being sent, with the pause's remaining time as its hint.
            let sent = f.counter("keyvault.wrapkey")
            f.clock.advance(by: 0.25)
            let second = await #expect(throws: KeyVaultError.self) {
                _ = try await f.vault.wrapKey(f.key(0), plaintext: [2], token: tokens, deadline: f.clock.now.addingTimeInterval(0.5))
            }
            #expect(second?.kind == .throttled)
            #expect(second?.retryAfter == 0.75)
            #expect(f.counter("keyvault.wrapkey") == sent, "sent to a vault that asked for a pause")
            // Another customer's vault is not paused.
            _ = try await f.vault.wrapKey(f.key(1), plaintext: [3], token: f.tokens(customer: 1), deadline: f.clock.now.addingTimeInterval(0.5))
            #expect(f.counter("keyvault.wrapkey") == sent + 1)
            // A caller whose deadline outlasts the pause waits it out, then is served.
            let before = f.clock.now
            let wrapped = try await f.vault.wrapKey(f.key(0), plaintext: [4], token: tokens, deadline: f.deadline())
            #expect(!wrapped.value.isEmpty)
            #expect(f.clock.now.timeIntervalSince(before) == 0.75)
            // Answered: the next 429 starts the backoff at its first step again.
            f.state.faults.add(FaultRule(service: .keyvault, operation: "wrapkey", status: 429, remaining: 1))
            let again = await #expect(throws: KeyVaultError.self) {
                _ = try await f.vault.wrapKey(f.key(0), plaintext: [5], token: tokens, deadline: f.clock.now.addingTimeInterval(0.5))
            }
            #expect(again?.retryAfter == 1)
        }
    }

    @Test func twoHundredConcurrentUnwrapsOnAColdCacheFetchOneAssertionAndOneToken() async throws {
        // The subject is the token path (one assertion, one token for 200 cold callers), not the
        // breaker: on a loaded CI machine some of 200 simultaneous TLS connections to the emulator
        // fail and are retried, and five of them in a row opened the default breaker (seen in CI).
        var configuration = KeyVaultClient.Configuration()
        configuration.allowedVaultHostSuffixes = ["localhost"]
        configuration.circuitBreaker = .init(failureThreshold: 1000, openSeconds: 5)
        try await withClients(vaultConfiguration: configuration) { f in
            // Wrap through the emulator's Swift API so the caches stay cold.
            let version = try #require(f.state.read { $0.vaults[f.scenario.customers[0].vaultName]?.keys["cmk"]?.latest })
            let publicKey = try RSAOAEPHelper.wrap([42, 42], derPrivateKey: version.privateKeyDER)
            let id = f.key(0, version: version.version)
            let tokens = f.tokens(customer: 0)
            let vault = f.vault
            let deadline = f.deadline()
            let results = try await withThrowingTaskGroup(of: [UInt8].self) { group in
                for _ in 0..<200 {
                    group.addTask { try await vault.unwrapKey(id, wrapped: publicKey, token: tokens, deadline: deadline).value }
                }
                return try await group.reduce(into: [[UInt8]]()) { $0.append($1) }
            }
            #expect(results.count == 200)
            #expect(results.allSatisfy { $0 == [42, 42] })
            let counters = try await f.controlCounters()
            #expect(counters["imds.token"] == 1)
            #expect(counters["entra.token"] == 1)
            // At least one each: a retried call after a reset may have reached the vault twice.
            #expect((counters["keyvault.unwrapkey"] ?? 0) >= 200)
        }
    }

    @Test func rejectedTokenIsRefreshedOnce() async throws {
        try await withClients { f in
            let good = f.tokens(customer: 0)
            let calls = CallLog()
            let flaky: KeyVaultClient.TokenProvider = { rejected, deadline in
                calls.record(rejected != nil)
                if rejected != nil { #expect(rejected == "not-a-token") }  // told which token failed
                return rejected != nil ? try await good(nil, deadline) : "not-a-token"
            }
            let bundle = try await f.vault.getKey(f.key(0), token: flaky, deadline: f.deadline())
            #expect(bundle.value.keySizeBits == 3072)
            #expect(calls.all == [false, true])
            // A 401 then throttling: the refresh happens once, not on every retry.
            let calls2 = CallLog()
            f.state.faults.add(FaultRule(service: .keyvault, operation: "getkey", status: 429, remaining: 3))
            let again: KeyVaultClient.TokenProvider = { rejected, deadline in
                calls2.record(rejected != nil)
                return calls2.all.count == 1 ? "not-a-token" : try await good(nil, deadline)
            }
            _ = try await f.vault.getKey(f.key(0), token: again, deadline: f.deadline(60))
            #expect(calls2.all.filter { $0 }.count <= 1)
            // A vault that keeps refusing: one refresh, then the 401 stands (typed, not retried).
            let error = await #expect(throws: KeyVaultError.self) {
                _ = try await f.vault.getKey(f.key(0), token: { _, _ in "still-not-a-token" }, deadline: f.deadline())
            }
            #expect(error?.kind == .unauthorized)
            #expect(error?.akvCode == "AKV10005")
        }
    }

    @Test func challengeNamesTheVaultTenant() async throws {
        try await withClients { f in
            let challenge = try await f.vault.challenge(vaultURL: f.scenario.customers[1].vaultURL, deadline: f.deadline())
            #expect(challenge.tenantID == f.scenario.customers[1].tenantID)
            #expect(challenge.resource == "https://vault.azure.net")
        }
    }

    @Test func localWrapUsesTheCachedPublicKeyAndUnwrapsRemotely() async throws {
        try await withClients { f in
            let tokens = f.tokens(customer: 0)
            let first = try await f.vault.wrapKeyLocally(f.key(0), plaintext: [5, 5], token: tokens, deadline: f.deadline())
            let second = try await f.vault.wrapKeyLocally(f.key(0), plaintext: [6, 6], token: tokens, deadline: f.deadline())
            #expect(first.local && second.local)
            #expect(f.counter("keyvault.getkey") == 1)  // fetched once, then cached
            #expect(f.counter("keyvault.wrapkey") == 0)
            let unwrapped = try await f.vault.unwrapKey(try #require(VaultKeyID(kid: second.kid)), wrapped: second.value, token: tokens, deadline: f.deadline())
            #expect(unwrapped.value == [6, 6])
        }
    }

    @Test func clientBudgetKeepsUnderTheVaultsLimitInsteadOfProvoking429s() async throws {
        var configuration = KeyVaultClient.Configuration()
        configuration.budget = 4
        configuration.budgetWindowSeconds = 10
        configuration.allowedVaultHostSuffixes = ["localhost"]
        try await withClients(vaultConfiguration: configuration) { f in
            try f.state.setVaultBudget(vault: f.scenario.customers[0].vaultName, budget: 4, windowSeconds: 10)
            let tokens = f.tokens(customer: 0)
            let start = f.clock.now
            for _ in 0..<9 { _ = try await f.vault.getKey(f.key(0), token: tokens, deadline: f.deadline(60)) }
            #expect(f.counter("keyvault.throttled") == 0)
            #expect(f.counter("keyvault.getkey") == 9)
            #expect(f.clock.now.timeIntervalSince(start) >= 20)  // 9 calls at 4 per 10 s: two waits
            // When even waiting would miss the deadline, it fails fast and says why.
            var before = f.clock.now
            let error = await #expect(throws: KeyVaultError.self) {
                for _ in 0..<5 {
                    before = f.clock.now
                    _ = try await f.vault.getKey(f.key(0), token: tokens, deadline: f.deadline(1))
                }
            }
            #expect(error?.kind == .budgetExhausted)
            #expect(f.clock.now == before)  // failed at once, without waiting or retrying
        }
    }

    @Test func imdsTransientFailuresAreRetriedAndDesignErrorsAreNot() async throws {
        try await withClients { f in
            // IMDS updating: 410 for a while. Steady 10 s waits carry the source through 70 s of it.
            f.state.faults.add(FaultRule(service: .imds, status: 410, remaining: 7))
            let start = f.clock.now
            let assertion = try await f.source(0).assertion(deadline: f.deadline(120))
            #expect(assertion.expiresOn > f.clock.now)
            #expect(f.clock.now.timeIntervalSince(start) >= 60)  // six steady 10 s waits at least
            #expect(f.state.faults.all.isEmpty)  // all seven 410s were waited out
            let unknown = f.source(clientID: UUID().uuidString.lowercased())
            let beforeUnknown = f.clock.now
            let error = await #expect(throws: AzureIdentityError.self) { _ = try await unknown.assertion(deadline: f.deadline(120)) }
            #expect(error == .imds(status: 400, error: "invalid_request", description: "Identity not found"))
            #expect(f.clock.now == beforeUnknown)  // a 400 is a design-time error: no backoff, no retry
        }
    }

    @Test func federatedTokenFileIsReadForEveryAssertion() async throws {
        try await withClients { f in
            let issuer = AKSIssuer()
            f.state.registerExternalIssuer(issuer.issuer, jwks: try await issuer.jwks())
            try f.state.addFederatedCredential(appID: f.scenario.appClientID, name: "aks", issuer: issuer.issuer, subject: "system:serviceaccount:fedbroker:broker")
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("token-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: path) }
            let now = f.clock.unixSeconds
            try (try await issuer.token(subject: "system:serviceaccount:fedbroker:broker", issuedAt: now, lifetime: 3600)).write(toFile: path, atomically: true, encoding: .utf8)
            let source = FederatedTokenFileAssertionSource(path: path, clock: f.clock)
            let token = try await f.exchange.exchange(
                tenantID: f.scenario.customers[0].tenantID, resource: "https://vault.azure.net",
                assertion: try await source.assertion(deadline: f.deadline()).token, deadline: f.deadline())
            #expect(!token.token.isEmpty)
            // Rotated by the kubelet: the next assertion is the new file's.
            let rotated = try await issuer.token(subject: "system:serviceaccount:fedbroker:broker", issuedAt: now + 60, lifetime: 3600)
            try rotated.write(toFile: path, atomically: true, encoding: .utf8)
            #expect(try await source.assertion(deadline: f.deadline()).token == rotated)
            // Expired and never rotated: a clear error, not a doomed exchange.
            f.clock.advance(by: 4000)
            let expired = await #expect(throws: AzureIdentityError.self) { _ = try await source.assertion(deadline: f.deadline()) }
            #expect(expired?.code == "TOKEN_FILE")
            guard case .tokenFile(let expiredPath, _)? = expired else {
                Issue.record("expected a token-file error, got \(String(describing: expired))")
                return
            }
            #expect(expiredPath == path)
        }
    }
}

/// Records calls from concurrent code.
final class CallLog: Sendable {
    private let calls = Synchronization.Mutex<[Bool]>([])
    func record(_ value: Bool) { calls.withLock { $0.append(value) } }
    var all: [Bool] { calls.withLock { $0 } }
}

import Synchronization
