import AdminAPI
import AdminAPIModel
import AdminClient
import AzureEmulator
import FedBrokerCore
import Foundation
import NIOHTTP1
import Testing
import Yams

/// Authorization, bad input, concurrency and the document-versus-server contract.
@Suite(.serialized) struct AdminAPIContractTests {
    static func registration(_ tenantID: String, vault: String, geo: String = "europe") -> [String: Any] {
        ["display_name": "Customer", "geo": geo, "provider_config": ["type": "azure", "tenant_id": tenantID, "vault_uri": vault, "key_name": "cmk"]]
    }

    @Test("No token, an expired token, the wrong audience, the wrong issuer and a missing role: 401/403 problem+json; each role does exactly its operations")
    func authorization() async throws {
        try await AdminWorld.with { world in
            let customer = world.scenario.customers[0]
            let url = "\(world.adminURL)/v1/tenants"
            let body = Self.registration(customer.tenantID, vault: customer.vaultURL)
            func register(_ token: String?) async throws -> AdminWorld.Reply {
                try await world.send(.POST, url, json: body, headers: token.map { [("Authorization", "Bearer \($0)")] } ?? [])
            }
            let none = try await register(nil)
            #expect(none.status == 401)
            #expect(none.headers[.contentType] == "application/problem+json")
            #expect(none.object["type"] as? String == "urn:fedbroker:problem:unauthenticated")

            let expired = try await register(try await world.token("onboarder", issuedAtOffsetSeconds: -7200))
            #expect(expired.status == 401)
            #expect((expired.object["detail"] as? String)?.contains("expired") == true)

            let wrongAudience = try await register(try await world.token("onboarder", resource: "https://vault.azure.net"))
            #expect(wrongAudience.status == 401)

            // A user of another tenant with a token for the same application (consented there, as a
            // multi-tenant application can be): a valid Entra token, but not from the ISV's tenant.
            _ = try world.emulator.state.createServicePrincipal(tenantID: customer.tenantID, appID: world.scenario.adminAppID)
            let outsider = try world.emulator.state.createUser(tenantID: customer.tenantID, displayName: "mallory")
            let outsiderToken = try await world.send(
                .POST, "\(world.endpoints.control)/control/users/\(outsider.objectId)/token", json: ["resource": world.scenario.adminAudience])
            let wrongIssuer = try await register(try #require(outsiderToken.object["access_token"] as? String, "\(outsiderToken.body)"))
            #expect(wrongIssuer.status == 401)
            #expect((wrongIssuer.object["detail"] as? String)?.contains("ISV's tenant") == true)

            let forged = try await register("eyJhbGciOiJSUzI1NiIsImtpZCI6Im5vcGUifQ.eyJ4IjoxfQ.c2ln")
            #expect(forged.status == 401)
            // alg none and HS256 (a classic confusion attack with the public key as the secret).
            for header in [#"{"alg":"none","kid":"x"}"#, #"{"alg":"HS256","kid":"x"}"#] {
                let token = Base64URL.encode(Array(header.utf8)) + "." + Base64URL.encode(Array(#"{"roles":["Tenants.Onboard"]}"#.utf8)) + ".c2ln"
                let reply = try await register(token)
                #expect(reply.status == 401)
                #expect((reply.object["detail"] as? String)?.contains("RS256") == true)
            }

            let noRole = try await register(try await world.token("nobody"))
            #expect(noRole.status == 403)
            #expect(noRole.object["type"] as? String == "urn:fedbroker:problem:forbidden")
            #expect(try await world.send(.POST, url, json: body, headers: [("Authorization", "Bearer \(try await world.token("suspender"))")]).status == 403)
            #expect(try await world.send(.GET, "\(world.adminURL)/v1/audit", headers: [("Authorization", "Bearer \(try await world.token("onboarder"))")]).status == 403)
            #expect(try await world.send(.GET, "\(world.adminURL)/v1/audit", headers: [("Authorization", "Bearer \(try await world.token("auditor"))")]).status == 200)
            #expect(try await world.send(.POST, "\(world.adminURL)/v1/callers", json: ["id": "x", "identity": "x", "grants": []], headers: [("Authorization", "Bearer \(try await world.token("onboarder"))")]).status == 403)
            #expect(try await world.send(.POST, "\(world.adminURL)/v1/callers", json: ["id": "x", "identity": "x", "grants": []], headers: [("Authorization", "Bearer \(try await world.token("caller-admin"))")]).status == 201)
            // A token of the ISV's tenant with none of the app roles reads nothing either.
            #expect(try await world.send(.GET, "\(world.adminURL)/v1/tenants", headers: [("Authorization", "Bearer \(try await world.token("nobody"))")]).status == 403)
            // Health needs no token.
            #expect(try await world.send(.GET, "\(world.adminURL)/readyz").status == 200)
        }
    }

    @Test("Each role can call exactly its operations: every documented operation × every staff member, over HTTPS")
    func roleMatrix() async throws {
        try await AdminWorld.with { world in
            var tokens: [String: String] = [:]
            for (user, _) in DefaultScenario.staffRoster { tokens[user] = try await world.token(user) }
            for route in try Self.documentedRoutes() where route.requirement != "none" {
                for (user, roles) in DefaultScenario.staffRoster {
                    let allowed = route.requirement == "any" ? !roles.isEmpty : roles.contains(route.requirement)
                    let reply = try await world.send(
                        route.method, "\(world.adminURL)\(route.path)", raw: route.method == .GET || route.method == .DELETE ? nil : "{}",
                        headers: [("Authorization", "Bearer \(tokens[user]!)")])
                    if allowed {
                        #expect(reply.status != 403 && reply.status != 401, "\(user) \(route.method) \(route.path): \(reply.body)")
                    } else {
                        #expect(reply.status == 403, "\(user) \(route.method) \(route.path): \(reply.status)")
                        #expect(reply.object["type"] as? String == "urn:fedbroker:problem:forbidden")
                    }
                }
            }
        }
    }

    @Test("Bad input is a 4xx problem and stores nothing")
    func badInput() async throws {
        try await AdminWorld.with { world in
            let customer = world.scenario.customers[0]
            let token = try await world.token("onboarder")
            let auth = [("Authorization", "Bearer \(token)")]
            let url = "\(world.adminURL)/v1/tenants"
            var cases: [(String, AdminWorld.Reply, Int)] = []
            cases.append(("malformed JSON", try await world.send(.POST, url, raw: "{\"display_name\": ", headers: auth), 400))
            var unknown = Self.registration(customer.tenantID, vault: customer.vaultURL)
            unknown["color"] = "blue"
            cases.append(("unknown field", try await world.send(.POST, url, json: unknown, headers: auth), 400))
            var unknownNested = Self.registration(customer.tenantID, vault: customer.vaultURL)
            unknownNested["provider_config"] = ["type": "azure", "tenant_id": customer.tenantID, "vault_uri": customer.vaultURL, "key_name": "cmk", "x": 1]
            cases.append(("unknown nested field", try await world.send(.POST, url, json: unknownNested, headers: auth), 400))
            cases.append(("vault not https", try await world.send(.POST, url, json: Self.registration(customer.tenantID, vault: "http://localhost:1"), headers: auth), 422))
            cases.append(("vault not a Key Vault host", try await world.send(.POST, url, json: Self.registration(customer.tenantID, vault: "https://example.com"), headers: auth), 422))
            cases.append(("tenant id not a GUID", try await world.send(.POST, url, json: Self.registration("contoso", vault: customer.vaultURL), headers: auth), 422))
            cases.append(("unknown geo", try await world.send(.POST, url, json: Self.registration(customer.tenantID, vault: customer.vaultURL, geo: "atlantis"), headers: auth), 422))
            let huge = String(repeating: "x", count: 70 * 1024)
            cases.append(("oversized body", try await world.send(.POST, url, raw: "{\"display_name\": \"\(huge)\"}", headers: auth), 413))
            cases.append(("unknown route", try await world.send(.GET, "\(world.adminURL)/v1/nothing", headers: auth), 404))
            for (name, reply, status) in cases {
                #expect(reply.status == status, "\(name): \(reply.body)")
                #expect(reply.headers[.contentType] == "application/problem+json", "\(name)")
                #expect((reply.object["type"] as? String)?.hasPrefix("urn:fedbroker:problem:") == true, "\(name)")
            }
            #expect(try await world.app.store.tenants().isEmpty)
        }
    }

    @Test("20 concurrent registrations of one customer: exactly one tenant, the others 409; a retry with the same key returns it")
    func concurrentRegistrations() async throws {
        try await AdminWorld.with { world in
            let customer = world.scenario.customers[1]
            let token = try await world.token("onboarder")
            let tenantID = customer.tenantID, vaultURL = customer.vaultURL
            let body = Self.registration(tenantID, vault: vaultURL)
            let replies = try await withThrowingTaskGroup(of: (String, AdminWorld.Reply).self) { group in
                for index in 0..<20 {
                    group.addTask {
                        ("key-\(index)", try await world.send(
                            .POST, "\(world.adminURL)/v1/tenants", json: Self.registration(tenantID, vault: vaultURL),
                            headers: [("Authorization", "Bearer \(token)"), ("Idempotency-Key", "key-\(index)")]))
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let created = replies.filter { $0.1.status == 201 }
            #expect(created.count == 1)
            #expect(replies.filter { $0.1.status == 409 }.count == 19)
            #expect(try await world.app.store.tenants().count == 1)
            let (winningKey, first) = try #require(created.first)
            let retry = try await world.send(
                .POST, "\(world.adminURL)/v1/tenants", json: body, headers: [("Authorization", "Bearer \(token)"), ("Idempotency-Key", winningKey)])
            #expect(retry.status == 201)
            #expect(retry.object["id"] as? String == first.object["id"] as? String)
            // Ten concurrent retries with the winning key: all the same tenant, none a new one.
            let retries = try await withThrowingTaskGroup(of: AdminWorld.Reply.self) { group in
                for _ in 0..<10 {
                    group.addTask {
                        try await world.send(
                            .POST, "\(world.adminURL)/v1/tenants", json: Self.registration(tenantID, vault: vaultURL),
                            headers: [("Authorization", "Bearer \(token)"), ("Idempotency-Key", winningKey)])
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(retries.allSatisfy { $0.status == 201 && $0.object["id"] as? String == first.object["id"] as? String })
            #expect(try await world.app.store.tenants().count == 1)
            // The same key for a different request is refused.
            var other = body
            other["display_name"] = "Someone else"
            let reused = try await world.send(
                .POST, "\(world.adminURL)/v1/tenants", json: other, headers: [("Authorization", "Bearer \(token)"), ("Idempotency-Key", winningKey)])
            #expect(reused.status == 422)
            #expect(try await world.app.store.tenants().count == 1)
        }
    }

    @Test("The Unix socket (off by default) is owner-only, needs no token and audits its actions as the local socket")
    func unixSocket() async throws {
        try await AdminWorld.with { world in
            // AdminWorld waited for every admin listener (the socket included) to be up.
            let attributes = try FileManager.default.attributesOfItem(atPath: world.socketPath)
            #expect(attributes[.posixPermissions] as? Int == 0o600)
            let encoded = try #require(world.socketPath.addingPercentEncoding(withAllowedCharacters: .alphanumerics))
            let base = "http+unix://\(encoded)"
            let customer = world.scenario.customers[0]
            let created = try await world.send(.POST, "\(base)/v1/tenants", json: Self.registration(customer.tenantID, vault: customer.vaultURL))
            #expect(created.status == 201, "\(created.body)")
            let audit = try await world.send(.GET, "\(base)/v1/audit?operation=tenant.registered")
            let items = try #require(audit.object["items"] as? [[String: Any]])
            #expect(items.first?["actor"] as? String == "staff:local-socket (local admin socket)")
            // The HTTPS listener still wants a token.
            #expect(try await world.send(.GET, "\(world.adminURL)/v1/tenants").status == 401)
        }
    }

    struct Route {
        var method: HTTPMethod
        var path: String
        var operationID: String
        var requirement: String
    }

    /// Every operation of the OpenAPI document, with its path filled in with placeholder ids.
    static func documentedRoutes() throws -> [Route] {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources/AdminAPIModel/openapi.yaml").path
        let document = try #require(try Yams.load(yaml: String(contentsOfFile: path, encoding: .utf8)) as? [String: Any])
        let paths = try #require(document["paths"] as? [String: Any])
        var routes: [Route] = []
        for (template, item) in paths {
            let concrete = template.replacingOccurrences(of: "{tenant_id}", with: "tnt_x").replacingOccurrences(of: "{caller_id}", with: "x")
            for (method, operation) in try #require(item as? [String: Any]) where ["get", "post", "put", "patch", "delete"].contains(method) {
                let operation = try #require(operation as? [String: Any])
                routes.append(Route(
                    method: HTTPMethod(rawValue: method.uppercased()), path: concrete,
                    operationID: try #require(operation["operationId"] as? String),
                    requirement: try #require(operation["x-fedbroker-role"] as? String)))
            }
        }
        return routes.sorted { $0.operationID < $1.operationID }
    }

    @Test("Every route in the OpenAPI document is served and every served route is in it, with the roles it states")
    func documentMatchesServer() async throws {
        let routes = try Self.documentedRoutes()
        #expect(Set(routes.map(\.operationID)) == Set(AdminRequirement.byOperation.keys))
        for route in routes {
            #expect(AdminRequirement.byOperation[route.operationID]?.description == route.requirement, "\(route.operationID)")
        }
        try await AdminWorld.with { world in
            // Each documented route is served: anything but 404/405 (a missing token is 401).
            for route in routes {
                let reply = try await world.send(
                    route.method, "\(world.adminURL)\(route.path)", raw: route.method == .GET || route.method == .DELETE ? nil : "{}")
                #expect([200, 401].contains(reply.status), "\(route.method) \(route.path): \(reply.status) \(reply.body)")
            }
            // And nothing else is: other paths and other methods on documented paths are 404/405.
            let documented = Set(routes.map { "\($0.method) \($0.path)" })
            // Served on purpose outside the document: Prometheus's scrape, text not JSON, no token.
            let outsideDocument: Set<String> = ["GET /metrics"]
            let metrics = try await world.send(.GET, "\(world.adminURL)/metrics")
            #expect(metrics.status == 200)
            #expect(metrics.headers[.contentType]?.hasPrefix("text/plain; version=0.0.4") == true)
            let token = try await world.token("admin")
            for path in Set(routes.map(\.path)) + ["/v1", "/v1/slots", "/v1/tenants/tnt_x/other", "/metrics", "/v2/tenants"] {
                for method in [HTTPMethod.GET, .POST, .PUT, .PATCH, .DELETE]
                where !documented.contains("\(method) \(path)") && !outsideDocument.contains("\(method) \(path)") {
                    let reply = try await world.send(
                        method, "\(world.adminURL)\(path)", raw: method == .GET || method == .DELETE ? nil : "{}",
                        headers: [("Authorization", "Bearer \(token)")])
                    #expect([404, 405].contains(reply.status), "\(method) \(path) is served but not documented: \(reply.status)")
                    #expect(reply.headers[.contentType] == "application/problem+json", "\(method) \(path)")
                }
            }
        }
    }
}
