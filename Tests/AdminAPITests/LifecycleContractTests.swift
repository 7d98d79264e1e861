import AdminAPIModel
import FedBrokerCore
import Foundation
import Testing

/// The admin API's side of issue 12's lifecycle: `access_lost` apart from `suspended` on the wire,
/// and the per-caller context policy, checked as raw JSON (the field names are the contract).
@Suite(.serialized) struct LifecycleContractTests {
    @Test("An access_lost tenant shows what the broker observed; an operator's suspension replaces it, and restore validates first")
    func accessLostThenSuspended() async throws {
        try await AdminWorld.with { world in
            let customer = world.scenario.customers[0]
            let onboarder = [("Authorization", "Bearer \(try await world.token("onboarder"))")]
            let suspender = [("Authorization", "Bearer \(try await world.token("suspender"))")]
            let registered = try await world.send(
                .POST, "\(world.adminURL)/v1/tenants", json: AdminAPIContractTests.registration(customer.tenantID, vault: customer.vaultURL),
                headers: onboarder)
            #expect(registered.status == 201, "\(registered.body)")
            let id = try #require(TenantID(rawValue: registered.object["id"] as? String ?? ""))

            // What the serving path records when the customer's side refuses: no operator involved.
            let store = world.app.store
            var tenant = try await store.tenant(id)
            tenant = try await store.transitionTenant(id, expectedVersion: tenant.version, event: .validationSucceeded, actor: "onboarding")
            tenant = try await store.transitionTenant(id, expectedVersion: tenant.version, event: .activate, actor: "onboarding")
            tenant = try await store.transitionTenant(id, expectedVersion: tenant.version, event: .accessLost(.roleRemoved), actor: "fedbroker")

            let lost = try await world.send(.GET, "\(world.adminURL)/v1/tenants/\(id)", headers: onboarder)
            #expect(lost.object["state"] as? String == "access_lost")
            #expect(lost.object["suspension_reason"] as? String == "role_removed")
            let listed = try await world.send(.GET, "\(world.adminURL)/v1/tenants?state=access_lost", headers: onboarder)
            #expect(((listed.object["items"] as? [[String: Any]]) ?? []).compactMap { $0["id"] as? String } == [id.rawValue])
            #expect(try await world.send(.GET, "\(world.adminURL)/v1/tenants?state=disabled", headers: onboarder).status == 400)

            // An operator suspends it: their reason now, and the broker stops probing it.
            let suspended = try await world.send(
                .POST, "\(world.adminURL)/v1/tenants/\(id)/suspend", json: ["reason": "customer is leaving, ticket 4711"],
                headers: suspender + [("If-Match", "\"v\(tenant.version.rawValue)\"")])
            #expect(suspended.status == 200, "\(suspended.body)")
            #expect(suspended.object["state"] as? String == "suspended")
            #expect(suspended.object["suspension_reason"] as? String == "customer is leaving, ticket 4711")
            #expect(try await store.claimAccessProbe(id, schedule: .standard) == .notLost)

            // Restore validates first; this key carries no binding tag, so it fails and nothing moves.
            tenant = try await store.tenant(id)
            let restore = try await world.send(
                .POST, "\(world.adminURL)/v1/tenants/\(id)/restore", headers: suspender + [("If-Match", "\"v\(tenant.version.rawValue)\"")])
            #expect(restore.status == 200, "\(restore.body)")
            #expect((restore.object["validation"] as? [String: Any])?["succeeded"] as? Bool == false)
            #expect(try await store.tenant(id).state == .suspended)
        }
    }

    @Test("require_context: false unless given, set on create, changed on update, read back; not a boolean is 400")
    func callerContextPolicy() async throws {
        try await AdminWorld.with { world in
            let auth = [("Authorization", "Bearer \(try await world.token("caller-admin"))")]
            let url = "\(world.adminURL)/v1/callers"
            let grants: [[String: Any]] = [["operations": ["unwrap"], "tenants": ["*"]]]

            let plain = try await world.send(.POST, url, json: ["id": "plain", "identity": "plain-api", "grants": grants], headers: auth)
            #expect(plain.status == 201, "\(plain.body)")
            #expect(plain.object["require_context"] as? Bool == false)

            let strict = try await world.send(
                .POST, url, json: ["id": "strict", "identity": "strict-api", "grants": grants, "require_context": true], headers: auth)
            #expect(strict.status == 201, "\(strict.body)")
            #expect(strict.object["require_context"] as? Bool == true)
            #expect(try await world.app.store.caller("strict").requireContext)

            let relaxed = try await world.send(
                .PATCH, "\(url)/strict", json: ["require_context": false], headers: auth + [("If-Match", "\"v1\"")])
            #expect(relaxed.status == 200, "\(relaxed.body)")
            #expect(relaxed.object["require_context"] as? Bool == false)
            #expect(relaxed.object["version"] as? Int == 2)
            let read = try await world.send(.GET, "\(url)/strict", headers: auth)
            #expect(read.object["require_context"] as? Bool == false)

            let wrongType = try await world.send(
                .POST, url, json: ["id": "bad", "identity": "bad-api", "grants": grants, "require_context": "yes"], headers: auth)
            #expect(wrongType.status == 400, "\(wrongType.body)")
            #expect(try await world.app.store.callers().map(\.id) == ["plain", "strict"])
        }
    }
}
