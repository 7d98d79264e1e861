@testable import AzureEmulator
import FedBrokerCore
import FedBrokerTestSupport
import Foundation
import Testing

/// A user-assigned managed identity with FICs of its own (AKS workload identity): a service-account
/// token from a trusted cluster issuer is exchanged at the token endpoint for the identity's token.
@Suite struct ManagedIdentityFederationTests {
    static let serviceAccount = ServiceAccountIssuer.subject(namespace: "fedbroker", serviceAccount: "broker")
    static let exchangeScope = "api://AzureADTokenExchange/.default"

    /// The token's claims, unverified.
    static func claims(_ token: String) -> [String: Any] {
        let parts = token.split(separator: ".")
        guard parts.count == 3, let bytes = Base64URL.decode(String(parts[1])) else { return [:] }
        return (try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any]) ?? [:]
    }

    @Test("a FIC added through the control API lets the identity get exactly its IMDS token, which the application's FIC accepts")
    func serviceAccountTokenBecomesTheIdentitysToken() async throws {
        try await withEmulator { h in
            let cluster = try ServiceAccountIssuer()
            try cluster.register(with: h.state)
            let mi = h.scenario.managedIdentities[0]
            let added = try await h.json(
                .POST, "\(h.endpoints.control)/control/managed-identities/\(mi.clientId)/federated-credentials",
                #"{"name":"aks-fedbroker","issuer":"\#(cluster.issuer)","subject":"\#(Self.serviceAccount)","audiences":["api://AzureADTokenExchange"]}"#)
            #expect(added.status == 201, "\(added.body)")
            #expect(added.json["subject"] as? String == Self.serviceAccount)

            let reply = try await h.exchange(
                tenant: h.scenario.isvTenantID, assertion: try cluster.token(subject: Self.serviceAccount, issuedAt: h.clock.now),
                clientID: mi.clientId, scope: Self.exchangeScope)
            #expect(reply.status == 200, "\(reply.body)")
            let lifetime = h.state.read { $0.settings.managedIdentityTokenLifetimeSeconds }
            #expect(reply.json["expires_in"] as? Int == Int(lifetime - 1))
            let token = try #require(reply.json["access_token"] as? String)
            let claims = Self.claims(token)
            let fromIMDS = Self.claims(try await h.assertion(for: mi.clientId))
            for name in ["aud", "iss", "sub", "oid", "tid", "appid", "azp", "xms_mirid", "idtyp", "ver"] {
                #expect(claims[name] as? String == fromIMDS[name] as? String, "\(name)")
            }
            #expect(claims["aud"] as? String == "api://AzureADTokenExchange")
            #expect(claims["sub"] as? String == mi.principalId)
            #expect((claims["exp"] as? Int).map { $0 - (claims["iat"] as? Int ?? 0) } == Int(lifetime))

            // The application's FIC for the identity (the slot) matches it like the IMDS token.
            let vault = try await h.exchange(tenant: h.scenario.customers[0].tenantID, assertion: token)
            #expect(vault.status == 200, "\(vault.body)")
        }
    }

    @Test("refusals: no matching FIC (70021), another tenant (700016), another resource (70011), unknown issuer, expiry, propagation")
    func refusals() async throws {
        try await withEmulator { h in
            let cluster = try ServiceAccountIssuer()
            try cluster.register(with: h.state)
            let mi = h.scenario.managedIdentities[0]
            let isv = h.scenario.isvTenantID
            let trusted = try cluster.token(subject: Self.serviceAccount, issuedAt: h.clock.now)

            // No FIC on the identity yet.
            let none = try await h.exchange(tenant: isv, assertion: trusted, clientID: mi.clientId, scope: Self.exchangeScope)
            #expect(none.status == 400)
            #expect(none.aadsts == 70021)

            try h.state.addManagedIdentityFederatedCredential(
                clientID: mi.clientId, name: "aks", issuer: cluster.issuer, subject: Self.serviceAccount)
            let other = ServiceAccountIssuer.subject(namespace: "default", serviceAccount: "broker")
            let wrongSubject = try await h.exchange(
                tenant: isv, assertion: try cluster.token(subject: other, issuedAt: h.clock.now), clientID: mi.clientId,
                scope: Self.exchangeScope)
            #expect(wrongSubject.aadsts == 70021)
            #expect((wrongSubject.json["error_description"] as? String)?.contains("Assertion Subject: '\(other)'") == true)

            let elsewhere = try await h.exchange(
                tenant: h.scenario.customers[0].tenantID, assertion: trusted, clientID: mi.clientId, scope: Self.exchangeScope)
            #expect(elsewhere.aadsts == 700016)
            let unknownTenant = try await h.exchange(
                tenant: UUID().uuidString.lowercased(), assertion: trusted, clientID: mi.clientId, scope: Self.exchangeScope)
            #expect(unknownTenant.aadsts == 90002)
            let vaultScope = try await h.exchange(tenant: isv, assertion: trusted, clientID: mi.clientId)
            #expect(vaultScope.aadsts == 70011)

            let stranger = try ServiceAccountIssuer()  // same shape, not registered
            try h.state.addManagedIdentityFederatedCredential(
                clientID: mi.clientId, name: "stranger", issuer: stranger.issuer, subject: Self.serviceAccount)
            let unregistered = try await h.exchange(
                tenant: isv, assertion: try stranger.token(subject: Self.serviceAccount, issuedAt: h.clock.now), clientID: mi.clientId,
                scope: Self.exchangeScope)
            #expect(unregistered.aadsts == 700027)

            let expired = try cluster.token(subject: Self.serviceAccount, issuedAt: h.clock.now.addingTimeInterval(-7200), lifetime: 3600)
            #expect(try await h.exchange(tenant: isv, assertion: expired, clientID: mi.clientId, scope: Self.exchangeScope).aadsts == 700024)

            // A new FIC on the identity takes the propagation delay to count, as an application's does.
            h.state.updateSettings { $0.ficPropagationSeconds = 60 }
            let second = h.scenario.managedIdentities[1]
            try h.state.addManagedIdentityFederatedCredential(
                clientID: second.clientId, name: "aks", issuer: cluster.issuer, subject: Self.serviceAccount)
            #expect(try await h.exchange(tenant: isv, assertion: trusted, clientID: second.clientId, scope: Self.exchangeScope).aadsts == 70021)
            h.clock.advance(by: 61)
            let fresh = try cluster.token(subject: Self.serviceAccount, issuedAt: h.clock.now)
            #expect(try await h.exchange(tenant: isv, assertion: fresh, clientID: second.clientId, scope: Self.exchangeScope).status == 200)
        }
    }

    @Test("the control API applies ARM's rules to an identity's FICs and lists them in the state")
    func controlRules() async throws {
        try await withEmulator { h in
            let mi = h.scenario.managedIdentities[0]
            let url = "\(h.endpoints.control)/control/managed-identities/\(mi.clientId)/federated-credentials"
            let fic = #"{"name":"aks","issuer":"https://oidc.test/","subject":"system:serviceaccount:a:b"}"#
            #expect(try await h.json(.POST, url, fic).status == 201)
            let sameIssuerSubject = try await h.json(
                .POST, url, #"{"name":"aks-2","issuer":"https://oidc.test/","subject":"system:serviceaccount:a:b"}"#)
            #expect(sameIssuerSubject.status == 400)
            #expect(try await h.json(.POST, url, fic.replacingOccurrences(of: "system:serviceaccount:a:b", with: "x")).status == 409)
            let twoAudiences = try await h.json(
                .POST, url, #"{"name":"aks-3","issuer":"https://oidc.test/","subject":"s","audiences":["a","b"]}"#)
            #expect(twoAudiences.status == 400)
            #expect(try await h.json(.POST, url, #"{"name":"-bad","issuer":"https://oidc.test/","subject":"s2"}"#).status == 400)
            let missing = "\(h.endpoints.control)/control/managed-identities/\(UUID().uuidString.lowercased())/federated-credentials"
            #expect(try await h.json(.POST, missing, fic).status == 404)

            let state = try await h.send(.GET, "\(h.endpoints.control)/control/state")
            let identities = try #require(state.json["managedIdentities"] as? [[String: Any]])
            let listed = identities.first { $0["clientId"] as? String == mi.clientId }?["federatedIdentityCredentials"] as? [[String: Any]]
            #expect(listed?.map { $0["name"] as? String } == ["aks"])
        }
    }

    @Test("an identity saved before identities had FICs loads with none")
    func oldStateDecodes() throws {
        let json = #"{"clientId":"c","principalId":"p","tenantId":"t","name":"n","resourceId":"r","attached":true}"#
        let identity = try JSONDecoder().decode(Directory.ManagedIdentity.self, from: Data(json.utf8))
        #expect(identity.clientId == "c")
        #expect(identity.federatedCredentials.isEmpty)
        var withFIC = identity
        withFIC.federatedCredentials = [.init(
            id: "i", name: "aks", issuer: "https://oidc.test/", subject: "s", audiences: ["api://AzureADTokenExchange"], description: nil,
            effectiveFrom: Date(timeIntervalSince1970: 0), removedFrom: nil)]
        let roundTripped = try JSONDecoder().decode(Directory.ManagedIdentity.self, from: JSONEncoder().encode(withFIC))
        #expect(roundTripped.federatedCredentials.map(\.subject) == ["s"])
    }
}
