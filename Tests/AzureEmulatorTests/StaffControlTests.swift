@testable import AzureEmulator
import FedBrokerCore
import Foundation
import Testing

/// The control API for applications exposing an API, users and app role assignments.
@Suite struct StaffControlTests {
    @Test func scriptAnAPIAppAUserAndAnAssignmentFromScratch() async throws {
        try await withEmulator(seed: false) { h in
            let control = "\(h.endpoints.control)/control"
            let isv = try #require(try await h.json(.POST, "\(control)/tenants", #"{"displayName":"ISV","domain":"isv.example"}"#).json["id"] as? String)
            let app = try await h.json(.POST, "\(control)/applications", #"""
                {"homeTenantId":"\#(isv)","displayName":"admin-api","identifierUris":["api://admin-api"],
                 "appRoles":[{"value":"Audit.Read","description":"Read the audit log."},
                             {"id":"6f1c0c52-3b83-4d5b-9a63-0d4cb59d2d10","value":"Apps.Only","allowedMemberTypes":["Application"]}]}
                """#)
            #expect(app.status == 201, "\(app.body)")
            let appID = try #require(app.json["appId"] as? String)
            #expect(app.json["identifierUris"] as? [String] == ["api://admin-api"])
            let roles = try #require(app.json["appRoles"] as? [[String: Any]])
            #expect(roles.count == 2)
            #expect(roles[0]["value"] as? String == "Audit.Read")
            #expect(roles[0]["displayName"] as? String == "Audit.Read")
            #expect(roles[0]["allowedMemberTypes"] as? [String] == ["User"])
            #expect(roles[0]["isEnabled"] as? Bool == true)
            #expect(UUID(uuidString: try #require(roles[0]["id"] as? String)) != nil)
            #expect(roles[1]["id"] as? String == "6f1c0c52-3b83-4d5b-9a63-0d4cb59d2d10")

            let user = try await h.json(.POST, "\(control)/users", #"{"tenantId":"\#(isv)","displayName":"Ada Auditor"}"#)
            #expect(user.status == 201)
            #expect(user.json["userPrincipalName"] as? String == "ada.auditor@isv.example")
            #expect(user.json["tenantId"] as? String == isv)
            #expect(user.json["displayName"] as? String == "Ada Auditor")
            let oid = try #require(user.json["objectId"] as? String)
            let named = try await h.json(.POST, "\(control)/users", #"{"tenantId":"\#(isv)","displayName":"Bob","userPrincipalName":"bob@isv.example"}"#)
            #expect(named.json["userPrincipalName"] as? String == "bob@isv.example")
            #expect(try await h.json(.POST, "\(control)/users", #"{"tenantId":"\#(isv)","displayName":"Bob","userPrincipalName":"bob@isv.example"}"#).status == 409)
            #expect(try await h.json(.POST, "\(control)/users", #"{"tenantId":"\#(UUID().uuidString)","displayName":"X"}"#).status == 404)

            let assigned = try await h.json(.POST, "\(control)/app-role-assignments", #"{"appId":"\#(appID)","principalId":"\#(oid)","role":"Audit.Read"}"#)
            #expect(assigned.status == 201, "\(assigned.body)")
            #expect(assigned.json["appId"] as? String == appID)
            #expect(assigned.json["principalId"] as? String == oid)
            #expect(assigned.json["role"] as? String == "Audit.Read")
            #expect(assigned.json["appRoleId"] as? String == roles[0]["id"] as? String)
            let assignmentID = try #require(assigned.json["id"] as? String)

            let token = try #require(try await h.staffToken(user: oid, resource: "api://admin-api").json["access_token"] as? String)
            #expect(try Harness.jwtSegment(token, 1)["roles"] as? [String] == ["Audit.Read"])
            #expect(try Harness.jwtSegment(token, 1)["upn"] as? String == "ada.auditor@isv.example")

            // Removing the assignment takes the role out of the next token.
            #expect(try await h.send(.DELETE, "\(control)/app-role-assignments/\(assignmentID)").status == 200)
            let after = try #require(try await h.staffToken(user: oid, resource: "api://admin-api").json["access_token"] as? String)
            #expect(try Harness.jwtSegment(after, 1)["roles"] == nil)
            let again = try await h.send(.DELETE, "\(control)/app-role-assignments/\(assignmentID)")
            #expect(again.status == 404)
            #expect(again.errorCode == "NotFound")

            let state = try await h.send(.GET, "\(control)/state")
            #expect((state.json["users"] as? [[String: Any]])?.count == 2)
            #expect((state.json["applications"] as? [[String: Any]])?.first?["identifierUris"] as? [String] == ["api://admin-api"])
        }
    }

    @Test func assignmentsToUnknownThingsAreRefused() async throws {
        try await withEmulator { h in
            let s = h.scenario
            let control = "\(h.endpoints.control)/control/app-role-assignments"
            let nobody = try #require(s.staffUserObjectIDs["nobody"])
            func assign(app: String, user: String, role: String) async throws -> Harness.Reply {
                try await h.json(.POST, control, #"{"appId":"\#(app)","principalId":"\#(user)","role":"\#(role)"}"#)
            }
            let badRole = try await assign(app: s.adminAppID, user: nobody, role: "Tenants.Destroy")
            #expect(badRole.status == 400)
            #expect(badRole.errorCode == "InvalidInput")
            #expect(((badRole.json["error"] as? [String: Any])?["message"] as? String)?.contains("no app role 'Tenants.Destroy'") == true)
            let badUser = try await assign(app: s.adminAppID, user: UUID().uuidString, role: "Audit.Read")
            #expect(badUser.status == 404)
            #expect(badUser.errorCode == "NotFound")
            let badApp = try await assign(app: UUID().uuidString, user: nobody, role: "Audit.Read")
            #expect(badApp.status == 404)
            // A role value is case-sensitive, as in the roles claim.
            #expect(try await assign(app: s.adminAppID, user: nobody, role: "audit.read").status == 400)
            // The same role twice: Graph's "already exists".
            let onboarder = try #require(s.staffUserObjectIDs["onboarder"])
            let duplicate = try await assign(app: s.adminAppID, user: onboarder, role: "Tenants.Onboard")
            #expect(duplicate.status == 409)
            // A user of a tenant where the app has no service principal cannot hold its roles.
            let customerUser = try h.state.createUser(tenantID: s.customers[0].tenantID, displayName: "Carol")
            #expect(try await assign(app: s.adminAppID, user: customerUser.objectId, role: "Audit.Read").status == 404)
            // Missing field: the control API's malformed-body error.
            #expect(try await h.json(.POST, control, #"{"appId":"\#(s.adminAppID)"}"#).status == 400)

            // Nothing above changed nobody's token.
            #expect(try Harness.jwtSegment(try await h.staffAccessToken("nobody"), 1)["roles"] == nil)
        }
    }

    @Test func applicationRulesForIdentifierURIsAndRoles() async throws {
        try await withEmulator { h in
            let control = "\(h.endpoints.control)/control/applications"
            let isv = h.scenario.isvTenantID
            func create(_ extra: String) async throws -> Harness.Reply {
                try await h.json(.POST, control, #"{"homeTenantId":"\#(isv)","displayName":"x",\#(extra)}"#)
            }
            // Existing callers (no identifierUris, no appRoles) keep working.
            let plain = try await h.json(.POST, control, #"{"homeTenantId":"\#(isv)","displayName":"plain"}"#)
            #expect(plain.status == 201)
            #expect(plain.json["identifierUris"] as? [String] == [])
            #expect(try await create(#""identifierUris":["not a uri"]"#).status == 400)
            let taken = try await create(#""identifierUris":["API://FEDBROKER-ADMIN"]"#)  // compared case-insensitively
            #expect(taken.status == 409)
            #expect(taken.errorCode == "Conflict")
            #expect(try await create(#""identifierUris":["https://vault.azure.net"]"#).status == 409)
            #expect(try await create(#""appRoles":[{"value":"Has Space"}]"#).status == 400)
            #expect(try await create(#""appRoles":[{"value":"A"},{"value":"A"}]"#).status == 400)
            #expect(try await create(#""appRoles":[{"value":"A","allowedMemberTypes":["Robot"]}]"#).status == 400)
            #expect(try await create(#""appRoles":[{"id":"not-a-guid","value":"A"}]"#).status == 400)
            // A disabled role stays defined but cannot be assigned; an enabled one next to it can.
            let app = try await create(#""identifierUris":["api://with-disabled"],"appRoles":[{"value":"Old","isEnabled":false},{"value":"New"}]"#)
            #expect(app.status == 201)
            let appID = try #require(app.json["appId"] as? String)
            let user = try #require(h.scenario.staffUserObjectIDs["nobody"])
            func assign(_ role: String) async throws -> Int {
                try await h.json(.POST, "\(h.endpoints.control)/control/app-role-assignments", #"{"appId":"\#(appID)","principalId":"\#(user)","role":"\#(role)"}"#).status
            }
            #expect(try await assign("Old") == 400)
            #expect(try await assign("New") == 201)
            let token = try #require(try await h.staffToken(user: user, resource: "api://with-disabled").json["access_token"] as? String)
            #expect(try Harness.jwtSegment(token, 1)["roles"] as? [String] == ["New"])
        }
    }
}
