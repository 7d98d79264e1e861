@testable import AzureEmulator
import FedBrokerCore
import Foundation
import NIOCore
import Testing

@Suite struct GraphTests {
    @Test func listCreateDeleteWithTheRules() async throws {
        try await withEmulator { h in
            let token = try await h.graphToken(through: h.scenario.managedIdentities[0].clientId)
            let auth = [("Authorization", "Bearer \(token)")]
            let base = "\(h.endpoints.graph)/v1.0/applications/\(h.scenario.appObjectID)/federatedIdentityCredentials"
            let issuer = "https://login.microsoftonline.com/\(h.scenario.isvTenantID)/v2.0"

            let list = try await h.send(.GET, base, headers: auth)
            #expect(list.status == 200)
            #expect((list.json["value"] as? [[String: Any]])?.count == 2)

            func create(_ name: String, subject: String, audiences: String = #"["api://AzureADTokenExchange"]"#) async throws -> Harness.Reply {
                try await h.json(.POST, base, #"{"name":"\#(name)","issuer":"\#(issuer)","subject":"\#(subject)","audiences":\#(audiences)}"#, headers: auth)
            }
            let created = try await create("slot-3", subject: "principal-3")
            #expect(created.status == 201)
            #expect(created.json["name"] as? String == "slot-3")
            #expect(created.json["description"] is NSNull)
            #expect(created.json["audiences"] as? [String] == ["api://AzureADTokenExchange"])
            let id = try #require(created.json["id"] as? String)

            #expect(try await create("slot-3", subject: "principal-x").status == 409)  // name taken
            let duplicate = try await create("slot-dup", subject: "principal-3")
            #expect(duplicate.status == 400)
            #expect(duplicate.errorCode == "InvalidFederatedIdentityCredentialValue")
            let duplicateMessage = try #require((duplicate.json["error"] as? [String: Any])?["message"] as? String)
            #expect(duplicateMessage.hasPrefix("The combination of issuer and subject must be unique for the application. Issuer \(issuer) and Subject: principal-3 already exist."))
            #expect(try await create("-bad", subject: "p").status == 400)
            #expect(try await create("two-aud", subject: "p2", audiences: #"["a","b"]"#).status == 400)

            // 20 at most: two seeded + slot-3 + 17 more fill it.
            for index in 4...20 { #expect(try await create("slot-\(index)", subject: "principal-\(index)").status == 201) }
            let full = try await create("slot-21", subject: "principal-21")
            #expect(full.status == 400)
            #expect(full.errorCode == "Request_BadRequest")

            let byName = try await h.send(.GET, "\(h.endpoints.graph)/v1.0/applications/\(h.scenario.appObjectID)/federatedIdentityCredentials(name='slot-3')", headers: auth)
            #expect(byName.json["id"] as? String == id)
            #expect(try await h.send(.DELETE, "\(base)/\(id)", headers: auth).status == 204)
            #expect(try await h.send(.DELETE, "\(base)/\(id)", headers: auth).status == 404)
            #expect(try await create("slot-21", subject: "principal-21").status == 201)  // room again
            let appIdForm = try await h.send(.GET, "\(h.endpoints.graph)/v1.0/applications(appId='\(h.scenario.appClientID)')/federatedIdentityCredentials", headers: auth)
            #expect((appIdForm.json["value"] as? [[String: Any]])?.count == 20)
        }
    }

    @Test func requiresAGraphToken() async throws {
        try await withEmulator { h in
            let base = "\(h.endpoints.graph)/v1.0/applications/\(h.scenario.appObjectID)/federatedIdentityCredentials"
            let none = try await h.send(.GET, base)
            #expect(none.status == 401)
            #expect(none.errorCode == "InvalidAuthenticationToken")
            let vaultToken = try await h.vaultToken(customer: 0)
            #expect(try await h.send(.GET, base, headers: [("Authorization", "Bearer \(vaultToken)")]).status == 401)
            let unknownApp = try await h.send(.GET, "\(h.endpoints.graph)/v1.0/applications/\(UUID().uuidString)/federatedIdentityCredentials",
                                              headers: [("Authorization", "Bearer \(try await h.graphToken(through: h.scenario.managedIdentities[0].clientId))")])
            #expect(unknownApp.status == 404)
            #expect(unknownApp.errorCode == "Request_ResourceNotFound")
        }
    }
}

@Suite struct FaultAndControlTests {
    @Test func faultsAnswerWithTheirStatusForTheirCount() async throws {
        try await withEmulator { h in
            let c1 = h.scenario.customers[0]
            let token = try await h.vaultToken(customer: 0)
            let added = try await h.json(.POST, "\(h.endpoints.control)/control/faults",
                                         #"{"service":"keyvault","operation":"wrapkey","target":"\#(c1.vaultName)","status":503,"count":2,"retryAfterSeconds":3}"#)
            #expect(added.status == 201)
            for _ in 0..<2 {
                let failed = try await h.wrap(c1.vaultURL, key: "cmk", token: token, plaintext: [1])
                #expect(failed.status == 503)
                #expect(failed.headers.first(name: "Retry-After") == "3")
            }
            #expect(try await h.wrap(c1.vaultURL, key: "cmk", token: token, plaintext: [1]).status == 200)
            // getkey was never affected
            #expect(try await h.keyVault(.GET, vaultURL: c1.vaultURL, path: "/keys/cmk", token: token).status == 200)

            _ = try await h.json(.POST, "\(h.endpoints.control)/control/faults", #"{"service":"entra","status":429,"count":1,"retryAfterSeconds":1}"#)
            let throttled = try await h.exchange(tenant: c1.tenantID, assertion: try await h.assertion(for: h.scenario.managedIdentities[0].clientId))
            #expect(throttled.status == 429)
            #expect(throttled.headers.first(name: "Retry-After") == "1")

            _ = try await h.json(.POST, "\(h.endpoints.control)/control/faults", #"{"service":"imds","status":410,"count":1}"#)
            #expect(try await h.imds("api-version=2018-02-01&resource=x&client_id=\(h.scenario.managedIdentities[0].clientId)").status == 410)
        }
    }

    @Test func resetFaultDropsTheConnection() async throws {
        try await withEmulator { h in
            _ = try await h.json(.POST, "\(h.endpoints.control)/control/faults", #"{"service":"imds","reset":true,"count":1}"#)
            // A reset, not a clean close: the client sees ECONNRESET, as from a dropped Azure front end.
            let dropped = await #expect(throws: IOError.self) {
                _ = try await h.imds("api-version=2018-02-01&resource=x&client_id=\(h.scenario.managedIdentities[0].clientId)")
            }
            #expect(dropped?.errnoCode == ECONNRESET, "\(String(describing: dropped))")
            #expect(try await h.imds("api-version=2018-02-01&resource=x&client_id=\(h.scenario.managedIdentities[0].clientId)").status == 200)
        }
    }

    @Test func controlAPIScriptsAWholeCustomerAndCountsRequests() async throws {
        try await withEmulator(seed: false) { h in
            let control = "\(h.endpoints.control)/control"
            let isv = try await h.json(.POST, "\(control)/tenants", #"{"displayName":"ISV"}"#).json["id"] as! String
            let app = try await h.json(.POST, "\(control)/applications", #"{"homeTenantId":"\#(isv)","displayName":"app"}"#)
            let appID = try #require(app.json["appId"] as? String)
            let mi = try await h.json(.POST, "\(control)/managed-identities", #"{"tenantId":"\#(isv)","name":"mi-1"}"#)
            let miClient = try #require(mi.json["clientId"] as? String)
            let miPrincipal = try #require(mi.json["principalId"] as? String)
            let fic = try await h.json(.POST, "\(control)/applications/\(appID)/federated-credentials",
                                       #"{"name":"mi-1","issuer":"https://login.microsoftonline.com/\#(isv)/v2.0","subject":"\#(miPrincipal)"}"#)
            #expect(fic.status == 201)
            let customer = try await h.json(.POST, "\(control)/tenants", #"{"displayName":"Customer"}"#).json["id"] as! String
            let sp = try await h.json(.POST, "\(control)/service-principals", #"{"tenantId":"\#(customer)","appId":"\#(appID)"}"#)
            let spID = try #require(sp.json["objectId"] as? String)
            let vault = try await h.json(.POST, "\(control)/vaults", #"{"tenantId":"\#(customer)","name":"cust-kv"}"#)
            #expect(vault.status == 201)
            let vaultURL = try #require(vault.json["url"] as? String)
            let key = try await h.json(.POST, "\(control)/vaults/cust-kv/keys", #"{"name":"k","size":2048}"#)
            #expect(key.status == 201)
            #expect(try await h.json(.POST, "\(control)/vaults/cust-kv/role-assignments", #"{"principalId":"\#(spID)"}"#).status == 201)

            let assertion = try await h.assertion(for: miClient)
            let exchange = try await h.exchange(tenant: customer, assertion: assertion, clientID: appID)
            #expect(exchange.status == 200, "\(exchange.body)")
            let token = try #require(exchange.json["access_token"] as? String)
            #expect(try await h.wrap(vaultURL, key: "k", token: token, plaintext: [5]).status == 200)

            let counters = try await h.send(.GET, "\(control)/counters")
            #expect(counters.json["imds.token.\(miClient)"] as? Int == 1)
            #expect(counters.json["entra.token.\(customer)"] as? Int == 1)
            #expect(counters.json["keyvault.cust-kv.wrapkey"] as? Int == 1)

            // Bad input to the control API gets a clear error.
            let bad = try await h.json(.POST, "\(control)/vaults/cust-kv/keys", #"{"name":"k2","size":1024}"#)
            #expect(bad.status == 400)
            #expect(bad.errorCode == "InvalidInput")
            let unknownVault = try await h.json(.POST, "\(control)/vaults/nope/keys", #"{"name":"k"}"#)
            #expect(unknownVault.status == 404)
            let malformed = try await h.json(.POST, "\(control)/tenants", #"{"nope":1}"#)
            #expect(malformed.status == 400)
        }
    }
}

@Suite struct PersistenceTests {
    @Test func stateSurvivesARestartFromTheStateDirectory() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("emu-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        var blob = ""
        var version = ""
        var first: DefaultScenario?
        try await withEmulator(stateDirectory: dir) { h in
            first = h.scenario
            let token = try await h.vaultToken(customer: 0)
            let wrapped = try await h.wrap(h.scenario.customers[0].vaultURL, key: "cmk", token: token, plaintext: [1, 2, 3])
            blob = try #require(wrapped.json["value"] as? String)
            version = String(try #require(wrapped.json["kid"] as? String).split(separator: "/").last!)
            let env = try String(contentsOf: dir.appendingPathComponent("env.sh"), encoding: .utf8)
            for name in ["FEDBROKER_EMU_IMDS_URL", "FEDBROKER_EMU_AUTHORITY_URL", "FEDBROKER_EMU_GRAPH_URL", "FEDBROKER_EMU_CONTROL_URL",
                         "FEDBROKER_EMU_CA_BUNDLE", "FEDBROKER_EMU_ISV_TENANT_ID", "FEDBROKER_EMU_APP_CLIENT_ID", "FEDBROKER_EMU_MI_CLIENT_IDS",
                         "FEDBROKER_EMU_C1_TENANT_ID", "FEDBROKER_EMU_C1_VAULT_URL", "FEDBROKER_EMU_C1_KEY_NAME", "FEDBROKER_EMU_C2_TENANT_ID",
                         "FEDBROKER_EMU_C2_VAULT_URL", "FEDBROKER_EMU_C2_KEY_NAME", "FEDBROKER_EMU_C1_UNGRANTED_KEY_NAME"] {
                #expect(env.contains("export \(name)='"), "\(name)")
            }
            let attributes = try FileManager.default.attributesOfItem(atPath: dir.appendingPathComponent("state.json").path)
            #expect((attributes[.posixPermissions] as? Int) == 0o600)
        }
        try await withEmulator(stateDirectory: dir) { h in
            // Same tenants, same keys, same vault URL: the earlier blob still unwraps.
            #expect(h.scenario.appClientID == first?.appClientID)
            #expect(h.scenario.customers[0].vaultURL == first?.customers[0].vaultURL)
            let token = try await h.vaultToken(customer: 0)
            let unwrapped = try await h.unwrap(h.scenario.customers[0].vaultURL, key: "cmk", version: version, token: token, wrapped: blob)
            #expect(unwrapped.status == 200)
            #expect(Base64URL.decode(try #require(unwrapped.json["value"] as? String)) == [1, 2, 3])
        }
    }
}
