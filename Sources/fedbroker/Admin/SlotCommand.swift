import AdminAPIModel
import AdminClient
import ArgumentParser
import FedBrokerCore
import Foundation

/// `fedbroker slot …`: SREs' commands on FIC slots, thin clients of the admin API. The writes
/// start a job on the broker and, by default, follow it to its end with its progress.
struct SlotCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "slot",
        abstract: "Add, drain, retire and rotate the application's FIC slots (admin API, role Slots.Operate).",
        discussion: """
            A slot is one federated identity credential of the application: a user-assigned managed identity \
            that the broker exchanges for customer-tenant tokens. add, drain, retire and rotate start a job that \
            a broker replica runs (resumable: a replica that dies hands it to another) and follow it until it ends \
            (--no-wait returns at once; `slot show JOB_ID` follows up). Exit codes: 0 done; 1 the job ran and \
            failed (its message says why and what to do); 2 conflict (another job runs, wrong slot state, 20 slots); \
            3 not found; 4 not authorized; 5 unavailable or --wait-seconds passed; 64 usage error. \
            docs/runbooks/ has the procedures.
            """,
        subcommands: [Add.self, List.self, Show.self, Drain.self, Retire.self, Rotate.self, Jobs.self])

    /// How the writes follow their job.
    struct FollowOptions: ParsableArguments {
        @Flag(name: .long, help: "Return once the job is recorded instead of following it.")
        var noWait = false
        @Option(name: .long, help: "Stop following after this many seconds (the job goes on); exit 5.")
        var waitSeconds: Double = 3 * 3600

        func validate() throws {
            guard waitSeconds.isFinite, waitSeconds > 0, waitSeconds <= 7 * 86_400 else {
                throw ValidationError("--wait-seconds must be a number of seconds between 0 and 604800")
            }
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a FIC for a managed identity in Graph, prove it works, and activate the slot.")
        @Option(name: .customLong("identity"), help: "The user-assigned managed identity's client id (GUID).") var identity: String
        @Option(name: .customLong("principal-id"), help: "Its principal (object) id (GUID): the FIC's subject.") var principalID: String
        @Option(help: "The slot's (and FIC's) name; fic-N by default.") var name: String?
        @OptionGroup var follow: FollowOptions
        @OptionGroup var admin: AdminOptions

        func run() async throws {
            try await AdminConnection.with(admin) { connection in
                let body = Components.Schemas.SlotAdd(identityClientId: identity, principalId: principalID, name: name)
                switch try await connection.client.addSlot(body: .json(body)) {
                case .accepted(let accepted): try await SlotFollow.job(try accepted.body.json, connection, follow)
                case .default(let status, let problem): throw connection.fail(status, problem)
                }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the slots with their state and tenant count.")
        @OptionGroup var admin: AdminOptions

        func run() async throws {
            try await AdminConnection.with(admin) { connection in
                switch try await connection.client.listSlots() {
                case .ok(let ok):
                    let list = try ok.body.json
                    if admin.json { return try connection.printJSON(list) }
                    let rows = list.items.map { [$0.id, $0.state.rawValue, "\($0.tenantCount)", $0.identityClientId, $0.principalId] }
                    print(Table.render(["SLOT", "STATE", "TENANTS", "IDENTITY", "PRINCIPAL"], rows))
                    let counted = list.items.filter { $0.state != .retired }.count
                    print("\(counted) of \(list.limit) federated identity credentials in use")
                case .default(let status, let problem): throw connection.fail(status, problem)
                }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a slot (by name) or a slot job (job_…), following a running job with --follow.")
        @Argument(help: "A slot name or a job id.") var id: String
        @Flag(help: "Follow a running job until it ends.") var follow = false
        @OptionGroup var admin: AdminOptions

        func run() async throws {
            try await AdminConnection.with(admin) { connection in
                if SlotJobID(rawValue: id) != nil {
                    switch try await connection.client.getSlotJob(path: .init(jobId: id)) {
                    case .ok(let ok):
                        var options = FollowOptions()
                        options.noWait = !follow
                        try await SlotFollow.job(try ok.body.json, connection, options)
                    case .default(let status, let problem): throw connection.fail(status, problem)
                    }
                    return
                }
                switch try await connection.client.getSlot(path: .init(slotId: id)) {
                case .ok(let ok):
                    let slot = try ok.body.json
                    if admin.json { return try connection.printJSON(slot) }
                    print(
                        """
                        slot       \(slot.id)
                        state      \(slot.state.rawValue)
                        tenants    \(slot.tenantCount)
                        identity   \(slot.identityClientId)
                        principal  \(slot.principalId)
                        issuer     \(slot.issuer)
                        created    \(slot.createdAt.formatted(.iso8601))
                        updated    \(slot.updatedAt.formatted(.iso8601))
                        """)
                case .default(let status, let problem): throw connection.fail(status, problem)
                }
            }
        }
    }

    struct Drain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop placing tenants on a slot and move each of its tenants, each move proven first.")
        @Argument(help: "The slot to drain.") var slot: String
        @OptionGroup var follow: FollowOptions
        @OptionGroup var admin: AdminOptions

        func run() async throws {
            try await AdminConnection.with(admin) { connection in
                switch try await connection.client.drainSlot(path: .init(slotId: slot)) {
                case .accepted(let accepted): try await SlotFollow.job(try accepted.body.json, connection, follow)
                case .default(let status, let problem): throw connection.fail(status, problem)
                }
            }
        }
    }

    struct Retire: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a drained slot's FIC once no token issued through it can still be valid.")
        @Argument(help: "The slot to retire (draining, with no tenants).") var slot: String
        @OptionGroup var follow: FollowOptions
        @OptionGroup var admin: AdminOptions

        func run() async throws {
            try await AdminConnection.with(admin) { connection in
                switch try await connection.client.retireSlot(path: .init(slotId: slot)) {
                case .accepted(let accepted): try await SlotFollow.job(try accepted.body.json, connection, follow)
                case .default(let status, let problem): throw connection.fail(status, problem)
                }
            }
        }
    }

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Replace a slot's identity with no downtime: add the new one, move every tenant to it, retire the old.")
        @Argument(help: "The slot to rotate.") var slot: String
        @Option(name: .customLong("to-identity"), help: "The new managed identity's client id (GUID).") var toIdentity: String
        @Option(name: .customLong("principal-id"), help: "The new identity's principal (object) id (GUID).") var principalID: String
        @Option(help: "The new slot's name; fic-N by default.") var name: String?
        @OptionGroup var follow: FollowOptions
        @OptionGroup var admin: AdminOptions

        func run() async throws {
            try await AdminConnection.with(admin) { connection in
                let body = Components.Schemas.SlotRotate(identityClientId: toIdentity, principalId: principalID, name: name)
                switch try await connection.client.rotateSlot(path: .init(slotId: slot), body: .json(body)) {
                case .accepted(let accepted): try await SlotFollow.job(try accepted.body.json, connection, follow)
                case .default(let status, let problem): throw connection.fail(status, problem)
                }
            }
        }
    }

    struct Jobs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the newest slot jobs.")
        @Option(help: "How many (1-500).") var limit: Int = 20
        @OptionGroup var admin: AdminOptions

        func run() async throws {
            try await AdminConnection.with(admin) { connection in
                switch try await connection.client.listSlotJobs(query: .init(limit: limit)) {
                case .ok(let ok):
                    let list = try ok.body.json
                    if admin.json { return try connection.printJSON(list) }
                    let rows = list.items.map {
                        [$0.id, $0.kind.rawValue, $0.state.rawValue, $0.step, $0.slotId ?? "-", $0.newSlotId ?? "-", $0.createdAt.formatted(.iso8601)]
                    }
                    print(Table.render(["JOB", "KIND", "STATE", "STEP", "SLOT", "NEW SLOT", "CREATED"], rows))
                case .default(let status, let problem): throw connection.fail(status, problem)
                }
            }
        }
    }
}

/// Follows a job: a progress bar on a terminal, a line per change otherwise, then the outcome.
enum SlotFollow {
    static func job(
        _ first: Components.Schemas.SlotJob, _ connection: AdminConnection, _ options: SlotCommand.FollowOptions
    ) async throws {
        var job = first
        let terminal = isatty(STDERR_FILENO) == 1
        if !connection.options.json {
            FileHandle.standardError.write(Data("job \(job.id): \(job.kind.rawValue) \(describe(job))\n".utf8))
        }
        let until = Date().addingTimeInterval(options.waitSeconds)
        var last = ""
        while job.state == .running, !options.noWait {
            guard Date() < until else {
                throw AdminCLIError(AdminExit.unavailable, "stopped following after \(Int(options.waitSeconds)) s; the job goes on: fedbroker slot show \(job.id) --follow")
            }
            let line = progressLine(job, terminal: terminal)
            if line != last, !connection.options.json {
                FileHandle.standardError.write(Data((terminal ? "\r\u{1B}[K" + line : line + "\n").utf8))
                last = line
            }
            try await Task.sleep(for: .milliseconds(500))
            switch try await connection.client.getSlotJob(path: .init(jobId: job.id)) {
            case .ok(let ok): job = try ok.body.json
            case .default(let status, let problem): throw connection.fail(status, problem)
            }
        }
        if terminal, !last.isEmpty, !connection.options.json { FileHandle.standardError.write(Data("\n".utf8)) }
        if connection.options.json {
            try connection.printJSON(job)
        } else {
            print(summary(job))
        }
        if job.state == .failed {
            throw AdminCLIError(AdminExit.validationFailed, "job \(job.id) failed at \(job.step): \(job.message)")
        }
    }

    static func describe(_ job: Components.Schemas.SlotJob) -> String {
        [job.slotId.map { "slot \($0)" }, job.newSlotId.map { "new slot \($0)" }].compactMap { $0 }.joined(separator: ", ")
    }

    /// `[3/8 move_tenants] ████████░░░░░░░░ 12/25 moved, 0 failed, 13 left`
    static func progressLine(_ job: Components.Schemas.SlotJob, terminal: Bool) -> String {
        let index = (job.steps.firstIndex(of: job.step) ?? 0) + 1
        var line = "[\(index)/\(job.steps.count) \(job.step)]"
        if job.step == "move_tenants", job.progress.total > 0 {
            let done = job.progress.moved + job.progress.failed
            if terminal {
                let width = 24
                let filled = min(width, width * done / max(1, job.progress.total))
                line += " " + String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
            }
            line += " \(done)/\(job.progress.total): \(job.progress.moved) moved, \(job.progress.failed) failed, \(job.progress.left) left"
        } else {
            line += " \(job.message)"
        }
        return String(line.prefix(terminal ? 160 : 400))
    }

    static func summary(_ job: Components.Schemas.SlotJob) -> String {
        var lines = ["job \(job.id) \(job.state.rawValue): \(job.message)"]
        if job.kind == .drain || job.kind == .rotate {
            lines.append("tenants: \(job.progress.moved) moved, \(job.progress.failed) failed, \(job.progress.left) left")
        }
        for failure in job.failures { lines.append("  not moved: \(failure.tenantId): \(failure.reason)") }
        return lines.joined(separator: "\n")
    }
}
