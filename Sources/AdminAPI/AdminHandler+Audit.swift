import AdminAPIModel
import FedBrokerCore
import Foundation

/// The audit trail, a page at a time.
extension AdminHandler {
    func queryAudit(_ input: Operations.QueryAudit.Input) async throws -> Operations.QueryAudit.Output {
        let query = input.query
        let limit = try Self.limit(query.limit)
        var after: Int64 = 0
        if let position = try Self.position(ofCursor: query.cursor) {
            guard let sequence = Int64(position), sequence >= 0 else { throw AdminProblem.badRequest("cursor is not one this API issued") }
            after = sequence
        }
        var tenant: TenantID?
        if let raw = query.tenant {
            guard let id = TenantID(rawValue: raw) else { throw AdminProblem.invalid("tenant must be a tenant id") }
            tenant = id
        }
        if (query.caller?.utf8.count ?? 0) > 512 || (query.operation?.utf8.count ?? 0) > 128 {
            throw AdminProblem.invalid("caller is at most 512 and operation at most 128 bytes")
        }
        if let from = query.from, let to = query.to, from >= to { throw AdminProblem.invalid("from must be before to") }
        let entries = try await store.auditEntries(
            AuditQuery(
                tenant: tenant, actor: query.caller, operation: query.operation, from: query.from, to: query.to,
                afterSequence: after, limit: limit + 1))
        let page = entries.prefix(limit)
        let next = entries.count > limit ? page.last.map { Self.cursor(String($0.sequence)) } : nil
        return .ok(.init(body: .json(.init(items: page.map(Self.schema), nextCursor: next))))
    }
}
