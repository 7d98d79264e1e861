@testable import AzureEmulator
import FedBrokerCore
import Foundation
import Testing

@Suite struct KeyVaultTests {
    @Test func challengeComesBeforeTheBodyAndNamesTheVaultTenant() async throws {
        try await withEmulator { h in
            let customer = h.scenario.customers[0]
            // What SDKs send first: no token and no body.
            let reply = try await h.keyVault(.POST, vaultURL: customer.vaultURL, path: "/keys/cmk//wrapkey", token: nil)
            #expect(reply.status == 401)
            #expect(reply.headers.first(name: "WWW-Authenticate") == "Bearer authorization=\"\(h.endpoints.authority)/\(customer.tenantID)\", resource=\"https://vault.azure.net\"")
            #expect(reply.body == #"{"error":{"code":"Unauthorized","message":"AKV10000: Request is missing a Bearer or PoP token."}}"#)
            #expect(reply.headers.first(name: "Content-Length") == "97")
            #expect(reply.headers.first(name: "x-ms-request-id") != nil)
            // Without api-version too: the challenge still comes first.
            let bare = try await h.keyVault(.GET, vaultURL: customer.vaultURL, path: "/keys/cmk", token: nil, apiVersion: nil)
            #expect(bare.status == 401)
        }
    }

    @Test func tokenChecks() async throws {
        try await withEmulator { h in
            let c1 = h.scenario.customers[0]
            let c2Token = try await h.vaultToken(customer: 1)
            let wrongTenant = try await h.keyVault(.GET, vaultURL: c1.vaultURL, path: "/keys/cmk", token: c2Token)
            #expect(wrongTenant.status == 401)
            #expect((wrongTenant.json["error"] as? [String: Any])?["message"] as? String == "AKV10032: Invalid issuer. Expected one of https://sts.windows.net/\(c1.tenantID)/, found https://sts.windows.net/\(h.scenario.customers[1].tenantID)/.")
            #expect(wrongTenant.headers.first(name: "WWW-Authenticate") != nil)

            let miToken = try await h.assertion(for: h.scenario.managedIdentities[0].clientId)
            let wrongAudience = try await h.keyVault(.GET, vaultURL: c1.vaultURL, path: "/keys/cmk", token: miToken)
            #expect(wrongAudience.status == 401)
            #expect(((wrongAudience.json["error"] as? [String: Any])?["message"] as? String)?.hasPrefix("AKV10022: Invalid audience.") == true)

            let garbage = try await h.keyVault(.GET, vaultURL: c1.vaultURL, path: "/keys/cmk", token: "abc")
            #expect(garbage.status == 401)

            let token = try await h.vaultToken(customer: 0)
            #expect(try await h.keyVault(.GET, vaultURL: c1.vaultURL, path: "/keys/cmk", token: token).status == 200)
            h.clock.advance(by: 3600 + 301)
            let expired = try await h.keyVault(.GET, vaultURL: c1.vaultURL, path: "/keys/cmk", token: token)
            #expect(expired.status == 401)
            #expect((expired.json["error"] as? [String: Any])?["message"] as? String == "[TokenExpired] Error validating token: 'S2S12086'.")
        }
    }

    @Test func rbacKeyOpsAndDisabledKeys() async throws {
        try await withEmulator { h in
            let c1 = h.scenario.customers[0]
            let token = try await h.vaultToken(customer: 0)
            // The ungranted key: the role is scoped to "cmk" only.
            let denied = try await h.wrap(c1.vaultURL, key: h.scenario.ungrantedKeyName, token: token, plaintext: [1, 2, 3])
            #expect(denied.status == 403)
            #expect(denied.errorCode == "Forbidden")
            #expect(denied.innerError == "ForbiddenByRbac")
            let message = try #require((denied.json["error"] as? [String: Any])?["message"] as? String)
            #expect(message.contains("oid=\(c1.servicePrincipalObjectID)"))
            #expect(message.contains("Action: 'Microsoft.KeyVault/vaults/keys/wrap/action'"))

            // Grant with a propagation delay: still denied until it takes effect.
            try h.state.assignRole(vault: c1.vaultName, principalID: c1.servicePrincipalObjectID, role: "Key Vault Crypto User",
                                   keyName: h.scenario.ungrantedKeyName, delaySeconds: 300)
            #expect(try await h.wrap(c1.vaultURL, key: h.scenario.ungrantedKeyName, token: token, plaintext: [1]).innerError == "ForbiddenByRbac")
            h.clock.advance(by: 300)
            #expect(try await h.wrap(c1.vaultURL, key: h.scenario.ungrantedKeyName, token: token, plaintext: [1]).status == 200)

            // key_ops without unwrapKey.
            try h.state.updateKey(vault: c1.vaultName, name: h.scenario.ungrantedKeyName, keyOps: ["wrapKey"])
            let wrapped = try await h.wrap(c1.vaultURL, key: h.scenario.ungrantedKeyName, token: token, plaintext: [7, 7])
            let blob = try #require(wrapped.json["value"] as? String)
            let version = try #require((wrapped.json["kid"] as? String)?.split(separator: "/").last.map(String.init))
            let forbidden = try await h.unwrap(c1.vaultURL, key: h.scenario.ungrantedKeyName, version: version, token: token, wrapped: blob)
            #expect(forbidden.status == 403)
            #expect(forbidden.innerError == "KeyOperationForbidden")

            // Disabled: unwrap refused, with the disabled-key error.
            let good = try await h.wrap(c1.vaultURL, key: "cmk", token: token, plaintext: [4, 2])
            let goodBlob = try #require(good.json["value"] as? String)
            let goodVersion = try #require((good.json["kid"] as? String)?.split(separator: "/").last.map(String.init))
            try h.state.updateKey(vault: c1.vaultName, name: "cmk", enabled: false)
            let disabled = try await h.unwrap(c1.vaultURL, key: "cmk", version: goodVersion, token: token, wrapped: goodBlob)
            #expect(disabled.status == 403)
            #expect(disabled.innerError == "KeyDisabled")
            try h.state.updateKey(vault: c1.vaultName, name: "cmk", enabled: true)
            #expect(try await h.unwrap(c1.vaultURL, key: "cmk", version: goodVersion, token: token, wrapped: goodBlob).status == 200)

            // Role removed: refused at once.
            let assignment = try #require(h.state.read { $0.vaults[c1.vaultName]?.roleAssignments.first { $0.keyScope == "cmk" } })
            try h.state.removeRoleAssignment(vault: c1.vaultName, id: assignment.id)
            #expect(try await h.unwrap(c1.vaultURL, key: "cmk", version: goodVersion, token: token, wrapped: goodBlob).innerError == "ForbiddenByRbac")
        }
    }

    @Test func rotationKeepsOldVersionsUnwrapping() async throws {
        try await withEmulator { h in
            let c2 = h.scenario.customers[1]
            let token = try await h.vaultToken(customer: 1)
            let dek: [UInt8] = Array(repeating: 0xAB, count: 32)
            let before = try await h.wrap(c2.vaultURL, key: "cmk", token: token, plaintext: dek)
            let oldKid = try #require(before.json["kid"] as? String)
            let oldVersion = String(oldKid.split(separator: "/").last!)
            let rotated = try h.state.rotateKey(vault: c2.vaultName, name: "cmk")
            #expect(rotated.version != oldVersion)
            let latest = try await h.keyVault(.GET, vaultURL: c2.vaultURL, path: "/keys/cmk", token: token)
            #expect((latest.json["key"] as? [String: Any])?["kid"] as? String == "\(c2.vaultURL)/keys/cmk/\(rotated.version)")
            let after = try await h.wrap(c2.vaultURL, key: "cmk", token: token, plaintext: dek)
            #expect((after.json["kid"] as? String)?.hasSuffix(rotated.version) == true)
            let unwrapped = try await h.unwrap(c2.vaultURL, key: "cmk", version: oldVersion, token: token, wrapped: try #require(before.json["value"] as? String))
            #expect(unwrapped.status == 200)
            #expect(Base64URL.decode(try #require(unwrapped.json["value"] as? String)) == dek)
            // The old ciphertext under the new version does not decrypt.
            let mismatched = try await h.unwrap(c2.vaultURL, key: "cmk", version: rotated.version, token: token, wrapped: try #require(before.json["value"] as? String))
            #expect(mismatched.status == 400)
            #expect(mismatched.errorCode == "BadParameter")
        }
    }

    @Test func badInputGetsPreciseErrors() async throws {
        try await withEmulator { h in
            let c1 = h.scenario.customers[0]
            let token = try await h.vaultToken(customer: 0)
            let garbage = try await h.unwrap(c1.vaultURL, key: "cmk", version: "", token: token, wrapped: Base64URL.encode(Array(repeating: 1, count: 384)))
            #expect(garbage.status == 400)
            #expect(garbage.body == #"{"error":{"code":"BadParameter","message":"Error occurred while decoding OAEP padding."}}"#)
            let notB64 = try await h.keyVault(.POST, vaultURL: c1.vaultURL, path: "/keys/cmk//wrapkey", token: token, body: #"{"alg":"RSA-OAEP-256","value":"+++"}"#)
            #expect(notB64.errorCode == "BadParameter")
            let noVersion = try await h.keyVault(.GET, vaultURL: c1.vaultURL, path: "/keys/cmk", token: token, apiVersion: nil)
            #expect(noVersion.status == 400)
            #expect(noVersion.errorCode == "BadParameter")
            #expect(try await h.keyVault(.GET, vaultURL: c1.vaultURL, path: "/keys/cmk", token: token, apiVersion: "2025-07-01").status == 200)
            #expect(try await h.keyVault(.GET, vaultURL: c1.vaultURL, path: "/keys/cmk", token: token, apiVersion: "9.9").status == 400)
            let missing = try await h.keyVault(.GET, vaultURL: c1.vaultURL, path: "/keys/nope", token: token)
            // RBAC is evaluated first; a vault-scope role lets the 404 through.
            #expect(missing.status == 403)
            try h.state.assignRole(vault: c1.vaultName, principalID: c1.servicePrincipalObjectID)
            let notFound = try await h.keyVault(.GET, vaultURL: c1.vaultURL, path: "/keys/nope", token: token)
            #expect(notFound.status == 404)
            #expect(notFound.errorCode == "KeyNotFound")
            let badVersion = try await h.keyVault(.GET, vaultURL: c1.vaultURL, path: "/keys/cmk/00000000000000000000000000000000", token: token)
            #expect(badVersion.errorCode == "KeyNotFound")
        }
    }

    @Test func vaultBudgetThrottlesAndRecovers() async throws {
        try await withEmulator { h in
            let c1 = h.scenario.customers[0]
            try h.state.setVaultBudget(vault: c1.vaultName, budget: 3, windowSeconds: 10)
            let token = try await h.vaultToken(customer: 0)
            for _ in 0..<3 { #expect(try await h.keyVault(.GET, vaultURL: c1.vaultURL, path: "/keys/cmk", token: token).status == 200) }
            let throttled = try await h.keyVault(.GET, vaultURL: c1.vaultURL, path: "/keys/cmk", token: token, clientRequestID: "t-1")
            #expect(throttled.status == 429)
            #expect(throttled.errorCode == "Throttled")
            #expect(throttled.headers.first(name: "Retry-After") == nil)  // as captured from the real service
            #expect(throttled.headers.first(name: "x-ms-client-request-id") == "t-1")
            // The other vault is unaffected.
            let c2Token = try await h.vaultToken(customer: 1)
            #expect(try await h.keyVault(.GET, vaultURL: h.scenario.customers[1].vaultURL, path: "/keys/cmk", token: c2Token).status == 200)
            h.clock.advance(by: 10)
            #expect(try await h.keyVault(.GET, vaultURL: c1.vaultURL, path: "/keys/cmk", token: token).status == 200)
        }
    }

    @Test func purgeProtectionShowsInRecoveryLevel() async throws {
        try await withEmulator { h in
            let tenant = h.scenario.customers[0].tenantID
            let url = try await h.state.createVault(tenantID: tenant, name: "loose-kv", purgeProtection: false, softDeleteRetentionDays: 7)
            var options = EmulatorState.KeyOptions()
            options.size = 2048
            try h.state.createKey(vault: "loose-kv", name: "small", options: options)
            try h.state.assignRole(vault: "loose-kv", principalID: h.scenario.customers[0].servicePrincipalObjectID)
            let token = try await h.vaultToken(customer: 0)
            let get = try await h.keyVault(.GET, vaultURL: url, path: "/keys/small", token: token)
            let attributes = try #require(get.json["attributes"] as? [String: Any])
            #expect(attributes["recoveryLevel"] as? String == "CustomizedRecoverable+Purgeable")
            #expect(attributes["recoverableDays"] as? Int == 7)
            #expect(Base64URL.decode(try #require((get.json["key"] as? [String: Any])?["n"] as? String))?.count == 256)
        }
    }
}
