import AdminAPIModel
import AdminClient
import ArgumentParser
import Foundation

/// `fedbroker audit query`: the audit trail through the admin API.
struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "Read the audit trail (admin API, role Audit.Read).", subcommands: [Query.self])

    struct Query: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Audit records, oldest first, filtered.")
        @Option(help: "Only this tenant.") var tenant: String?
        @Option(help: "Only this actor (a caller's identity, or staff:<oid> (<name>)).") var caller: String?
        @Option(help: "Only this operation, exactly as recorded (key.unwrap, key.generate_data_key, tenant.activated, slot.job.created, …).") var operation: String?
        @Option(help: "From this time (ISO 8601, e.g. 2026-12-03T10:00:00Z).") var from: String?
        @Option(help: "Before this time (ISO 8601).") var to: String?
        @Option(help: "Records per page (1-500).") var limit: Int = 100
        @Flag(help: "Follow every page.") var all = false
        @OptionGroup var admin: AdminOptions

        func run() async throws {
            let formatter = ISO8601DateFormatter()
            let fromDate = try from.map { text in
                guard let date = formatter.date(from: text) else { throw ValidationError("--from is not ISO 8601: \(text)") }
                return date
            }
            let toDate = try to.map { text in
                guard let date = formatter.date(from: text) else { throw ValidationError("--to is not ISO 8601: \(text)") }
                return date
            }
            try await AdminConnection.with(admin) { connection in
                var cursor: String?
                var records: [Components.Schemas.AuditRecord] = []
                repeat {
                    switch try await connection.client.queryAudit(
                        query: .init(tenant: tenant, caller: caller, operation: operation, from: fromDate, to: toDate, cursor: cursor, limit: limit))
                    {
                    case .ok(let ok):
                        let page = try ok.body.json
                        records += page.items
                        cursor = page.nextCursor
                    case .default(let status, let problem): throw connection.fail(status, problem)
                    }
                } while all && cursor != nil
                if admin.json { return try connection.printJSON(Components.Schemas.AuditPage(items: records, nextCursor: cursor)) }
                print(Table.render(
                    ["TIME", "ACTOR", "TENANT", "OPERATION", "OUTCOME", "DETAIL"],
                    records.map {
                        [formatter.string(from: $0.time), $0.actor, $0.tenantId ?? "-", $0.operation,
                         $0.outcome == .success ? "ok" : "failed \($0.errorCode ?? "")", $0.detail ?? ""]
                    }))
            }
        }
    }
}
