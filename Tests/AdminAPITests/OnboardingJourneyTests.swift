import AdminAPIModel
import AdminClient
import AzureEmulator
import BrokerClient
import BrokerWire
import FedBrokerCore
import FedBrokerTestSupport
import Foundation
import NIOHTTP1
import Testing

/// The whole onboarding journey through the admin API, with the test playing the customer's
/// admin through the emulator: register, three classified validation failures fixed in turn,
/// validate, activate, serve, revoke and restore, offboard.
@Suite(.serialized) struct OnboardingJourneyTests {
    @Test("register → validate fails (no consent, no role, no tag) → validated → active → served → revoked → restored → offboarded")
    func journey() async throws {
        try await AdminWorld.with { world in
            let onboarder = try await world.client("onboarder")
            let suspender = try await world.client("suspender")
            let customer = try await world.newCustomer("Tailspin")

            // 1. Register.
            let registered = try await onboarder.registerTenant(
                headers: .init(idempotencyKey: "journey-1"),
                body: .json(.init(
                    displayName: "Tailspin Toys", geo: "europe",
                    providerConfig: .init(_type: .azure, tenantId: customer.tenantID, vaultUri: customer.vaultURL, keyName: customer.keyName))))
            guard case .created(let created) = registered else { Issue.record("register: \(registered)"); return }
            var tenant = try created.body.json
            #expect(tenant.id.hasPrefix("tnt_"))
            #expect(tenant.state == .registered)
            #expect(tenant.slotId != nil)
            #expect(created.headers.eTag == "\"v1\"")
            #expect(tenant.binding.tagName == "fedbroker-binding")
            #expect(tenant.binding.tagValue.hasPrefix("fbb-"))
            #expect(tenant.customer.consentUrl.contains("/\(customer.tenantID)/adminconsent?client_id=\(world.scenario.appClientID)"))
            #expect(tenant.customer.applicationClientId == world.scenario.appClientID)
            #expect(tenant.customer.tagCommand.contains("--tags fedbroker-binding=\(tenant.binding.tagValue)"))

            // The same Idempotency-Key again: the same tenant, not a second one.
            let replay = try await onboarder.registerTenant(
                headers: .init(idempotencyKey: "journey-1"),
                body: .json(.init(
                    displayName: "Tailspin Toys", geo: "europe",
                    providerConfig: .init(_type: .azure, tenantId: customer.tenantID, vaultUri: customer.vaultURL, keyName: customer.keyName))))
            #expect(try replay.created.body.json.id == tenant.id)

            // 2a. Not consented: the exchange in the customer's tenant fails; the remedy is consent.
            var validation = try await Self.validate(onboarder, tenant.id)
            var failed = try #require(validation.steps.first { !$0.ok })
            #expect(failed.name == "token exchange", "\(validation.steps)")
            #expect(failed.code?.hasPrefix("AADSTS") == true)
            #expect(failed.responsible == .customer)
            #expect(!validation.succeeded)

            // The customer's admin opens the consent URL (the emulator grants it and redirects).
            let consent = try await world.send(.GET, tenant.customer.consentUrl)
            #expect([200, 302].contains(consent.status), "\(consent.body)")

            // 2b. No role on the key: Key Vault's ForbiddenByRbac, and the role command as remedy.
            validation = try await Self.validate(onboarder, tenant.id)
            failed = try #require(validation.steps.first { !$0.ok })
            #expect(failed.code == "ForbiddenByRbac", "\(validation.steps)")
            #expect(failed.responsible == .customer)

            let sp = try #require(world.emulator.state.read { $0.servicePrincipal(appID: world.scenario.appClientID, tenantID: customer.tenantID) })
            let role = try await world.send(
                .POST, "\(world.endpoints.control)/control/vaults/\(customer.vaultName)/role-assignments",
                json: ["principalId": sp.objectId, "keyName": customer.keyName])
            #expect(role.status == 201, "\(role.body)")

            // 2c. No binding tag: the tag command as remedy.
            validation = try await Self.validate(onboarder, tenant.id)
            failed = try #require(validation.steps.first { !$0.ok })
            #expect(failed.code == "BINDING_TAG_MISSING", "\(validation.steps)")
            #expect(failed.remediation?.contains("fedbroker-binding=\(tenant.binding.tagValue)") == true)
            // Activation is refused while the tenant is not validated.
            let current = try await Self.get(onboarder, tenant.id)
            let early = try await onboarder.activateTenant(path: .init(tenantId: tenant.id), headers: .init(ifMatch: "\"v\(current.version)\""))
            #expect(Self.status(early) == 409)
            let unconditional = try await onboarder.activateTenant(path: .init(tenantId: tenant.id))
            #expect(Self.status(unconditional) == 428)

            let tag = try await world.send(
                .PATCH, "\(world.endpoints.control)/control/vaults/\(customer.vaultName)/keys/\(customer.keyName)",
                json: ["tags": ["fedbroker-binding": tenant.binding.tagValue]])
            #expect(tag.status == 200, "\(tag.body)")

            // 3. Validation passes; activation follows and says it cannot be undone.
            validation = try await Self.validate(onboarder, tenant.id)
            #expect(validation.succeeded, "\(validation.steps)")
            #expect(validation.steps.map(\.name).contains("binding tag"))
            #expect(validation.steps.last?.name == "round trip")
            tenant = try await Self.get(onboarder, tenant.id)
            #expect(tenant.state == .validated)
            let activated = try await onboarder.activateTenant(path: .init(tenantId: tenant.id), headers: .init(ifMatch: "\"v\(tenant.version)\""))
            let activation = try activated.ok.body.json
            #expect(activation.irreversible)
            #expect(activation.notice.contains("cannot be undone"))
            #expect(activation.tenant.state == .active)
            #expect(activation.tenant.keyLocked)

            // The key is locked now.
            let moved = try await onboarder.setTenantKey(
                path: .init(tenantId: tenant.id), headers: .init(ifMatch: "\"v\(activation.tenant.version)\""),
                body: .json(.init(vaultUri: customer.vaultURL, keyName: "other")))
            #expect(Self.status(moved) == 409)

            // 4. An internal service, onboarded through the API, generates and unwraps data keys.
            let callerAdmin = try await world.client("caller-admin")
            let callerCreated = try await callerAdmin.createCaller(
                body: .json(.init(id: "billing", identity: LocalPKI.callerIdentity("billing-api"), grants: [.init(operations: [.generateDataKey, .unwrap], tenants: [tenant.id])])))
            #expect(try callerCreated.created.body.json.version == 1)
            let service = try world.broker("billing-api")
            let deadline = Date().addingTimeInterval(120)
            let generated = try await service.generateDataKey(tenant: tenant.id, deadline: deadline)
            #expect(try await service.unwrap(generated.blob, deadline: deadline) == generated.plaintext)

            // 5. The customer removes the broker's role: refused, and the tenant lost access.
            let vault = customer.vaultName.lowercased()
            let assignment = try #require(world.emulator.state.read { $0.vaults[vault]?.roleAssignments.first { $0.removedFrom == nil } })
            try world.emulator.state.removeRoleAssignment(vault: customer.vaultName, id: assignment.id)
            let revoked = await #expect(throws: BrokerCallError.self) { _ = try await service.unwrap(generated.blob, deadline: deadline) }
            #expect(revoked?.wireStatus?.code == .permissionDenied)
            #expect(revoked?.wireStatus?.reason == .accessRevokedByCustomer)
            tenant = try await Self.get(onboarder, tenant.id)
            #expect(tenant.state == .accessLost)
            #expect(tenant.suspensionReason == "role_removed")

            // Restore validates first: refused while the role is still missing.
            let refused = try await suspender.restoreTenant(path: .init(tenantId: tenant.id), headers: .init(ifMatch: "\"v\(tenant.version)\""))
            #expect(try refused.ok.body.json.validation.succeeded == false)
            #expect(try await Self.get(onboarder, tenant.id).state == .accessLost)

            _ = try world.emulator.state.assignRole(vault: customer.vaultName, principalID: assignment.principalId, keyName: assignment.keyScope)
            tenant = try await Self.get(onboarder, tenant.id)
            let restored = try await suspender.restoreTenant(path: .init(tenantId: tenant.id), headers: .init(ifMatch: "\"v\(tenant.version)\""))
            let restoredOutcome = try restored.ok.body.json
            #expect(restoredOutcome.validation.succeeded, "\(restoredOutcome.validation.steps)")
            #expect(restoredOutcome.tenant.state == .active)
            #expect(try await service.unwrap(generated.blob, deadline: deadline) == generated.plaintext)

            // 6. Offboard: If-Match is required; then nothing more is served.
            let noIfMatch = try await suspender.offboardTenant(path: .init(tenantId: tenant.id))
            #expect(Self.status(noIfMatch) == 428)
            let stale = try await suspender.offboardTenant(path: .init(tenantId: tenant.id), headers: .init(ifMatch: "\"v1\""))
            #expect(Self.status(stale) == 412)
            let offboarded = try await suspender.offboardTenant(
                path: .init(tenantId: tenant.id), headers: .init(ifMatch: "\"v\(restoredOutcome.tenant.version)\""))
            #expect(try offboarded.ok.body.json.state == .offboarded)
            let offboardedGenerate = await #expect(throws: BrokerCallError.self) { _ = try await service.generateDataKey(tenant: tenant.id, deadline: deadline) }
            let offboardedUnwrap = await #expect(throws: BrokerCallError.self) { _ = try await service.unwrap(generated.blob, deadline: deadline) }
            for refused in [offboardedGenerate, offboardedUnwrap] {
                #expect(refused?.wireStatus?.code == .failedPrecondition)
                #expect(refused?.wireStatus?.reason == .tenantSuspended)
            }
            await service.close()

            // The audit trail has the staff's actions, with who did them.
            let auditor = try await world.client("auditor")
            let audit = try await auditor.queryAudit(query: .init(tenant: tenant.id, limit: 500)).ok.body.json
            let operations = audit.items.map(\.operation)
            for expected in ["tenant.registered", "tenant.validation", "tenant.activated", "tenant.access_lost.role_removed", "tenant.access_restored", "tenant.offboarded"] {
                #expect(operations.contains(expected), "\(operations)")
            }
            let onboarderOID = try #require(world.scenario.staffUserObjectIDs["onboarder"])
            #expect(audit.items.first { $0.operation == "tenant.activated" }?.actor.hasPrefix("staff:\(onboarderOID) (") == true)
            // Filtering by the staff member's `staff:<oid>` finds their actions.
            let mine = try await auditor.queryAudit(query: .init(caller: "staff:\(onboarderOID)", limit: 500)).ok.body.json
            #expect(Set(mine.items.map(\.operation)).isSuperset(of: ["tenant.registered", "tenant.activated"]))
            #expect(mine.items.allSatisfy { $0.actor.hasPrefix("staff:\(onboarderOID) (") })
        }
    }

    static func validate(_ client: Client, _ id: String) async throws -> Components.Schemas.ValidationResult {
        try await client.validateTenant(path: .init(tenantId: id)).ok.body.json.validation
    }

    static func get(_ client: Client, _ id: String) async throws -> Components.Schemas.Tenant {
        try await client.getTenant(path: .init(tenantId: id)).ok.body.json
    }

    /// The status of an answer that is expected to be a problem.
    static func status<T>(_ output: T) -> Int? {
        for child in Mirror(reflecting: output).children {
            if let tuple = child.value as? (statusCode: Int, Components.Responses.Problem) { return tuple.statusCode }
        }
        return nil
    }
}
