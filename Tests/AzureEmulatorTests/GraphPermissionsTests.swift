@testable import AzureEmulator
import FedBrokerCore
import Foundation
import Testing

/// Who Graph lets manage the application's FICs, `$filter` over HTTP, and throttling.
@Suite struct GraphPermissionsTests {
    private func base(_ h: Harness) -> String {
        "\(h.endpoints.graph)/v1.0/applications/\(h.scenario.appObjectID)/federatedIdentityCredentials"
    }

    @Test("the application's own Graph token carries Application.ReadWrite.OwnedBy and may manage its FICs")
    func applicationTokenCarriesThePermission() async throws {
        try await withEmulator { h in
            let token = try await h.graphToken(through: h.scenario.managedIdentities[0].clientId)
            let claims = try #require(UnverifiedJWT(token)).claims
            #expect(claims.roles == ["Application.ReadWrite.OwnedBy"])
            #expect(claims.appid == h.scenario.appClientID)
            #expect(claims.tid == h.scenario.isvTenantID)
            #expect(try await h.send(.GET, base(h), headers: [("Authorization", "Bearer \(token)")]).status == 200)
        }
    }

    @Test("a managed identity's own Graph token gets 403 Authorization_RequestDenied")
    func managedIdentityTokenIsDenied() async throws {
        try await withEmulator { h in
            let token = try await h.managedIdentityGraphToken(h.scenario.managedIdentities[0].clientId)
            let reply = try await h.send(.GET, base(h), headers: [("Authorization", "Bearer \(token)")])
            #expect(reply.status == 403)
            #expect(reply.errorCode == "Authorization_RequestDenied")
            #expect((reply.json["error"] as? [String: Any])?["message"] as? String == "Insufficient privileges to complete the operation.")
        }
    }

    @Test("revoking the permission through the control API denies tokens issued afterwards; granting it back allows them")
    func revokeAndGrantThroughTheControlAPI() async throws {
        try await withEmulator { h in
            let mi = h.scenario.managedIdentities[0].clientId
            let before = try await h.graphToken(through: mi)
            let url = "\(h.endpoints.control)/control/applications/\(h.scenario.appClientID)/graph-permissions"
            let revoked = try await h.json(.PATCH, url, #"{"revoke":["Application.ReadWrite.OwnedBy"]}"#)
            #expect(revoked.status == 200)
            #expect(revoked.json["graphPermissions"] as? [String] == [])
            let after = try await h.graphToken(through: mi)
            #expect(try #require(UnverifiedJWT(after)).claims.roles.isEmpty)
            let denied = try await h.json(
                .POST, base(h), #"{"name":"slot-x","issuer":"https://login.microsoftonline.com/\#(h.scenario.isvTenantID)/v2.0","subject":"p-x","audiences":["api://AzureADTokenExchange"]}"#,
                headers: [("Authorization", "Bearer \(after)")])
            #expect(denied.status == 403)
            #expect(denied.errorCode == "Authorization_RequestDenied")
            // The token issued before the revocation keeps its roles until it expires, as in Entra.
            #expect(try await h.send(.GET, base(h), headers: [("Authorization", "Bearer \(before)")]).status == 200)

            let granted = try await h.json(.PATCH, url, #"{"grant":["Application.ReadWrite.OwnedBy"]}"#)
            #expect(granted.json["graphPermissions"] as? [String] == ["Application.ReadWrite.OwnedBy"])
            #expect(try await h.send(.GET, base(h), headers: [("Authorization", "Bearer \(try await h.graphToken(through: mi))")]).status == 200)

            let unknown = try await h.json(.PATCH, url, #"{"grant":["Directory.ReadWrite.All"]}"#)
            #expect(unknown.status == 400)
            #expect(unknown.errorCode == "InvalidInput")
            let noApp = try await h.json(.PATCH, "\(h.endpoints.control)/control/applications/\(UUID().uuidString)/graph-permissions", #"{"grant":[]}"#)
            #expect(noApp.status == 404)
        }
    }

    @Test("a Graph token from a customer tenant does not find the application (it lives in the ISV tenant)")
    func customerTenantTokenDoesNotFindTheApplication() async throws {
        try await withEmulator { h in
            let reply = try await h.exchange(
                tenant: h.scenario.customers[0].tenantID, assertion: try await h.assertion(for: h.scenario.managedIdentities[0].clientId),
                scope: "https://graph.microsoft.com/.default")
            let token = try #require(reply.json["access_token"] as? String)
            #expect(try #require(UnverifiedJWT(token)).claims.roles.isEmpty)
            let listed = try await h.send(.GET, base(h), headers: [("Authorization", "Bearer \(token)")])
            #expect(listed.status == 404)
            #expect(listed.errorCode == "Request_ResourceNotFound")
        }
    }

    @Test("$filter over HTTP: eq on name, subject, issuer+subject, a quoted quote; bad filters get Graph's 400s")
    func filterOverHTTP() async throws {
        try await withEmulator { h in
            let auth = [("Authorization", "Bearer \(try await h.graphToken(through: h.scenario.managedIdentities[0].clientId))")]
            let issuer = "https://login.microsoftonline.com/\(h.scenario.isvTenantID)/v2.0"
            try h.state.addFederatedCredential(appID: h.scenario.appClientID, name: "quoted", issuer: issuer, subject: "O'Brien")
            func names(_ filter: String) async throws -> [String]? {
                let reply = try await h.send(.GET, "\(base(h))?$filter=\(Harness.formEncode(filter))", headers: auth)
                #expect(reply.status == 200, "\(reply.body)")
                return (reply.json["value"] as? [[String: Any]])?.compactMap { $0["name"] as? String }
            }
            let principal = h.scenario.managedIdentities[1].principalId
            #expect(try await names("name eq 'fedbroker-fic-1'") == ["fedbroker-fic-1"])
            #expect(try await names("subject eq '\(principal)'") == ["fedbroker-fic-2"])
            #expect(try await names("issuer eq '\(issuer)' and subject eq '\(principal)'") == ["fedbroker-fic-2"])
            #expect(try await names("issuer eq '\(issuer)'")?.sorted() == ["fedbroker-fic-1", "fedbroker-fic-2", "quoted"])
            #expect(try await names("subject eq 'O''Brien'") == ["quoted"])
            #expect(try await names("name eq 'nothing-here'") == [])

            let broken = try await h.send(.GET, "\(base(h))?$filter=\(Harness.formEncode("name eq 'open"))", headers: auth)
            #expect(broken.status == 400)
            #expect(broken.errorCode == "BadRequest")
            let unsupported = try await h.send(.GET, "\(base(h))?$filter=\(Harness.formEncode("description eq 'x'"))", headers: auth)
            #expect(unsupported.status == 400)
            #expect(unsupported.errorCode == "Request_UnsupportedQuery")
        }
    }

    @Test("an injected Graph 429 carries Retry-After even when the fault names none")
    func throttlingCarriesRetryAfter() async throws {
        try await withEmulator { h in
            let auth = [("Authorization", "Bearer \(try await h.graphToken(through: h.scenario.managedIdentities[0].clientId))")]
            _ = try await h.json(.POST, "\(h.endpoints.control)/control/faults", #"{"service":"graph","operation":"list","status":429,"count":1}"#)
            let throttled = try await h.send(.GET, base(h), headers: auth)
            #expect(throttled.status == 429)
            #expect(throttled.headers.first(name: "Retry-After") == String(GraphService.defaultRetryAfterSeconds))
            _ = try await h.json(.POST, "\(h.endpoints.control)/control/faults", #"{"service":"graph","status":429,"count":1,"retryAfterSeconds":7}"#)
            #expect(try await h.send(.GET, base(h), headers: auth).headers.first(name: "Retry-After") == "7")
            #expect(try await h.send(.GET, base(h), headers: auth).status == 200)
        }
    }
}
