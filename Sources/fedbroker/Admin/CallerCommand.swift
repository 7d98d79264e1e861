import AdminAPIModel
import AdminClient
import ArgumentParser
import Foundation

/// `fedbroker caller …`: the internal services allowed to call the broker, and their grants.
struct CallerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "caller",
        abstract: "Manage internal callers and their grants (admin API).",
        discussion: """
            A caller is identified by what its mTLS client certificate proves: its URI SAN (a SPIFFE ID), or \
            its subject DN in RFC 4514 form (CN=…,O=…), byte for byte (docs/protocol.md). A grant is OPS:TENANTS: \
            operations (generate_data_key, wrap, unwrap, rewrap, key_status) and tenants (ids, or * for all), \
            e.g. --grant generate_data_key,unwrap:* or --grant unwrap:tnt_a,tnt_b. A caller created with \
            --require-context (or changed with `caller set ID --require-context true`) must present a context on \
            every GenerateDataKey, Wrap, Unwrap and Rewrap. Exit codes as for `fedbroker tenant`.
            """,
        subcommands: [Add.self, List.self, Show.self, SetPolicy.self, Grant.self, Revoke.self, Remove.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Allow an internal service.")
        @Argument(help: "A stable name for the caller (billing-api).") var id: String
        @Option(help: "The identity its client certificate proves: its URI SAN (spiffe://…), or its subject DN in RFC 4514 form (CN=…,O=…).") var identity: String
        @Option(help: "OPS:TENANTS; repeatable.") var grant: [String] = []
        @Flag(help: "Create it disabled.") var disabled = false
        @Flag(help: "Refuse any of its operations that presents no context.") var requireContext = false
        @OptionGroup var admin: AdminOptions

        func run() async throws {
            let grants = try grant.map(CallerCommand.parse)
            try await AdminConnection.with(admin) { connection in
                switch try await connection.client.createCaller(
                    body: .json(.init(id: id, identity: identity, grants: grants, enabled: !disabled, requireContext: requireContext)))
                {
                case .created(let created): try CallerCommand.report(try created.body.json, connection)
                case .default(let status, let problem): throw connection.fail(status, problem)
                }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List callers.")
        @OptionGroup var admin: AdminOptions

        func run() async throws {
            try await AdminConnection.with(admin) { connection in
                switch try await connection.client.listCallers() {
                case .ok(let ok):
                    let list = try ok.body.json
                    if admin.json { return try connection.printJSON(list) }
                    print(Table.render(
                        ["ID", "IDENTITY", "ENABLED", "CONTEXT", "GRANTS"],
                        list.items.map {
                            [$0.id, $0.identity, $0.enabled ? "yes" : "no", $0.requireContext ? "required" : "optional", CallerCommand.text($0.grants)]
                        }))
                case .default(let status, let problem): throw connection.fail(status, problem)
                }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one caller.")
        @Argument(help: "The caller id.") var id: String
        @OptionGroup var admin: AdminOptions

        func run() async throws {
            try await AdminConnection.with(admin) { connection in
                try CallerCommand.report(try await CallerCommand.fetch(id, connection), connection)
            }
        }
    }

    struct SetPolicy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "set", abstract: "Change a caller's context policy.")
        @Argument(help: "The caller id.") var id: String
        @Option(help: "true: every operation must present a context; false: a context is optional.") var requireContext: Bool
        @OptionGroup var admin: AdminOptions

        func run() async throws {
            try await AdminConnection.with(admin) { connection in
                let caller = try await CallerCommand.fetch(id, connection)
                switch try await connection.client.updateCaller(
                    path: .init(callerId: caller.id), headers: .init(ifMatch: "\"v\(caller.version)\""),
                    body: .json(.init(requireContext: requireContext)))
                {
                case .ok(let ok): try CallerCommand.report(try ok.body.json, connection)
                case .default(let status, let problem): throw connection.fail(status, problem)
                }
            }
        }
    }

    struct Grant: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add grants to a caller.")
        @Argument(help: "The caller id.") var id: String
        @Option(help: "OPS:TENANTS; repeatable.") var grant: [String]
        @OptionGroup var admin: AdminOptions

        func run() async throws {
            let added = try grant.map(CallerCommand.parse)
            try await AdminConnection.with(admin) { connection in
                let caller = try await CallerCommand.fetch(id, connection)
                try await CallerCommand.update(caller, grants: caller.grants + added, connection)
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Take an operation away from a caller (for one tenant, or for all).")
        @Argument(help: "The caller id.") var id: String
        @Option(help: "The operation to take away.") var operation: String
        @Option(help: "Only for this tenant (grants that name it); default: every grant.") var tenant: String?
        @OptionGroup var admin: AdminOptions

        func run() async throws {
            guard let op = Components.Schemas.KeyOperation(rawValue: operation) else {
                throw ValidationError("--operation must be one of \(Components.Schemas.KeyOperation.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            try await AdminConnection.with(admin) { connection in
                let caller = try await CallerCommand.fetch(id, connection)
                // A grant for every tenant cannot lose one of them: a grant lists tenants, it has no
                // exceptions. Re-sending it unchanged would exit 0 with the operation still allowed.
                if let tenant, caller.grants.contains(where: { $0.operations.contains(op) && $0.tenants.contains("*") }) {
                    throw AdminCLIError(
                        AdminExit.conflict,
                        "caller \(id) has \(op.rawValue) for every tenant (\"*\"), which cannot exclude \(tenant); revoke it without --tenant, then grant it for the tenants that keep it")
                }
                var grants: [Components.Schemas.CallerGrant] = []
                for grant in caller.grants {
                    guard grant.operations.contains(op) else { grants.append(grant); continue }
                    if let tenant {
                        // Only that tenant loses the operation; the grant's other tenants keep it.
                        if grant.tenants.contains(tenant) {
                            let others = grant.tenants.filter { $0 != tenant }
                            if !others.isEmpty { grants.append(.init(operations: grant.operations, tenants: others)) }
                            let rest = grant.operations.filter { $0 != op }
                            if !rest.isEmpty { grants.append(.init(operations: rest, tenants: [tenant])) }
                        } else {
                            grants.append(grant)
                        }
                    } else {
                        let rest = grant.operations.filter { $0 != op }
                        if !rest.isEmpty { grants.append(.init(operations: rest, tenants: grant.tenants)) }
                    }
                }
                try await CallerCommand.update(caller, grants: grants, connection)
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a caller. Its audit records stay.")
        @Argument(help: "The caller id.") var id: String
        @OptionGroup var admin: AdminOptions

        func run() async throws {
            try await AdminConnection.with(admin) { connection in
                let caller = try await CallerCommand.fetch(id, connection)
                switch try await connection.client.deleteCaller(path: .init(callerId: id), headers: .init(ifMatch: "\"v\(caller.version)\"")) {
                case .noContent: if !admin.json { print("Removed caller \(id).") }
                case .default(let status, let problem): throw connection.fail(status, problem)
                }
            }
        }
    }

    /// `OPS:TENANTS` → a grant.
    static func parse(_ text: String) throws -> Components.Schemas.CallerGrant {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2 else { throw ValidationError("--grant takes OPS:TENANTS, e.g. unwrap,wrap:* (got '\(text)')") }
        var operations: [Components.Schemas.KeyOperation] = []
        for name in parts[0].split(separator: ",") {
            guard let op = Components.Schemas.KeyOperation(rawValue: String(name)) else {
                throw ValidationError("unknown operation '\(name)' in --grant; use \(Components.Schemas.KeyOperation.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            operations.append(op)
        }
        let tenants = parts[1].split(separator: ",").map(String.init)
        guard !operations.isEmpty, !tenants.isEmpty else { throw ValidationError("--grant needs operations and tenants: \(text)") }
        return .init(operations: operations, tenants: tenants)
    }

    static func text(_ grants: [Components.Schemas.CallerGrant]) -> String {
        grants.map { "\($0.operations.map(\.rawValue).joined(separator: ",")):\($0.tenants.joined(separator: ","))" }.joined(separator: " ")
    }

    static func fetch(_ id: String, _ connection: AdminConnection) async throws -> Components.Schemas.Caller {
        switch try await connection.client.getCaller(path: .init(callerId: id)) {
        case .ok(let ok): return try ok.body.json
        case .default(let status, let problem): throw connection.fail(status, problem)
        }
    }

    static func update(_ caller: Components.Schemas.Caller, grants: [Components.Schemas.CallerGrant], _ connection: AdminConnection) async throws {
        switch try await connection.client.updateCaller(
            path: .init(callerId: caller.id), headers: .init(ifMatch: "\"v\(caller.version)\""), body: .json(.init(grants: grants)))
        {
        case .ok(let ok): try report(try ok.body.json, connection)
        case .default(let status, let problem): throw connection.fail(status, problem)
        }
    }

    static func report(_ caller: Components.Schemas.Caller, _ connection: AdminConnection) throws {
        if connection.options.json { return try connection.printJSON(caller) }
        print(
            "Caller    \(caller.id)\nIdentity  \(caller.identity)\nEnabled   \(caller.enabled ? "yes" : "no")\n"
                + "Context   \(caller.requireContext ? "required" : "optional")\nGrants    \(text(caller.grants))\nVersion   \(caller.version)")
    }
}
