import CryptoExtras
@testable import AzureEmulator
import FedBrokerCore
import Foundation
import Testing

@Suite struct EntraTests {
    @Test func identityWithoutFICGets70021() async throws {
        try await withEmulator { h in
            let stranger = try h.state.createManagedIdentity(tenantID: h.scenario.isvTenantID, name: "no-fic")
            let reply = try await h.exchange(tenant: h.scenario.customers[0].tenantID, assertion: try await h.assertion(for: stranger.clientId))
            #expect(reply.status == 400)
            #expect(reply.errorCode == "invalid_request")
            #expect(reply.aadsts == 70021)
            let description = try #require(reply.json["error_description"] as? String)
            #expect(description.contains("Assertion Subject: '\(stranger.principalId)'"))
            // trace_id is the x-ms-request-id of the response
            #expect(reply.json["trace_id"] as? String == reply.headers.first(name: "x-ms-request-id"))
        }
    }

    @Test func unconsentedTenantGets700016AndUnknownTenant90002() async throws {
        try await withEmulator { h in
            let fresh = try h.state.createTenant(displayName: "Unconsented")
            let assertion = try await h.assertion(for: h.scenario.managedIdentities[0].clientId)
            let reply = try await h.exchange(tenant: fresh.id, assertion: assertion)
            #expect(reply.status == 400)
            #expect(reply.errorCode == "unauthorized_client")
            #expect(reply.aadsts == 700016)
            // Consent, then it works; remove the service principal, and it stops.
            try h.state.createServicePrincipal(tenantID: fresh.id, appID: h.scenario.appClientID)
            #expect(try await h.exchange(tenant: fresh.id, assertion: assertion).status == 200)
            try h.state.deleteServicePrincipal(tenantID: fresh.id, appID: h.scenario.appClientID)
            #expect(try await h.exchange(tenant: fresh.id, assertion: assertion).aadsts == 700016)

            let unknown = try await h.exchange(tenant: UUID().uuidString.lowercased(), assertion: assertion)
            #expect(unknown.status == 400)
            #expect(unknown.errorCode == "invalid_tenant")
            #expect(unknown.aadsts == 90002)
            // The domain name works in place of the id.
            #expect(try await h.exchange(tenant: "contoso.onmicrosoft.com", assertion: assertion).status == 200)
        }
    }

    @Test("A disabled service principal (the control API's PATCH) gets AADSTS7000112 as unauthorized_client; enabled again, a token")
    func disabledApplicationGets7000112() async throws {
        try await withEmulator { h in
            let customer = h.scenario.customers[0]
            let assertion = try await h.assertion(for: h.scenario.managedIdentities[0].clientId)
            let query = "tenantId=\(customer.tenantID)&appId=\(h.scenario.appClientID)"
            let disabled = try await h.json(.PATCH, "\(h.endpoints.control)/control/service-principals?\(query)", #"{"accountEnabled":false}"#)
            #expect(disabled.status == 200, "\(disabled.body)")
            let reply = try await h.exchange(tenant: customer.tenantID, assertion: assertion)
            #expect(reply.status == 400)
            #expect(reply.errorCode == "unauthorized_client")
            #expect(reply.aadsts == 7000112)
            let description = try #require(reply.json["error_description"] as? String)
            #expect(description.hasPrefix("AADSTS7000112: Application '\(h.scenario.appClientID)'("), "\(description)")
            #expect(description.contains(") is disabled.\r\nTrace ID: "))
            let state = try await h.send(.GET, "\(h.endpoints.control)/control/state")
            let principal = (state.json["servicePrincipals"] as? [[String: Any]])?.first {
                $0["tenantId"] as? String == customer.tenantID.lowercased() && $0["appId"] as? String == h.scenario.appClientID.lowercased()
            }
            #expect(principal?["accountEnabled"] as? Bool == false, "the state dump shows it")
            // Another tenant's service principal of the same application is not affected.
            #expect(try await h.exchange(tenant: h.scenario.customers[1].tenantID, assertion: assertion).status == 200)
            _ = try await h.json(.PATCH, "\(h.endpoints.control)/control/service-principals?\(query)", #"{"accountEnabled":true}"#)
            #expect(try await h.exchange(tenant: customer.tenantID, assertion: assertion).status == 200)
            let unknown = try await h.json(.PATCH, "\(h.endpoints.control)/control/service-principals?tenantId=\(UUID())&appId=\(h.scenario.appClientID)", #"{"accountEnabled":false}"#)
            #expect(unknown.status == 404)
        }
    }

    @Test func expiredAssertionGets700024() async throws {
        try await withEmulator { h in
            h.state.updateSettings { $0.managedIdentityTokenLifetimeSeconds = 3600 }
            let assertion = try await h.assertion(for: h.scenario.managedIdentities[0].clientId)
            h.clock.advance(by: 3600 + 301)  // past expiry and the five-minute skew
            let reply = try await h.exchange(tenant: h.scenario.customers[0].tenantID, assertion: assertion)
            #expect(reply.status == 401)
            #expect(reply.errorCode == "invalid_client")
            #expect(reply.aadsts == 700024)
        }
    }

    @Test func tamperedOrForeignAssertionsFailSignatureValidation() async throws {
        try await withEmulator { h in
            let assertion = try await h.assertion(for: h.scenario.managedIdentities[0].clientId)
            let parts = assertion.split(separator: ".").map(String.init)
            var payload = try #require(try JSONSerialization.jsonObject(with: Data(Base64URL.decode(parts[1])!)) as? [String: Any])
            payload["sub"] = h.scenario.managedIdentities[1].principalId
            let forged = [parts[0], Base64URL.encode(try JSONSerialization.data(withJSONObject: payload)), parts[2]].joined(separator: ".")
            let reply = try await h.exchange(tenant: h.scenario.customers[0].tenantID, assertion: forged)
            #expect(reply.status == 401)
            #expect(reply.aadsts == 700027)
            let junk = try await h.exchange(tenant: h.scenario.customers[0].tenantID, assertion: "not-a-jwt")
            #expect(junk.status == 400)
            #expect(junk.aadsts == 50027)
        }
    }

    @Test func scopeRules() async throws {
        try await withEmulator { h in
            let tenant = h.scenario.customers[0].tenantID
            let assertion = try await h.assertion(for: h.scenario.managedIdentities[0].clientId)
            let two = try await h.exchange(tenant: tenant, assertion: assertion, scope: "https://vault.azure.net/.default https://graph.microsoft.com/.default")
            #expect(two.status == 400)
            #expect(two.errorCode == "invalid_scope")
            #expect(two.aadsts == 70011)
            let noDefault = try await h.exchange(tenant: tenant, assertion: assertion, scope: "https://vault.azure.net/keys.read")
            #expect(noDefault.errorCode == "invalid_scope")
            let unknown = try await h.exchange(tenant: tenant, assertion: assertion, scope: "https://nothing.example/.default")
            #expect(unknown.status == 400)
            #expect(unknown.errorCode == "invalid_resource")
            #expect(unknown.aadsts == 500011)
            let hsm = try await h.exchange(tenant: tenant, assertion: assertion, scope: "https://managedhsm.azure.net/.default")
            #expect(hsm.status == 200)
            // A `claims` field (client capabilities) is accepted and ignored.
            let claims = try await h.exchange(tenant: tenant, assertion: assertion, extra: "&claims=%7B%22access_token%22%3A%7B%22xms_cc%22%3A%7B%22values%22%3A%5B%22CP1%22%5D%7D%7D%7D")
            #expect(claims.status == 200)
        }
    }

    @Test func conditionalAccessIsScriptable() async throws {
        try await withEmulator { h in
            let tenant = h.scenario.customers[1].tenantID
            h.state.setConditionalAccessBlock(tenantID: tenant, appID: h.scenario.appClientID, blocked: true)
            let reply = try await h.exchange(tenant: tenant, assertion: try await h.assertion(for: h.scenario.managedIdentities[1].clientId))
            #expect(reply.status == 400)
            #expect(reply.aadsts == 53003)
            h.state.setConditionalAccessBlock(tenantID: tenant, appID: h.scenario.appClientID, blocked: false)
            #expect(try await h.exchange(tenant: tenant, assertion: try await h.assertion(for: h.scenario.managedIdentities[1].clientId)).status == 200)
        }
    }

    @Test func missingParametersAndSecrets() async throws {
        try await withEmulator { h in
            let url = "\(h.endpoints.authority)/\(h.scenario.customers[0].tenantID)/oauth2/v2.0/token"
            let form = [("Content-Type", "application/x-www-form-urlencoded")]
            let noGrant = try await h.send(.POST, url, headers: form, body: "client_id=x&scope=https%3A%2F%2Fvault.azure.net%2F.default")
            #expect(noGrant.aadsts == 900144)
            let secret = try await h.send(.POST, url, headers: form, body: "grant_type=client_credentials&client_id=\(h.scenario.appClientID)&scope=https%3A%2F%2Fvault.azure.net%2F.default&client_secret=s3cr3t")
            #expect(secret.status == 401)
            #expect(secret.aadsts == 7000215)
            let nothing = try await h.send(.POST, url, headers: form, body: "grant_type=client_credentials&client_id=\(h.scenario.appClientID)&scope=https%3A%2F%2Fvault.azure.net%2F.default")
            #expect(nothing.status == 401)
            #expect(nothing.aadsts == 7000218)
            let password = try await h.send(.POST, url, headers: form, body: "grant_type=password&client_id=x")
            #expect(password.errorCode == "unsupported_grant_type")
        }
    }

    @Test func ficCreatedThroughGraphTakesEffectAfterThePropagationDelay() async throws {
        try await withEmulator { h in
            h.state.updateSettings { $0.ficPropagationSeconds = 120 }
            let mi = try h.state.createManagedIdentity(tenantID: h.scenario.isvTenantID, name: "slot-3")
            let graphToken = try await h.graphToken(through: h.scenario.managedIdentities[0].clientId)
            let created = try await h.json(
                .POST, "\(h.endpoints.graph)/v1.0/applications/\(h.scenario.appObjectID)/federatedIdentityCredentials",
                #"{"name":"slot-3","issuer":"https://login.microsoftonline.com/\#(h.scenario.isvTenantID)/v2.0","subject":"\#(mi.principalId)","audiences":["api://AzureADTokenExchange"]}"#,
                headers: [("Authorization", "Bearer \(graphToken)")])
            #expect(created.status == 201, "\(created.body)")
            let tenant = h.scenario.customers[0].tenantID
            #expect(try await h.exchange(tenant: tenant, assertion: try await h.assertion(for: mi.clientId)).aadsts == 70021)
            h.clock.advance(by: 119)
            #expect(try await h.exchange(tenant: tenant, assertion: try await h.assertion(for: mi.clientId)).aadsts == 70021)
            h.clock.advance(by: 1)
            #expect(try await h.exchange(tenant: tenant, assertion: try await h.assertion(for: mi.clientId)).status == 200)
        }
    }

    @Test func externalIssuerAssertionsAreCheckedAgainstTheirJWKS() async throws {
        try await withEmulator { h in
            // An AKS-style OIDC issuer whose key the emulator does not hold: unknown until registered.
            let issuer = "https://oidc.example.test/cluster-1/"
            // A key of its own, never one from the tests' pool the emulator's key may come from.
            let foreign = try await TokenAuthority(privateKeyDER: RSAKeyMaterial.spareKeyDER(bits: 2048))
            let now = h.clock.unixSeconds
            let token = try await foreign.sign(ExternalClaims(iss: issuer, sub: "system:serviceaccount:fedbroker:broker", aud: "api://AzureADTokenExchange", iat: now, nbf: now, exp: now + 3600))
            try h.state.addFederatedCredential(appID: h.scenario.appClientID, name: "aks", issuer: issuer, subject: "system:serviceaccount:fedbroker:broker")
            let tenant = h.scenario.customers[0].tenantID
            #expect(try await h.exchange(tenant: tenant, assertion: token).aadsts == 700027)
            h.state.registerExternalIssuer(issuer, jwks: foreign.jwks(issuer: nil).serialized())
            #expect(try await h.exchange(tenant: tenant, assertion: token).status == 200)
        }
    }
}

import JWTKit

struct ExternalClaims: JWTPayload {
    var iss: String
    var sub: String
    var aud: String
    var iat: Int64
    var nbf: Int64
    var exp: Int64
    func verify(using algorithm: some JWTAlgorithm) async throws {}
}

extension Harness {
    /// The ISV application's own Graph token, as the broker obtains it: the managed identity's
    /// assertion exchanged in the ISV tenant for `https://graph.microsoft.com/.default`.
    func graphToken(through clientID: String) async throws -> String {
        let reply = try await exchange(
            tenant: scenario.isvTenantID, assertion: try await assertion(for: clientID), scope: "https://graph.microsoft.com/.default")
        #expect(reply.status == 200, "\(reply.body)")
        return try #require(reply.json["access_token"] as? String)
    }

    /// A managed-identity token for Microsoft Graph straight from IMDS: the identity itself, not
    /// the application, so Graph lets it manage nothing.
    func managedIdentityGraphToken(_ clientID: String) async throws -> String {
        let reply = try await imds("api-version=2018-02-01&resource=https://graph.microsoft.com&client_id=\(clientID)")
        return try #require(reply.json["access_token"] as? String)
    }
}
