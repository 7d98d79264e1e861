@testable import AzureEmulator
import FedBrokerCore
import Foundation
import Testing

/// The whole chain over real sockets: IMDS token → client-assertion exchange in each customer
/// tenant → GET key → wrapkey → unwrapkey.
@Suite struct HappyPathTests {
    @Test func fullChainForBothCustomersThroughTwoFICs() async throws {
        try await withEmulator { h in
            for index in 0..<2 {
                let customer = h.scenario.customers[index]
                let mi = h.scenario.managedIdentities[index]

                let imds = try await h.imds("api-version=2018-02-01&resource=api://AzureADTokenExchange&client_id=\(mi.clientId)")
                #expect(imds.status == 200)
                #expect(imds.json["expires_in"] is String)  // IMDS sends every value as a string
                #expect(imds.json["expires_on"] is String)
                #expect(imds.json["client_id"] as? String == mi.clientId)
                #expect(imds.json["token_type"] as? String == "Bearer")
                let assertion = try #require(imds.json["access_token"] as? String)
                let miClaims = try #require(UnverifiedJWT(assertion)).claims
                #expect(miClaims.iss == "https://login.microsoftonline.com/\(h.scenario.isvTenantID)/v2.0")
                #expect(miClaims.sub == mi.principalId)
                #expect(miClaims.aud == ["api://AzureADTokenExchange"])

                let exchange = try await h.exchange(tenant: customer.tenantID, assertion: assertion)
                #expect(exchange.status == 200, "\(exchange.body)")
                #expect(exchange.json["expires_in"] as? Int == 3599)  // v2 sends a number
                #expect(exchange.json["token_type"] as? String == "Bearer")
                #expect(exchange.headers.first(name: "Cache-Control") == "no-store, no-cache")
                let token = try #require(exchange.json["access_token"] as? String)
                let claims = try #require(UnverifiedJWT(token)).claims
                #expect(claims.aud == ["https://vault.azure.net"])
                #expect(claims.iss == "https://sts.windows.net/\(customer.tenantID)/")
                #expect(claims.tid == customer.tenantID)
                #expect(claims.oid == customer.servicePrincipalObjectID)
                #expect(claims.appid == h.scenario.appClientID)

                let get = try await h.keyVault(.GET, vaultURL: customer.vaultURL, path: "/keys/\(customer.keyName)/", token: token, clientRequestID: "req-\(index)")
                #expect(get.status == 200, "\(get.body)")
                #expect(get.headers.first(name: "x-ms-client-request-id") == "req-\(index)")
                #expect(get.headers.first(name: "x-ms-request-id") != nil)
                #expect(get.headers.first(name: "x-ms-keyvault-service-version") != nil)
                #expect(get.headers.first(name: "x-ms-keyvault-rbac-assignment-id") != nil)
                #expect(get.headers.first(name: "Content-Type") == "application/json; charset=utf-8")
                let key = try #require(get.json["key"] as? [String: Any])
                let attributes = try #require(get.json["attributes"] as? [String: Any])
                #expect(key["kty"] as? String == "RSA")
                #expect(key["key_ops"] as? [String] == ["wrapKey", "unwrapKey"])
                #expect(Base64URL.decode(try #require(key["n"] as? String))?.count == 384)  // 3072 bits
                #expect(key["e"] as? String == "AQAB")
                #expect(attributes["recoveryLevel"] as? String == "Recoverable")  // purge protection on
                #expect(attributes["recoverableDays"] as? Int == 90)
                #expect(attributes["enabled"] as? Bool == true)
                #expect((get.json["tags"] as? [String: String])?["purpose"] == "fedbroker-cmk")
                let kid = try #require(key["kid"] as? String)

                // The kid is a URL: GET on it answers for the same version.
                let byKid = try await h.send(.GET, kid + "?api-version=7.4", headers: [("Authorization", "Bearer \(token)")])
                #expect(byKid.status == 200)
                let version = try #require(kid.split(separator: "/").last.map(String.init))
                #expect(version.count == 32)

                let dek = (0..<32).map { _ in UInt8.random(in: 0...255) }
                let wrapped = try await h.wrap(customer.vaultURL, key: customer.keyName, token: token, plaintext: dek)
                #expect(wrapped.status == 200, "\(wrapped.body)")
                #expect(wrapped.json["kid"] as? String == kid)
                let blob = try #require(wrapped.json["value"] as? String)
                #expect(Base64URL.decode(blob)?.count == 384)
                let unwrapped = try await h.unwrap(customer.vaultURL, key: customer.keyName, version: version, token: token, wrapped: blob)
                #expect(unwrapped.status == 200, "\(unwrapped.body)")
                #expect(Base64URL.decode(try #require(unwrapped.json["value"] as? String)) == dek)
            }
            let counters = h.state.counters.snapshot
            #expect(counters["imds.token"] == 2)
            #expect(counters["entra.token"] == 2)
            #expect(counters["keyvault.unwrapkey"] == 2)
        }
    }

    @Test func discoveryDocumentsNameTheTenantAndItsKeys() async throws {
        try await withEmulator { h in
            let tenant = h.scenario.customers[0].tenantID
            let config = try await h.send(.GET, "\(h.endpoints.authority)/\(tenant)/v2.0/.well-known/openid-configuration")
            #expect(config.status == 200)
            #expect(config.json["issuer"] as? String == "https://login.microsoftonline.com/\(tenant)/v2.0")
            #expect(config.json["token_endpoint"] as? String == "\(h.endpoints.authority)/\(tenant)/oauth2/v2.0/token")
            let jwksURL = try #require(config.json["jwks_uri"] as? String)
            let jwks = try await h.send(.GET, jwksURL)
            let keys = try #require(jwks.json["keys"] as? [[String: Any]])
            #expect(keys.first?["kid"] as? String == h.state.authority.keyID)
            #expect(keys.first?["kty"] as? String == "RSA")
            let unknown = try await h.send(.GET, "\(h.endpoints.authority)/nope.onmicrosoft.com/v2.0/.well-known/openid-configuration")
            #expect(unknown.status == 400)
            #expect(unknown.aadsts == 90002)
        }
    }
}
