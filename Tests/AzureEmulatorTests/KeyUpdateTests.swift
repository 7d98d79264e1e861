@testable import AzureEmulator
import FedBrokerCore
import Foundation
import Testing

/// Key tags set from the customer's side: Update Key on the data plane (what `az keyvault key
/// set-attributes --tags` sends) and the control API's PATCH.
@Suite struct KeyUpdateTests {
    /// A customer administrator in Contoso with Key Vault Crypto Officer on contoso-kv, and
    /// their vault token from the sign-in stand-in.
    private func customerAdminToken(_ h: Harness) async throws -> String {
        let c1 = h.scenario.customers[0]
        let admin = try h.state.createUser(tenantID: c1.tenantID, displayName: "Kim Keyadmin")
        try h.state.assignRole(vault: c1.vaultName, principalID: admin.objectId, role: "Key Vault Crypto Officer")
        let reply = try await h.staffToken(user: admin.objectId, resource: "https://vault.azure.net")
        #expect(reply.status == 200, "\(reply.body)")
        return try #require(reply.json["access_token"] as? String)
    }

    @Test func updateKeySetsTagsTheBrokerThenReads() async throws {
        try await withEmulator { h in
            let c1 = h.scenario.customers[0]
            let token = try await customerAdminToken(h)
            // Empty version = the current one, as az sends it.
            let patched = try await h.keyVault(.PATCH, vaultURL: c1.vaultURL, path: "/keys/cmk/", token: token,
                                               body: #"{"attributes":{},"tags":{"fedbroker-binding":"tenant-42"}}"#)
            #expect(patched.status == 200, "\(patched.body)")
            #expect(patched.json["tags"] as? [String: String] == ["fedbroker-binding": "tenant-42"])
            let kid = try #require((patched.json["key"] as? [String: Any])?["kid"] as? String)
            #expect(kid.hasPrefix("\(c1.vaultURL)/keys/cmk/"))
            #expect((patched.json["attributes"] as? [String: Any])?["enabled"] as? Bool == true)
            #expect(patched.headers.first(name: "x-ms-keyvault-rbac-assignment-id") != nil)

            // The broker's own identity (Crypto Service Encryption User) sees the new tags, and only them.
            let brokerToken = try await h.vaultToken(customer: 0)
            let got = try await h.keyVault(.GET, vaultURL: c1.vaultURL, path: "/keys/cmk", token: brokerToken)
            #expect(got.status == 200)
            #expect(got.json["tags"] as? [String: String] == ["fedbroker-binding": "tenant-42"])
            let counters = try await h.send(.GET, "\(h.endpoints.control)/control/counters")
            #expect(counters.json["keyvault.\(c1.vaultName).updatekey"] as? Int == 1)
        }
    }

    @Test func updateKeyOnAVersionChangesItsAttributes() async throws {
        try await withEmulator { h in
            let c1 = h.scenario.customers[0]
            let token = try await customerAdminToken(h)
            let version = try #require(h.state.read { $0.vaults[c1.vaultName]?.keys["cmk"]?.latest?.version })
            let patched = try await h.keyVault(.PATCH, vaultURL: c1.vaultURL, path: "/keys/cmk/\(version)", token: token,
                                               body: #"{"key_ops":["wrapKey"],"attributes":{"enabled":false,"exp":4102444800}}"#)
            #expect(patched.status == 200, "\(patched.body)")
            #expect((patched.json["key"] as? [String: Any])?["key_ops"] as? [String] == ["wrapKey"])
            let attributes = try #require(patched.json["attributes"] as? [String: Any])
            #expect(attributes["enabled"] as? Bool == false)
            #expect(attributes["exp"] as? Int == 4_102_444_800)
            // Tags not sent: left as they were.
            #expect(patched.json["tags"] as? [String: String] == ["customer": "contoso", "purpose": "fedbroker-cmk"])
            let stored = try #require(h.state.read { $0.vaults[c1.vaultName]?.keys["cmk"]?.latest })
            #expect(stored.enabled == false)
            #expect(stored.keyOps == ["wrapKey"])
        }
    }

    @Test func updateKeyRefusesAsKeyVaultDoes() async throws {
        try await withEmulator { h in
            let c1 = h.scenario.customers[0]
            let body = #"{"tags":{"fedbroker-binding":"x"}}"#
            // No token: the challenge.
            let anonymous = try await h.keyVault(.PATCH, vaultURL: c1.vaultURL, path: "/keys/cmk/", token: nil, body: body)
            #expect(anonymous.status == 401)
            #expect(anonymous.headers.first(name: "WWW-Authenticate") != nil)
            // The broker's identity may read and wrap, not update.
            let brokerToken = try await h.vaultToken(customer: 0)
            let denied = try await h.keyVault(.PATCH, vaultURL: c1.vaultURL, path: "/keys/cmk/", token: brokerToken, body: body)
            #expect(denied.status == 403)
            #expect(denied.innerError == "ForbiddenByRbac")
            #expect(((denied.json["error"] as? [String: Any])?["message"] as? String)?.contains("Action: 'Microsoft.KeyVault/vaults/keys/update/action'") == true)
            // A user of the customer's tenant with no role on the vault: refused the same way.
            let bystander = try h.state.createUser(tenantID: c1.tenantID, displayName: "Bystander")
            let bystanderToken = try #require(try await h.staffToken(user: bystander.objectId, resource: "https://vault.azure.net").json["access_token"] as? String)
            let refused = try await h.keyVault(.PATCH, vaultURL: c1.vaultURL, path: "/keys/cmk/", token: bystanderToken, body: body)
            #expect(refused.status == 403)
            #expect(((refused.json["error"] as? [String: Any])?["message"] as? String)?.contains("appid=\(EmulatorState.azureCLIClientID);oid=\(bystander.objectId)") == true)
            // An ISV staff user's vault token names the ISV tenant: the customer's vault refuses its issuer.
            let outsider = try await h.staffAccessToken("admin", resource: "https://vault.azure.net")
            #expect(try await h.keyVault(.PATCH, vaultURL: c1.vaultURL, path: "/keys/cmk/", token: outsider, body: body).status == 401)

            let token = try await customerAdminToken(h)
            let missing = try await h.keyVault(.PATCH, vaultURL: c1.vaultURL, path: "/keys/nope/", token: token, body: body)
            #expect(missing.status == 404)
            #expect(missing.errorCode == "KeyNotFound")
            let notJSON = try await h.keyVault(.PATCH, vaultURL: c1.vaultURL, path: "/keys/cmk/", token: token, body: "tags=x")
            #expect(notJSON.status == 400)
            #expect(notJSON.errorCode == "BadParameter")
            let badEnabled = try await h.keyVault(.PATCH, vaultURL: c1.vaultURL, path: "/keys/cmk/", token: token, body: #"{"attributes":{"enabled":1}}"#)
            #expect(badEnabled.status == 400)
            #expect((badEnabled.json["error"] as? [String: Any])?["message"] as? String == "Property 'enabled' has an invalid value.\r\n")
            let noVersion = try await h.keyVault(.PATCH, vaultURL: c1.vaultURL, path: "/keys/cmk/", token: token, body: body, apiVersion: nil)
            #expect(noVersion.status == 400)
            // None of the refusals changed the tags.
            #expect(h.state.read { $0.vaults[c1.vaultName]?.keys["cmk"]?.tags } == ["customer": "contoso", "purpose": "fedbroker-cmk"])
        }
    }

    @Test func controlPatchReplacesTags() async throws {
        try await withEmulator { h in
            let c1 = h.scenario.customers[0]
            let reply = try await h.json(.PATCH, "\(h.endpoints.control)/control/vaults/\(c1.vaultName)/keys/cmk",
                                         #"{"tags":{"fedbroker-binding":"tenant-7"}}"#)
            #expect(reply.status == 200, "\(reply.body)")
            let got = try await h.keyVault(.GET, vaultURL: c1.vaultURL, path: "/keys/cmk", token: try await h.vaultToken(customer: 0))
            #expect(got.json["tags"] as? [String: String] == ["fedbroker-binding": "tenant-7"])
            // Other fields alone leave the tags be.
            _ = try await h.json(.PATCH, "\(h.endpoints.control)/control/vaults/\(c1.vaultName)/keys/cmk", #"{"enabled":true}"#)
            #expect(h.state.read { $0.vaults[c1.vaultName]?.keys["cmk"]?.tags } == ["fedbroker-binding": "tenant-7"])
            let state = try await h.send(.GET, "\(h.endpoints.control)/control/state")
            let vault = (state.json["vaults"] as? [[String: Any]])?.first { $0["name"] as? String == c1.vaultName }
            let key = (vault?["keys"] as? [[String: Any]])?.first { $0["name"] as? String == "cmk" }
            #expect(key?["tags"] as? [String: String] == ["fedbroker-binding": "tenant-7"])
            #expect(try await h.json(.PATCH, "\(h.endpoints.control)/control/vaults/\(c1.vaultName)/keys/nope", #"{"tags":{}}"#).status == 404)
        }
    }

    @Test func routeAndBodyParsing() throws {
        #expect(KeyVaultService.route(method: .patch, path: "/keys/cmk/") == .update(name: "cmk", version: nil))
        #expect(KeyVaultService.route(method: .patch, path: "/keys/cmk") == .update(name: "cmk", version: nil))
        #expect(KeyVaultService.route(method: .patch, path: "/keys/cmk/abc") == .update(name: "cmk", version: "abc"))
        #expect(KeyVaultService.route(method: .patch, path: "/keys/cmk/abc/wrapkey") == nil)
        #expect(try KeyUpdateRequest.parse(#"{"key_ops":["wrapKey"],"attributes":{"enabled":true,"nbf":1,"exp":null},"tags":{"a":"b"}}"#).get()
                == KeyUpdateRequest(keyOps: ["wrapKey"], attributes: .init(enabled: true, nbf: 1, exp: nil), tags: ["a": "b"]))
        #expect(throws: KeyVaultFailure.badParameter("Property 'key_ops' has an invalid value.\r\n")) {
            try KeyUpdateRequest.parse(#"{"key_ops":["bogus"]}"#).get()
        }
        // The innermost named property: a tag's own name.
        #expect(throws: KeyVaultFailure.badParameter("Property 'a' has an invalid value.\r\n")) {
            try KeyUpdateRequest.parse(#"{"tags":{"a":1}}"#).get()
        }
        // A fractional time is refused as Key Vault refuses it (400 BadParameter); the message
        // does not name `exp` (Foundation reports no coding path for it).
        let fractional = #expect(throws: KeyVaultFailure.self) { try KeyUpdateRequest.parse(#"{"attributes":{"exp":1.5}}"#).get() }
        #expect(fractional?.status == 400)
        #expect(fractional?.code == "BadParameter")
        #expect(throws: KeyVaultFailure.badParameter("The request body is missing or is not a JSON object.")) { try KeyUpdateRequest.parse("").get() }
    }
}
