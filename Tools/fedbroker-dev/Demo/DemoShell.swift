import Foundation

/// Runs the production `fedbroker` binary's CLI as a child process, the way staff and SREs run
/// it, and shows what it prints as it prints it (a slot job's progress lines arrive live).
struct DemoShell: Sendable {
    struct Result: Sendable {
        var status: Int32
        var output: String
    }

    let executable: URL
    let environment: [String: String]

    /// Runs `fedbroker ARGUMENTS`, echoing the command and each output line indented.
    ///
    /// The child's output is read on a thread of its own, not on the cooperative pool: a slot job
    /// followed for seconds must not take one of the two threads the demo's traffic runs on.
    func run(_ arguments: [String], echo: Bool = true, display: String? = nil) async throws -> Result {
        if echo { DemoOutput.line("    $ fedbroker \(display ?? arguments.joined(separator: " "))") }
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return await withCheckedContinuation { continuation in
            let thread = Thread {
                var collected = Data()
                var pending = Data()
                let handle = pipe.fileHandleForReading
                while true {
                    let chunk = handle.availableData
                    if chunk.isEmpty { break }
                    collected.append(chunk)
                    pending.append(chunk)
                    while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                        let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                        pending.removeSubrange(pending.startIndex...newline)
                        if echo { DemoOutput.line("      " + line) }
                    }
                }
                if echo, !pending.isEmpty { DemoOutput.line("      " + String(decoding: pending, as: UTF8.self)) }
                process.waitUntilExit()
                continuation.resume(returning: Result(status: process.terminationStatus, output: String(decoding: collected, as: UTF8.self)))
            }
            thread.start()
        }
    }

    /// Runs a command that prints JSON (`--json`) without echoing it, and parses the document.
    func json(_ arguments: [String]) async throws -> Any {
        let result = try await run(arguments + ["--json"], echo: false)
        guard result.status == 0 else {
            throw DemoFailure("`fedbroker \(arguments.joined(separator: " "))` exited \(result.status): \(result.output.suffix(600))")
        }
        guard let document = try? JSONSerialization.jsonObject(with: Data(result.output.utf8)) else {
            throw DemoFailure("`fedbroker \(arguments.joined(separator: " ")) --json` did not print JSON: \(result.output.prefix(300))")
        }
        return document
    }
}

/// What the demo prints, one whole line per write so lines from the CLI's reader thread and the
/// demo's own never interleave mid-line.
enum DemoOutput {
    static func line(_ text: String) {
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }
}

/// A step that did not do what it said; the demo stops and exits 1 with this message.
struct DemoFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
