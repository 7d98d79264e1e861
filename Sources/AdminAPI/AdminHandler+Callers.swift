import AdminAPIModel
import FedBrokerCore
import Foundation

/// Internal services and their grants.
extension AdminHandler {
    func createCaller(_ input: Operations.CreateCaller.Input) async throws -> Operations.CreateCaller.Output {
        guard case .json(let body) = input.body else { throw AdminProblem.badRequest("expected application/json") }
        let actor = try self.actor
        guard Caller.isValidID(body.id) else {
            throw AdminProblem.invalid("id must be 1-128 characters of [A-Za-z0-9._-]")
        }
        let caller = Caller(
            id: body.id, identity: try Self.identity(body.identity), grants: try Self.grants(body.grants),
            enabled: body.enabled ?? true, requireContext: body.requireContext ?? false)
        let created = try await store.createCaller(caller, actor: actor)
        logger.info("caller created", metadata: ["fb.caller": "\(created.id)", "fb.actor": "\(logActor)"])
        return .created(
            .init(
                headers: .init(eTag: Self.etag(created.version), location: "/v1/callers/\(created.id)"),
                body: .json(Self.schema(created))))
    }

    func listCallers(_ input: Operations.ListCallers.Input) async throws -> Operations.ListCallers.Output {
        .ok(.init(body: .json(.init(items: try await store.callers().map(Self.schema)))))
    }

    func getCaller(_ input: Operations.GetCaller.Input) async throws -> Operations.GetCaller.Output {
        let caller = try await store.caller(input.path.callerId)
        return .ok(.init(headers: .init(eTag: Self.etag(caller.version)), body: .json(Self.schema(caller))))
    }

    func updateCaller(_ input: Operations.UpdateCaller.Input) async throws -> Operations.UpdateCaller.Output {
        guard case .json(let body) = input.body else { throw AdminProblem.badRequest("expected application/json") }
        let actor = try self.actor
        let expected = try Self.requiredVersion(ifMatch: input.headers.ifMatch)
        var caller = try await store.caller(input.path.callerId)
        try Self.check(expected, against: caller.version, "caller \(caller.id)")
        if let identity = body.identity { caller.identity = try Self.identity(identity) }
        if let grants = body.grants { caller.grants = try Self.grants(grants) }
        if let enabled = body.enabled { caller.enabled = enabled }
        if let requireContext = body.requireContext { caller.requireContext = requireContext }
        let updated = try await store.updateCaller(caller, actor: actor)
        logger.info("caller updated", metadata: ["fb.caller": "\(updated.id)", "fb.actor": "\(logActor)"])
        return .ok(.init(headers: .init(eTag: Self.etag(updated.version)), body: .json(Self.schema(updated))))
    }

    func deleteCaller(_ input: Operations.DeleteCaller.Input) async throws -> Operations.DeleteCaller.Output {
        let actor = try self.actor
        let expected = try Self.requiredVersion(ifMatch: input.headers.ifMatch)
        try await store.deleteCaller(input.path.callerId, expectedVersion: expected, actor: actor)
        logger.info("caller removed", metadata: ["fb.caller": "\(input.path.callerId.prefix(128))", "fb.actor": "\(logActor)"])
        return .noContent(.init())
    }

    /// The identity the framed-TCP server derives from a client certificate (docs/protocol.md,
    /// "Caller identity"): a URI SAN or an RFC 4514 subject, at most 512 bytes of printable ASCII
    /// (the server writes anything else as \XX), so it matches byte for byte.
    static func identity(_ raw: String) throws(AdminProblem) -> String {
        guard (1...512).contains(raw.utf8.count), raw.utf8.allSatisfy({ (0x20...0x7e).contains($0) }),
            raw.trimmingCharacters(in: .whitespaces) == raw
        else {
            throw .invalid(
                "identity must be what the caller's certificate proves (its URI SAN, or its subject as CN=…,O=…): 1-512 printable ASCII characters, no outer spaces")
        }
        return raw
    }

    static func grants(_ raw: [Components.Schemas.CallerGrant]) throws(AdminProblem) -> [CallerGrant] {
        var grants: [CallerGrant] = []
        for grant in raw {
            guard !grant.operations.isEmpty else { throw .invalid("a grant names at least one operation") }
            let operations = Set(grant.operations.compactMap { KeyOperation(rawValue: $0.rawValue) })
            let scope: TenantScope
            if grant.tenants == ["*"] {
                scope = .all
            } else {
                var ids: Set<TenantID> = []
                for raw in grant.tenants {
                    guard let id = TenantID(rawValue: raw) else {
                        throw .invalid("grant tenants must be tenant ids, or [\"*\"] alone for every tenant")
                    }
                    ids.insert(id)
                }
                guard !ids.isEmpty else { throw .invalid("a grant names at least one tenant, or [\"*\"]") }
                scope = .only(ids)
            }
            grants.append(CallerGrant(operations: operations, tenants: scope))
        }
        return grants
    }
}
