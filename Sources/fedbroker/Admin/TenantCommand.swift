import AdminAPIModel
import AdminClient
import ArgumentParser
import Foundation

/// `fedbroker tenant …`: onboarding staff's commands, thin clients of the admin API.
struct TenantCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tenant",
        abstract: "Register, validate, activate and manage customer tenants (admin API).",
        discussion: """
            Every subcommand calls the admin API (--admin-url and a staff token, or --admin-socket). \
            Exit codes: 0 done; 1 the validation ran and failed; 2 conflict (409, 412, 428); 3 not found; \
            4 not authenticated or not authorized; 5 unavailable; 6 aborted at the confirmation prompt; \
            64 usage error or input refused (400, 413, 422). docs/onboarding.md walks through the flow.
            """,
        subcommands: [
            Register.self, List.self, Show.self, Validate.self, Activate.self, Suspend.self, Restore.self, Offboard.self,
            SetKey.self,
        ])

    struct Register: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Register a customer's key; prints what to send the customer's admin.")
        @Option(help: "The customer's display name.") var name: String
        @Option(help: "Where the customer's data lives (us, europe, uk, …).") var geo: String
        @Option(help: "The customer's Entra tenant id (GUID).") var entraTenant: String
        @Option(help: "The customer's vault, https://NAME.vault.azure.net.") var vaultUri: String
        @Option(help: "The key's name in that vault.") var key: String
        @Option(help: "Makes a retried register return the first answer's tenant.") var idempotencyKey: String?
        @OptionGroup var admin: AdminOptions

        func run() async throws {
            try await AdminConnection.with(admin) { connection in
                let body = Components.Schemas.TenantRegistration(
                    displayName: name, geo: geo,
                    providerConfig: .init(_type: .azure, tenantId: entraTenant, vaultUri: vaultUri, keyName: key))
                switch try await connection.client.registerTenant(headers: .init(idempotencyKey: idempotencyKey), body: .json(body)) {
                case .created(let created):
                    let tenant = try created.body.json
                    if admin.json { return try connection.printJSON(tenant) }
                    print(TenantText.detail(tenant))
                    print("")
                    print(TenantText.handOver(tenant))
                case .default(let status, let problem): throw connection.fail(status, problem)
                }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tenants, filtered by state and geo.")
        @Option(help: "registered, validated, active, access_lost, suspended or offboarded.") var state: String?
        @Option(help: "Only this geo.") var geo: String?
        @Option(help: "Tenants per page (1-500).") var limit: Int = 100
        @Flag(help: "Follow every page, not just the first.") var all = false
        @OptionGroup var admin: AdminOptions

        func validate() throws {
            if let state, Components.Schemas.TenantState(rawValue: state) == nil {
                throw ValidationError("--state must be one of \(Components.Schemas.TenantState.allCases.map(\.rawValue).joined(separator: ", "))")
            }
        }

        func run() async throws {
            try await AdminConnection.with(admin) { connection in
                var cursor: String?
                var tenants: [Components.Schemas.Tenant] = []
                repeat {
                    let query = Operations.ListTenants.Input.Query(
                        state: state.flatMap(Components.Schemas.TenantState.init(rawValue:)), geo: geo, cursor: cursor, limit: limit)
                    switch try await connection.client.listTenants(query: query) {
                    case .ok(let ok):
                        let page = try ok.body.json
                        tenants += page.items
                        cursor = page.nextCursor
                    case .default(let status, let problem): throw connection.fail(status, problem)
                    }
                } while all && cursor != nil
                if admin.json { return try connection.printJSON(Components.Schemas.TenantPage(items: tenants, nextCursor: cursor)) }
                print(Table.render(
                    ["ID", "NAME", "STATE", "GEO", "SLOT", "KEY"],
                    tenants.map { [$0.id, $0.displayName, $0.state.rawValue, $0.geo, $0.slotId ?? "-", "\($0.providerConfig.vaultUri)/keys/\($0.providerConfig.keyName)"] }))
                if let cursor, !all { print("(more: --all, or the next page's cursor \(cursor))") }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one tenant, its last validation and what the customer must do.")
        @Argument(help: "The tenant id (tnt_…).") var id: String
        @OptionGroup var admin: AdminOptions

        func run() async throws {
            try await AdminConnection.with(admin) { connection in
                let tenant = try await TenantCommand.fetch(id, connection)
                if admin.json { return try connection.printJSON(tenant) }
                print(TenantText.detail(tenant))
                if let validation = tenant.lastValidation { print(""); print(TenantText.validation(validation)) }
            }
        }
    }

    struct Validate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Prove the registered key works: consent, the vault's tenant, the key's properties, the binding tag, a round trip.",
            discussion: "Exit 0 when every step passed (the tenant is then validated), 1 when one failed: the output says who must act and how.")
        @Argument(help: "The tenant id.") var id: String
        @OptionGroup var admin: AdminOptions

        func run() async throws {
            try await AdminConnection.with(admin) { connection in
                let outcome: Components.Schemas.ValidationOutcome
                switch try await connection.client.validateTenant(path: .init(tenantId: id)) {
                case .ok(let ok): outcome = try ok.body.json
                case .default(let status, let problem): throw connection.fail(status, problem)
                }
                if admin.json { try connection.printJSON(outcome) } else {
                    print("Validating \(outcome.tenant.id) (\(outcome.tenant.displayName)): \(outcome.tenant.providerConfig.vaultUri)/keys/\(outcome.tenant.providerConfig.keyName) in tenant \(outcome.tenant.providerConfig.tenantId)")
                    print(TenantText.validation(outcome.validation))
                    print("State: \(outcome.tenant.state.rawValue)")
                }
                if !outcome.validation.succeeded { throw ExitCode(AdminExit.validationFailed) }
            }
        }
    }

    struct Activate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start serving a validated tenant. Locks its key for good: this cannot be undone.")
        @Argument(help: "The tenant id.") var id: String
        @Flag(help: "Do not ask for confirmation.") var yes = false
        @OptionGroup var admin: AdminOptions

        func run() async throws {
            try await AdminConnection.with(admin) { connection in
                let tenant = try await TenantCommand.fetch(id, connection)
                if !yes {
                    try TenantCommand.confirm(
                        "Activating \(tenant.id) (\(tenant.displayName)) locks its key \(tenant.providerConfig.vaultUri)/keys/\(tenant.providerConfig.keyName) for good. This cannot be undone.")
                }
                switch try await connection.client.activateTenant(path: .init(tenantId: id), headers: .init(ifMatch: TenantText.etag(tenant))) {
                case .ok(let ok):
                    let outcome = try ok.body.json
                    if admin.json { return try connection.printJSON(outcome) }
                    print(outcome.notice)
                case .default(let status, let problem): throw connection.fail(status, problem)
                }
            }
        }
    }

    struct Suspend: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop serving a tenant, with a reason (state suspended; only restore lifts it).")
        @Argument(help: "The tenant id.") var id: String
        @Option(help: "Why: recorded with the tenant and in the audit trail.") var reason: String
        @OptionGroup var admin: AdminOptions

        func run() async throws {
            try await AdminConnection.with(admin) { connection in
                let tenant = try await TenantCommand.fetch(id, connection)
                switch try await connection.client.suspendTenant(
                    path: .init(tenantId: id), headers: .init(ifMatch: TenantText.etag(tenant)), body: .json(.init(reason: reason)))
                {
                case .ok(let ok): try TenantCommand.report(try ok.body.json, connection)
                case .default(let status, let problem): throw connection.fail(status, problem)
                }
            }
        }
    }

    struct Restore: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Validate again, then serve a suspended or access_lost tenant again.")
        @Argument(help: "The tenant id.") var id: String
        @OptionGroup var admin: AdminOptions

        func run() async throws {
            try await AdminConnection.with(admin) { connection in
                let tenant = try await TenantCommand.fetch(id, connection)
                switch try await connection.client.restoreTenant(path: .init(tenantId: id), headers: .init(ifMatch: TenantText.etag(tenant))) {
                case .ok(let ok):
                    let outcome = try ok.body.json
                    if admin.json { try connection.printJSON(outcome) } else {
                        print(TenantText.validation(outcome.validation))
                        print("State: \(outcome.tenant.state.rawValue)")
                    }
                    if !outcome.validation.succeeded { throw ExitCode(AdminExit.validationFailed) }
                case .default(let status, let problem): throw connection.fail(status, problem)
                }
            }
        }
    }

    struct Offboard: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Offboard a tenant for good: never served again; the record stays for the audit.")
        @Argument(help: "The tenant id.") var id: String
        @Flag(help: "Do not ask for confirmation.") var yes = false
        @OptionGroup var admin: AdminOptions

        func run() async throws {
            try await AdminConnection.with(admin) { connection in
                let tenant = try await TenantCommand.fetch(id, connection)
                if !yes { try TenantCommand.confirm("Offboarding \(tenant.id) (\(tenant.displayName)) stops its service for good.") }
                switch try await connection.client.offboardTenant(path: .init(tenantId: id), headers: .init(ifMatch: TenantText.etag(tenant))) {
                case .ok(let ok): try TenantCommand.report(try ok.body.json, connection)
                case .default(let status, let problem): throw connection.fail(status, problem)
                }
            }
        }
    }

    struct SetKey: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-key", abstract: "Change the vault or key of a tenant that was never activated.")
        @Argument(help: "The tenant id.") var id: String
        @Option(help: "The new vault URL.") var vaultUri: String
        @Option(help: "The new key name.") var key: String
        @OptionGroup var admin: AdminOptions

        func run() async throws {
            try await AdminConnection.with(admin) { connection in
                let tenant = try await TenantCommand.fetch(id, connection)
                switch try await connection.client.setTenantKey(
                    path: .init(tenantId: id), headers: .init(ifMatch: TenantText.etag(tenant)),
                    body: .json(.init(vaultUri: vaultUri, keyName: key)))
                {
                case .ok(let ok): try TenantCommand.report(try ok.body.json, connection)
                case .default(let status, let problem): throw connection.fail(status, problem)
                }
            }
        }
    }

    static func fetch(_ id: String, _ connection: AdminConnection) async throws -> Components.Schemas.Tenant {
        switch try await connection.client.getTenant(path: .init(tenantId: id)) {
        case .ok(let ok): return try ok.body.json
        case .default(let status, let problem): throw connection.fail(status, problem)
        }
    }

    static func report(_ tenant: Components.Schemas.Tenant, _ connection: AdminConnection) throws {
        if connection.options.json { return try connection.printJSON(tenant) }
        print(TenantText.detail(tenant))
    }

    /// Asks on the terminal; anything but "yes" (or no terminal input at all) aborts.
    static func confirm(_ warning: String) throws {
        print(warning)
        print("Type yes to go on: ", terminator: "")
        guard readLine()?.trimmingCharacters(in: .whitespaces).lowercased() == "yes" else {
            throw AdminCLIError(AdminExit.aborted, "aborted; nothing was changed (pass --yes to skip this question)").exit()
        }
    }
}

/// How tenants read on a terminal.
enum TenantText {
    static func etag(_ tenant: Components.Schemas.Tenant) -> String { "\"v\(tenant.version)\"" }

    static func detail(_ t: Components.Schemas.Tenant) -> String {
        var lines = [
            "Tenant      \(t.id)  (\(t.displayName), \(t.geo))",
            "State       \(t.state.rawValue)" + (t.keyLocked ? "  (key locked)" : "") + (t.suspensionReason.map { "  reason: \($0)" } ?? ""),
            "Customer    Entra tenant \(t.providerConfig.tenantId)",
            "Key         \(t.providerConfig.vaultUri)/keys/\(t.providerConfig.keyName)",
            "FIC slot    \(t.slotId ?? "-")",
            "Binding     \(t.binding.tagName)=\(t.binding.tagValue)",
            "Version     \(t.version)",
        ]
        if let v = t.lastValidation {
            lines.append("Validated   \(v.succeeded ? "passed" : "FAILED") at \(ISO8601DateFormatter().string(from: v.validatedAt))")
        }
        return lines.joined(separator: "\n")
    }

    static func handOver(_ t: Components.Schemas.Tenant) -> String {
        """
        Send the customer's Azure admin (docs/customer-guide.md):
          1. Consent to \(t.customer.applicationDisplayName) (client id \(t.customer.applicationClientId)):
             \(t.customer.consentUrl)
          2. Grant "\(t.customer.roleName)" on the key:
             \(t.customer.roleCommand ?? "-")
          3. Tag the key to prove it is theirs:
             \(t.customer.tagCommand)
        Then: fedbroker tenant validate \(t.id)
        """
    }

    static func validation(_ v: Components.Schemas.ValidationResult) -> String {
        var lines = StepsText.render(v.steps.map {
            .init(
                name: $0.name, ok: $0.ok, milliseconds: $0.milliseconds, detail: $0.detail, code: $0.code,
                responsible: $0.responsible?.rawValue, remedy: $0.remediation)
        })
        lines.append(v.succeeded ? "Result: validated." : "Result: FAILED.")
        return lines.joined(separator: "\n")
    }
}
