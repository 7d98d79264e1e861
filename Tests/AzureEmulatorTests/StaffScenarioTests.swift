@testable import AzureEmulator
import FedBrokerCore
import Foundation
import Testing

/// The admin application and staff in the default scenario: fields, env.sh, restarts.
@Suite struct StaffScenarioTests {
    @Test func scenarioNamesTheAdminAppAndEveryStaffUser() async throws {
        try await withEmulator { h in
            let s = h.scenario
            #expect(s.adminAudience == "api://fedbroker-admin")
            let app = try #require(h.state.read { $0.applications[s.adminAppID] })
            #expect(app.displayName == "fedbroker-admin")
            #expect(app.homeTenantId == s.isvTenantID)
            #expect(app.identifierUris == ["api://fedbroker-admin"])
            #expect(app.appRoles.map(\.value) == ["Tenants.Onboard", "Tenants.Suspend", "Callers.Manage", "Audit.Read", "Slots.Operate"])
            #expect(app.appRoles.allSatisfy { $0.allowedMemberTypes == ["User"] && $0.isEnabled && UUID(uuidString: $0.id) != nil })
            #expect(Set(s.staffUserObjectIDs.keys) == ["onboarder", "suspender", "caller-admin", "auditor", "sre", "admin", "nobody"])
            for (name, oid) in s.staffUserObjectIDs {
                let user = try #require(h.state.read { $0.user(oid) })
                #expect(user.tenantId == s.isvTenantID)
                #expect(user.userPrincipalName == "\(name)@fabrikam.onmicrosoft.com")
            }

            let env = Dictionary(s.environment(endpoints: h.endpoints, caBundlePath: "/ca.pem"), uniquingKeysWith: { a, _ in a })
            #expect(env["FEDBROKER_EMU_ADMIN_APP_ID"] == s.adminAppID)
            #expect(env["FEDBROKER_EMU_ADMIN_AUDIENCE"] == "api://fedbroker-admin")
            #expect(env["FEDBROKER_EMU_STAFF_CALLER_ADMIN_OID"] == s.staffUserObjectIDs["caller-admin"])
            for (name, _) in DefaultScenario.staffRoster {
                #expect(env[DefaultScenario.staffVariable(name)] == s.staffUserObjectIDs[name], "\(name)")
            }
            // Existing variables are still there.
            #expect(env["FEDBROKER_EMU_APP_CLIENT_ID"] == s.appClientID)
        }
    }

    @Test func staffSurviveARestartAndEnvShNamesThem() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("emu-staff-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        var first: DefaultScenario?
        try await withEmulator(stateDirectory: dir) { h in first = h.scenario }
        try await withEmulator(stateDirectory: dir) { h in
            #expect(h.scenario.adminAppID == first?.adminAppID)
            #expect(h.scenario.staffUserObjectIDs == first?.staffUserObjectIDs)
            let env = try String(contentsOf: dir.appendingPathComponent("env.sh"), encoding: .utf8)
            #expect(env.contains("export FEDBROKER_EMU_ADMIN_APP_ID='\(h.scenario.adminAppID)'"))
            #expect(env.contains("export FEDBROKER_EMU_ADMIN_AUDIENCE='api://fedbroker-admin'"))
            #expect(env.contains("export FEDBROKER_EMU_STAFF_NOBODY_OID='\(h.scenario.staffUserObjectIDs["nobody"] ?? "?")'"))
            let token = try await h.staffAccessToken("sre")
            #expect(try Harness.jwtSegment(token, 1)["roles"] as? [String] == ["Slots.Operate"])
        }
    }

    @Test func aStateDirFromBeforeStaffExistedLoadsAndGainsThem() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("emu-old-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        var appClientID = ""
        try await withEmulator(stateDirectory: dir) { h in appClientID = h.scenario.appClientID }
        // Rewrite state.json as an emulator without staff wrote it: no users, no app role
        // assignments, no admin application, applications without identifierUris/appRoles.
        let url = dir.appendingPathComponent("state.json")
        var snapshot = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        var directory = try #require(snapshot["directory"] as? [String: Any])
        directory["users"] = nil
        directory["appRoleAssignments"] = nil
        var applications = try #require(directory["applications"] as? [String: [String: Any]])
        applications = applications.filter { $0.value["displayName"] as? String != "fedbroker-admin" }
        for key in applications.keys {
            applications[key]?["identifierUris"] = nil
            applications[key]?["appRoles"] = nil
        }
        #expect(applications.count == 1)
        directory["applications"] = applications
        snapshot["directory"] = directory
        try JSONSerialization.data(withJSONObject: snapshot).write(to: url)

        try await withEmulator(stateDirectory: dir) { h in
            #expect(h.scenario.appClientID == appClientID)
            #expect(h.scenario.staffUserObjectIDs.count == 7)
            let token = try await h.staffAccessToken("admin")
            #expect((try Harness.jwtSegment(token, 1)["roles"] as? [String])?.count == 5)
            // The broker's chain still works on the upgraded state.
            #expect(try await h.wrap(h.scenario.customers[0].vaultURL, key: "cmk", token: try await h.vaultToken(customer: 0), plaintext: [1]).status == 200)
        }
    }
}
