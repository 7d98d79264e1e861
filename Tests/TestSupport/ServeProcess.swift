import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A real `fedbroker serve` child process (framed and admin listeners on loopback, ports chosen
/// by the kernel), for the tests that need separate replicas and SIGKILL, and for the demo, which
/// runs the production binary exactly as deployed.
public final class ServeProcess: @unchecked Sendable {
    public let process: Process
    public let framedPort: Int
    public let adminPort: Int
    public let logURL: URL

    private init(process: Process, framedPort: Int, adminPort: Int, logURL: URL) {
        self.process = process
        self.framedPort = framedPort
        self.adminPort = adminPort
        self.logURL = logURL
    }

    /// Starts `fedbroker serve --config CONFIG` and waits (at most 90 s) until both listeners announced their ports.
    ///
    /// - Parameters:
    ///   - executable: the `fedbroker` binary; nil: `FedBrokerBinary.url()`.
    ///   - environment: the child's environment; nil: this process's.
    public static func start(
        config: URL, name: String, directory: URL, executable: URL? = nil, environment: [String: String]? = nil
    ) async throws -> ServeProcess {
        let process = Process()
        process.executableURL = try executable ?? FedBrokerBinary.url()
        if let environment { process.environment = environment }
        process.arguments = ["serve", "--config", config.path]
        let outURL = directory.appendingPathComponent("\(name)-\(UUID().uuidString.prefix(6)).out")
        let logURL = directory.appendingPathComponent("\(name)-\(UUID().uuidString.prefix(6)).log")
        FileManager.default.createFile(atPath: outURL.path, contents: nil)
        FileManager.default.createFile(atPath: logURL.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: outURL)
        process.standardError = try FileHandle(forWritingTo: logURL)
        try process.run()
        let until = Date().addingTimeInterval(90)
        while Date() < until {
            let out = (try? String(contentsOf: outURL, encoding: .utf8)) ?? ""
            if let framed = port(after: "serving on", in: out), let admin = port(after: "admin API on", in: out) {
                return ServeProcess(process: process, framedPort: framed, adminPort: admin, logURL: logURL)
            }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        let log = (try? String(contentsOf: logURL, encoding: .utf8)) ?? ""
        throw FixtureError("fedbroker serve (\(name)) did not start: \(log.suffix(2000))")
    }

    public static func port(after marker: String, in text: String) -> Int? {
        guard let line = text.split(separator: "\n").first(where: { $0.contains(marker) }),
            let hostPort = line.split(separator: " ").first(where: { $0.contains(":") && $0.first?.isNumber == true })
        else { return nil }
        return Int(hostPort.split(separator: ":").last ?? "")
    }

    /// Waits (at most `seconds`) until the process's log holds `text`.
    public func waitForLog(_ text: String, seconds: Double = 60) async throws {
        let until = Date().addingTimeInterval(seconds)
        while Date() < until {
            if ((try? String(contentsOf: logURL, encoding: .utf8)) ?? "").contains(text) { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw FixtureError("the replica never logged \(text)")
    }

    /// SIGKILL: no graceful anything.
    public func killHard() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// SIGTERM and wait for the exit status.
    public func stop() -> Int32 {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        return process.terminationStatus
    }
}
