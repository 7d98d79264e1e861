import AzureEmulator
@testable import AzureIdentity
import FedBrokerCore
import FedBrokerTestSupport
import Foundation
import Testing

/// `WorkloadIdentityAssertionSource` against the emulator: the service-account token file is
/// exchanged (hop 1) for the managed identity's own token, which the application's FIC trusts.
@Suite struct WorkloadIdentityAssertionSourceTests {
    static let serviceAccount = ServiceAccountIssuer.subject(namespace: "fedbroker", serviceAccount: "broker")

    /// A cluster issuer the emulator trusts, a FIC on managed identity 0 for its `fedbroker/broker`
    /// service account, and a token file path (removed afterwards).
    func withWorkloadIdentity(
        _ body: (ClientFixture, ServiceAccountIssuer, _ file: String, _ source: WorkloadIdentityAssertionSource) async throws -> Void
    ) async throws {
        try await withClients { f in
            let cluster = try ServiceAccountIssuer()
            try cluster.register(with: f.state)
            let identity = f.scenario.managedIdentities[0]
            try f.state.addManagedIdentityFederatedCredential(
                clientID: identity.clientId, name: "aks", issuer: cluster.issuer, subject: Self.serviceAccount)
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("sa-token-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: file) }
            let source = WorkloadIdentityAssertionSource(
                clientID: identity.clientId, tenantID: f.scenario.isvTenantID, tokenFile: file, authority: f.environment.authorityURL,
                httpClient: f.http, clock: f.clock, attemptTimeout: ClientFixture.attemptTimeout)
            try await body(f, cluster, file, source)
        }
    }

    @Test("the assertion is the identity's own token, as IMDS would give it, and the application's exchange accepts it")
    func theAssertionIsTheIdentitysToken() async throws {
        try await withWorkloadIdentity { f, cluster, file, source in
            let identity = f.scenario.managedIdentities[0]
            try cluster.token(subject: Self.serviceAccount, issuedAt: f.clock.now).write(toFile: file, atomically: true, encoding: .utf8)
            let assertion = try await source.assertion(deadline: f.deadline())
            #expect(source.identity == "wi:\(identity.clientId)")
            let claims = try #require(JWTPeek.claims(of: assertion.token))
            #expect(claims["aud"] as? String == tokenExchangeAudience)
            #expect(claims["iss"] as? String == "https://login.microsoftonline.com/\(f.scenario.isvTenantID)/v2.0")
            #expect(claims["sub"] as? String == identity.principalId)
            let lifetime = f.state.read { $0.settings.managedIdentityTokenLifetimeSeconds }
            #expect(abs(assertion.expiresOn.timeIntervalSince(f.clock.now) - Double(lifetime - 1)) < 2)
            // The same claims IMDS issues for the identity.
            let imds = try await f.source(0).assertion(deadline: f.deadline())
            let fromIMDS = try #require(JWTPeek.claims(of: imds.token))
            for name in ["aud", "iss", "sub", "oid", "tid", "appid", "azp", "xms_mirid", "idtyp", "ver"] {
                #expect(claims[name] as? String == fromIMDS[name] as? String, "\(name)")
            }
            #expect(f.counter("entra.token.mi.\(identity.clientId)") == 1)
            #expect(f.counter("imds.token.\(identity.clientId)") == 1)  // only the comparison above

            // Hop 2: the slot's FIC on the application trusts it, and the vault accepts the result.
            let tokens = f.provider.vaultTokenProvider(tenantID: f.scenario.customers[0].tenantID, source: source)
            let bundle = try await f.vault.getKey(f.key(0), token: tokens, deadline: f.deadline()).value
            #expect(bundle.keySizeBits == 3072)
        }
    }

    @Test("the file is read for every assertion: a rotated token is used, one the identity does not trust is refused at once")
    func theFileIsReadForEveryAssertion() async throws {
        try await withWorkloadIdentity { f, cluster, file, source in
            try cluster.token(subject: Self.serviceAccount, issuedAt: f.clock.now).write(toFile: file, atomically: true, encoding: .utf8)
            _ = try await source.assertion(deadline: f.deadline())
            let untrusted = ServiceAccountIssuer.subject(namespace: "default", serviceAccount: "default")
            try cluster.token(subject: untrusted, issuedAt: f.clock.now).write(toFile: file, atomically: true, encoding: .utf8)
            let before = f.clock.now
            let error = await #expect(throws: AzureIdentityError.self) { _ = try await source.assertion(deadline: f.deadline(120)) }
            guard case .isvTenant(let aad)? = error else {
                Issue.record("expected the ISV tenant's Entra refusal, got \(String(describing: error))")
                return
            }
            #expect(aad.code == 70021)
            #expect(aad.serviceDescription.contains("Assertion Subject: '\(untrusted)'"))
            #expect(f.clock.now == before)  // the identity's FIC is not fedbroker's to wait for: no retry
            // Rotated back to the trusted account: works again without a new source.
            try cluster.token(subject: Self.serviceAccount, issuedAt: f.clock.now).write(toFile: file, atomically: true, encoding: .utf8)
            #expect(try await source.assertion(deadline: f.deadline()).expiresOn > f.clock.now)
        }
    }

    @Test("an expired or missing token file is a token-file error, and nothing is sent to Entra")
    func expiredOrMissingFilesFailLocally() async throws {
        try await withWorkloadIdentity { f, cluster, file, source in
            let missing = await #expect(throws: AzureIdentityError.self) { _ = try await source.assertion(deadline: f.deadline()) }
            #expect(missing?.code == "TOKEN_FILE")
            try cluster.token(subject: Self.serviceAccount, issuedAt: f.clock.now, lifetime: 3600)
                .write(toFile: file, atomically: true, encoding: .utf8)
            f.clock.advance(by: 3601)
            let expired = await #expect(throws: AzureIdentityError.self) { _ = try await source.assertion(deadline: f.deadline()) }
            guard case .tokenFile(let path, let detail)? = expired else {
                Issue.record("expected a token-file error, got \(String(describing: expired))")
                return
            }
            #expect(path == file)
            #expect(detail.contains("expired"))
            #expect(f.counter("entra.token") == 0)
        }
    }

    @Test("an identity the ISV's tenant does not know (a wrong client id) is refused as the ISV tenant's trouble, never as a customer's")
    func unknownIdentityIsTheISVsTrouble() async throws {
        try await withWorkloadIdentity { f, cluster, file, _ in
            try cluster.token(subject: Self.serviceAccount, issuedAt: f.clock.now).write(toFile: file, atomically: true, encoding: .utf8)
            let source = WorkloadIdentityAssertionSource(
                clientID: UUID().uuidString.lowercased(), tenantID: f.scenario.isvTenantID, tokenFile: file,
                authority: f.environment.authorityURL, httpClient: f.http, clock: f.clock, attemptTimeout: ClientFixture.attemptTimeout)
            let error = await #expect(throws: AzureIdentityError.self) { _ = try await source.assertion(deadline: f.deadline(120)) }
            guard case .isvTenant(let aad)? = error else {
                Issue.record("expected the ISV tenant's Entra refusal, got \(String(describing: error))")
                return
            }
            // The same refusal from a customer's tenant means the customer removed the application:
            // exactly why it must not arrive as `.entra` from here.
            #expect(aad.isCustomerRefusal, "\(aad)")
            #expect(error?.description.contains("azure.isvTenantID") == true)
        }
    }

    @Test("without the ISV tenant a token file cannot be used: a token-file error naming azure.isvTenantID")
    func noISVTenant() async throws {
        try await withWorkloadIdentity { f, cluster, file, _ in
            try cluster.token(subject: Self.serviceAccount, issuedAt: f.clock.now).write(toFile: file, atomically: true, encoding: .utf8)
            let source = WorkloadIdentityAssertionSource(
                clientID: f.scenario.managedIdentities[0].clientId, tenantID: "", tokenFile: file, authority: f.environment.authorityURL,
                httpClient: f.http, clock: f.clock)
            let error = await #expect(throws: AzureIdentityError.self) { _ = try await source.assertion(deadline: f.deadline()) }
            #expect(error?.description.contains("azure.isvTenantID") == true)
            #expect(f.counter("entra.token") == 0)
        }
    }
}
