import AdminAPIModel
import Crypto
import FedBrokerCore
import Foundation

/// Tenants: register, read, validate, activate, suspend, restore, offboard, change the key.
extension AdminHandler {
    func registerTenant(_ input: Operations.RegisterTenant.Input) async throws -> Operations.RegisterTenant.Output {
        guard case .json(let body) = input.body else { throw AdminProblem.badRequest("expected application/json") }
        let actor = try self.actor
        guard let entraTenant = EntraTenantID(rawValue: body.providerConfig.tenantId) else {
            throw AdminProblem.invalid("provider_config.tenant_id must be the customer's Entra tenant id (a GUID)")
        }
        guard configuration.geos.contains(body.geo) else {
            throw AdminProblem.invalid("geo must be one of \(configuration.geos.sorted().joined(separator: ", "))")
        }
        let key = try keyReference(vaultURI: body.providerConfig.vaultUri, keyName: body.providerConfig.keyName)
        var idempotency: RegistrationIdempotency?
        if let idempotencyKey = input.headers.idempotencyKey {
            guard (1...255).contains(idempotencyKey.utf8.count), idempotencyKey.utf8.allSatisfy({ (0x21...0x7e).contains($0) }) else {
                throw AdminProblem.badRequest("Idempotency-Key must be 1-255 printable ASCII characters")
            }
            idempotency = RegistrationIdempotency(key: idempotencyKey, fingerprint: Self.fingerprint(body))
        }
        let registration = try TenantRegistration(
            id: Self.newTenantID(), entraTenantID: entraTenant, displayName: body.displayName, geo: body.geo, key: key)
        let result = try await store.registerTenant(
            registration, bindingValue: TenantOnboarding.newBindingValue(), idempotency: idempotency, actor: actor)
        logger.info(
            result.created ? "tenant registered" : "tenant registration replayed",
            metadata: ["fb.tenant": "\(result.tenant.id)", "fb.slot": "\(result.tenant.slotID?.rawValue ?? "none")", "fb.actor": "\(logActor)"])
        return .created(
            .init(
                headers: .init(eTag: Self.etag(result.tenant.version), location: "/v1/tenants/\(result.tenant.id)"),
                body: .json(schema(result.tenant, result.onboarding))))
    }

    func listTenants(_ input: Operations.ListTenants.Input) async throws -> Operations.ListTenants.Output {
        let limit = try Self.limit(input.query.limit)
        if (input.query.geo?.utf8.count ?? 0) > 64 { throw AdminProblem.invalid("geo is at most 64 characters") }
        let after = try Self.position(ofCursor: input.query.cursor).map { raw throws(AdminProblem) in
            guard let id = TenantID(rawValue: raw) else { throw AdminProblem.badRequest("cursor is not one this API issued") }
            return id
        }
        let query = TenantQuery(
            state: input.query.state.flatMap { TenantState(rawValue: $0.rawValue) }, geo: input.query.geo, after: after,
            limit: limit + 1)
        let page = try await store.tenants(matching: query)
        let onboardings = try await store.onboardings(page.prefix(limit).map(\.id))
        let items = page.prefix(limit).map { schema($0, onboardings[$0.id]) }
        let next = page.count > limit ? page.prefix(limit).last.map { Self.cursor($0.id.rawValue) } : nil
        return .ok(.init(body: .json(.init(items: items, nextCursor: next))))
    }

    func getTenant(_ input: Operations.GetTenant.Input) async throws -> Operations.GetTenant.Output {
        let (tenant, onboarding) = try await self.load(input.path.tenantId)
        return .ok(.init(headers: .init(eTag: Self.etag(tenant.version)), body: .json(schema(tenant, onboarding))))
    }

    func validateTenant(_ input: Operations.ValidateTenant.Input) async throws -> Operations.ValidateTenant.Output {
        let actor = try self.actor
        let (tenant, onboarding) = try await self.load(
            input.path.tenantId, expected: try Self.version(ifMatch: input.headers.ifMatch))
        guard tenant.state != .offboarded else {
            throw AdminProblem(BrokerError(.illegalTenantTransition, "tenant \(tenant.id) is offboarded"))
        }
        let record = try await self.runValidation(tenant, onboarding)
        let updated = try await store.recordValidation(tenant.id, expectedVersion: tenant.version, result: record, actor: actor)
        logger.info(
            "tenant validated",
            metadata: ["fb.tenant": "\(tenant.id)", "fb.succeeded": "\(record.succeeded)", "fb.code": "\(record.failureCode ?? "-")"])
        var stored = onboarding
        stored.lastValidation = record
        return .ok(
            .init(
                headers: .init(eTag: Self.etag(updated.version)),
                body: .json(.init(tenant: schema(updated, stored), validation: Self.schema(record)))))
    }

    func activateTenant(_ input: Operations.ActivateTenant.Input) async throws -> Operations.ActivateTenant.Output {
        let actor = try self.actor
        let (tenant, onboarding) = try await self.load(
            input.path.tenantId, expected: try Self.requiredVersion(ifMatch: input.headers.ifMatch))
        guard tenant.state == .validated else {
            throw AdminProblem(
                BrokerError(.illegalTenantTransition, "only a validated tenant can be activated; \(tenant.id) is \(tenant.state)"))
        }
        guard onboarding.allowsActivation(now: clock.now, freshness: configuration.validationFreshness) else {
            throw AdminProblem.conflict(
                "validation_stale",
                "the last successful validation of \(tenant.id) is older than \(Int(configuration.validationFreshness)) s: validate again, then activate")
        }
        let updated = try await store.transitionTenant(
            tenant.id, expectedVersion: tenant.version, event: .activate, reason: nil, actor: actor)
        logger.notice("tenant activated; its key is now locked", metadata: ["fb.tenant": "\(tenant.id)", "fb.key": "\(tenant.key)"])
        return .ok(
            .init(
                headers: .init(eTag: Self.etag(updated.version)),
                body: .json(
                    .init(
                        tenant: schema(updated, onboarding), irreversible: true,
                        notice: "Tenant \(tenant.id) is active and its key \(tenant.key.vaultURL)/keys/\(tenant.key.keyName) is locked for good: this cannot be undone. Key versions may still rotate."
                    ))))
    }

    func suspendTenant(_ input: Operations.SuspendTenant.Input) async throws -> Operations.SuspendTenant.Output {
        guard case .json(let body) = input.body else { throw AdminProblem.badRequest("expected application/json") }
        let actor = try self.actor
        let reason = body.reason.trimmingCharacters(in: .whitespacesAndNewlines)
        guard (1...512).contains(reason.count) else { throw AdminProblem.invalid("reason must be 1-512 characters") }
        let (tenant, onboarding) = try await self.load(
            input.path.tenantId, expected: try Self.requiredVersion(ifMatch: input.headers.ifMatch))
        let updated = try await store.transitionTenant(
            tenant.id, expectedVersion: tenant.version, event: .suspend, reason: AdminProblem.bounded(reason), actor: actor)
        logger.notice("tenant suspended by an operator", metadata: ["fb.tenant": "\(tenant.id)", "fb.actor": "\(logActor)"])
        var stored = onboarding
        stored.suspensionReason = AdminProblem.bounded(reason)
        return .ok(.init(headers: .init(eTag: Self.etag(updated.version)), body: .json(schema(updated, stored))))
    }

    func restoreTenant(_ input: Operations.RestoreTenant.Input) async throws -> Operations.RestoreTenant.Output {
        let actor = try self.actor
        var (tenant, onboarding) = try await self.load(
            input.path.tenantId, expected: try Self.requiredVersion(ifMatch: input.headers.ifMatch))
        // access_lost: the operator does now what the re-probe would do at its next due time.
        // suspended: only an operator lifts it, and never without a validation that passes.
        let event: TenantEvent
        switch tenant.state {
        case .accessLost: event = .accessRestored
        case .suspended: event = .restore
        default:
            throw AdminProblem(
                BrokerError(.illegalTenantTransition, "only a suspended or access_lost tenant can be restored; \(tenant.id) is \(tenant.state)"))
        }
        let record = try await self.runValidation(tenant, onboarding)
        if record.succeeded {
            // One transaction: a failure leaves the tenant suspended (or access_lost) with nothing
            // recorded, so the client's error is the whole truth and a retry of restore finds it
            // still to restore.
            tenant = try await store.restoreTenant(tenant.id, expectedVersion: tenant.version, event: event, validation: record, actor: actor)
            onboarding.suspensionReason = nil
        } else {
            tenant = try await store.recordValidation(tenant.id, expectedVersion: tenant.version, result: record, actor: actor)
        }
        onboarding.lastValidation = record
        logger.notice(
            record.succeeded ? "tenant restored" : "tenant restore refused: validation failed",
            metadata: ["fb.tenant": "\(tenant.id)", "fb.state": "\(tenant.state)", "fb.code": "\(record.failureCode ?? "-")"])
        return .ok(
            .init(
                headers: .init(eTag: Self.etag(tenant.version)),
                body: .json(.init(tenant: schema(tenant, onboarding), validation: Self.schema(record)))))
    }

    func offboardTenant(_ input: Operations.OffboardTenant.Input) async throws -> Operations.OffboardTenant.Output {
        let actor = try self.actor
        let (tenant, onboarding) = try await self.load(
            input.path.tenantId, expected: try Self.requiredVersion(ifMatch: input.headers.ifMatch))
        let updated = try await store.transitionTenant(
            tenant.id, expectedVersion: tenant.version, event: .offboard, reason: nil, actor: actor)
        logger.notice("tenant offboarded", metadata: ["fb.tenant": "\(tenant.id)", "fb.actor": "\(logActor)"])
        return .ok(.init(headers: .init(eTag: Self.etag(updated.version)), body: .json(schema(updated, onboarding))))
    }

    func setTenantKey(_ input: Operations.SetTenantKey.Input) async throws -> Operations.SetTenantKey.Output {
        guard case .json(let body) = input.body else { throw AdminProblem.badRequest("expected application/json") }
        let actor = try self.actor
        let expected = try Self.requiredVersion(ifMatch: input.headers.ifMatch)
        let key = try keyReference(vaultURI: body.vaultUri, keyName: body.keyName)
        let (tenant, onboarding) = try await self.load(input.path.tenantId, expected: expected)
        guard !tenant.lifecycle.wasActivated else {
            throw AdminProblem(BrokerError(.keyLocked, "tenant \(tenant.id) was activated: its key is locked for good"))
        }
        let updated = try await store.changeTenantKey(tenant.id, expectedVersion: tenant.version, to: key, actor: actor)
        return .ok(.init(headers: .init(eTag: Self.etag(updated.version)), body: .json(schema(updated, onboarding))))
    }

    // MARK: Helpers

    /// The tenant and its onboarding record; with `expected` (from `If-Match`), 412 when the
    /// tenant moved past it.
    func load(_ rawID: String, expected: RecordVersion? = nil) async throws -> (Tenant, TenantOnboarding) {
        let id = try Self.tenantID(rawID)
        let tenant = try await store.tenant(id)
        try Self.check(expected, against: tenant.version, "tenant \(tenant.id)")
        let onboarding = try await store.onboarding(id) ?? TenantOnboarding(bindingValue: "")
        return (tenant, onboarding)
    }

    /// The validation through the tenant's own slot, which must be serving.
    func runValidation(_ tenant: Tenant, _ onboarding: TenantOnboarding) async throws -> ValidationRecord {
        guard let slotID = tenant.slotID else {
            throw AdminProblem(BrokerError(.noActiveSlot, "tenant \(tenant.id) is on no FIC slot: an SRE must add an active slot"))
        }
        let slot = try await store.slot(slotID)
        guard slot.state.isServing else {
            throw AdminProblem.conflict("slot_not_serving", "tenant \(tenant.id)'s slot \(slotID) is \(slot.state), not serving")
        }
        guard !onboarding.bindingValue.isEmpty else {
            throw AdminProblem.conflict("no_binding", "tenant \(tenant.id) was not registered through onboarding and has no binding value")
        }
        return await validator.validate(tenant, slot: slot, bindingValue: onboarding.bindingValue)
    }

    /// `tnt_` and 20 characters of base32 (100 bits): unguessable, and safe in every id grammar.
    static func newTenantID() -> TenantID {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567")
        var generator = SystemRandomNumberGenerator()
        let suffix = String((0..<20).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &generator)] })
        return TenantID(rawValue: "tnt_" + suffix)!
    }

    /// What a registration asked, canonically, so a replay under the same Idempotency-Key can be
    /// told apart from a different request.
    static func fingerprint(_ body: Components.Schemas.TenantRegistration) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = (try? encoder.encode(body)) ?? Data()
        return SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }
}
