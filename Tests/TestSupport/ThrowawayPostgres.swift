import Foundation

/// A PostgreSQL server of a test's own, which the test may stop: for what a shared server
/// cannot show (the broker with its store down). Started from Debian's binaries as scripts/test.sh
/// does (initdb refuses root, so as `postgres` when root), on a free loopback port, data in a
/// temporary directory removed at `stop`.
public final class ThrowawayPostgres: @unchecked Sendable {
    public let port: Int
    public let directory: URL
    private let bin: URL

    public var url: String { "postgres://postgres@127.0.0.1:\(port)/postgres?sslmode=disable" }

    /// Why a test that needs one is skipped where none can be started.
    public struct Unavailable: Error, CustomStringConvertible {
        public var description: String
    }

    /// The newest /usr/lib/postgresql/*/bin with initdb, or nil.
    public static var binaries: URL? {
        let root = URL(fileURLWithPath: "/usr/lib/postgresql")
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        return versions.sorted { $0.compare($1, options: .numeric) == .orderedAscending }.reversed()
            .map { root.appendingPathComponent($0).appendingPathComponent("bin") }
            .first { FileManager.default.isExecutableFile(atPath: $0.appendingPathComponent("initdb").path) }
    }

    public init() throws {
        guard let bin = Self.binaries else { throw Unavailable(description: "no PostgreSQL server binaries under /usr/lib/postgresql") }
        self.bin = bin
        self.port = try Self.freePort()
        directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("fedbroker-pg-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        if getuid() == 0 { try Self.run("/bin/chown", ["postgres:postgres", directory.path]) }
        try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: directory.path)
        try asPostgres("initdb", ["-D", directory.path, "-A", "trust", "-U", "postgres", "--no-sync"])
        try start()
    }

    /// Starts the server, and again after `stop()`. A restart right after an immediate stop can
    /// find the old server's last backends still exiting (their shared memory or port still held);
    /// that passes, so the start is tried again for up to 30 s. A failure names the log's end.
    public func start() throws {
        let log = directory.appendingPathComponent("log")
        let give = Date().addingTimeInterval(30)
        while true {
            do {
                try asPostgres(
                    "pg_ctl",
                    [
                        "-D", directory.path, "-l", log.path, "-w", "-t", "30", "-o",
                        "-p \(port) -k \(directory.path) -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100", "start",
                    ])
                return
            } catch let error as Unavailable {
                let tail = ((try? String(contentsOf: log, encoding: .utf8)) ?? "").split(separator: "\n").suffix(5).joined(separator: "\n")
                guard Date() < give else { throw Unavailable(description: "\(error.description)\nlog:\n\(tail)") }
                Thread.sleep(forTimeInterval: 0.5)  // an external process winding down; nothing to await
            }
        }
    }

    /// Stops the server at once (no checkpoint), like a crash or a failover gap.
    public func stop() throws {
        try asPostgres("pg_ctl", ["-D", directory.path, "-m", "immediate", "-w", "stop"])
    }

    /// Stops the server if it runs and removes its data.
    public func destroy() {
        try? stop()
        try? FileManager.default.removeItem(at: directory)
    }

    private func asPostgres(_ tool: String, _ arguments: [String]) throws {
        let path = bin.appendingPathComponent(tool).path
        if getuid() == 0 {
            try Self.run("/usr/sbin/runuser", ["-u", "postgres", "--", path] + arguments)
        } else {
            try Self.run(path, arguments)
        }
    }

    /// Runs a tool to its end. posix_spawn and waitpid rather than Foundation's `Process`: its
    /// `waitUntilExit` missed the exit of `runuser` here (the child stayed a zombie, the test hung).
    private static func run(_ path: String, _ arguments: [String]) throws {
        let errorsPath = NSTemporaryDirectory() + "fedbroker-pg-run-\(UUID().uuidString)"
        defer { unlink(errorsPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, errorsPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, path, &actions, nil, argv, environ)
        guard spawned == 0 else {
            throw Unavailable(description: "\(path) could not be started: \(String(cString: strerror(spawned)))")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw Unavailable(description: "waitpid for \(path) failed: \(String(cString: strerror(errno)))") }
        }
        // WIFEXITED and WEXITSTATUS, which Swift does not import.
        let exited = status & 0x7f == 0
        let code = (status >> 8) & 0xff
        guard exited, code == 0 else {
            let text = ((try? String(contentsOfFile: errorsPath, encoding: .utf8)) ?? "").prefix(2000)
            throw Unavailable(
                description: "\(path) \(arguments.joined(separator: " ")) \(exited ? "exited \(code)" : "was killed by signal \(status & 0x7f)"): \(text)")
        }
    }

    private static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Unavailable(description: "socket() failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw Unavailable(description: "bind() failed") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
