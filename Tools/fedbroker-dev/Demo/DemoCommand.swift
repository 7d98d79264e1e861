import ArgumentParser
import AsyncHTTPClient
import AzureEmulator
import Foundation
import Logging
import NIOSSL

/// `fedbroker-dev demo`: the product's story, end to end, on one machine. The emulator runs in
/// this process; the broker is the production `fedbroker serve`, a child process started from a
/// configuration file; staff and SREs act through the production CLI (which calls the admin
/// API); the internal service is the client library over mTLS. Exit 0 only when every step did
/// what it said.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run fedbroker end to end against the Azure emulator: slots, onboarding, traffic, a disabled key, a rotation.",
        discussion: """
            Starts the emulator and `fedbroker serve` (SQLite in the work directory, mTLS with certificates \
            generated there), then: an SRE adds two FIC slots; onboarding registers two customers, whose admins \
            (played through the emulator's control API) consent, grant the role and tag the key until validation \
            passes, and activates them; an internal service generates and unwraps data keys; customer 2 disables \
            the key and the broker refuses within its bound, then serves again once it is enabled; an SRE rotates \
            slot fic-1 while traffic runs, and no request fails. Prints a summary and where the audit trail is.

            Exit status: 0 when every step did what it said, 1 when one did not (the message says which).
            """
    )

    @Flag(name: .long, help: "Leave the emulator and the broker running at the end and print the environment to source for the CLI; Ctrl-C stops them.")
    var keepRunning = false

    @Option(name: .long, help: "Directory for the certificates, the broker's store, its audit journal and logs (default: a new directory under /tmp).")
    var workDir: String?

    @Option(name: .long, help: "The production fedbroker binary to run (default: the one built beside fedbroker-dev).")
    var fedbroker: String?

    func run() async throws {
        // The emulator in this process logs errors only: the story is on standard output.
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .error
            return handler
        }
        let binary = try Self.locate(fedbroker)
        let work = try Self.workDirectory(workDir)
        var emulatorConfiguration = AzureEmulator.Configuration()
        // A new FIC takes a moment to work, as in Entra: the slot jobs show their retries.
        emulatorConfiguration.settings.ficPropagationSeconds = 1
        do {
            try await AzureEmulator.withRunning(configuration: emulatorConfiguration, logger: Logger(label: "fedbroker.demo.emulator")) {
                emulator, endpoints in
                let scenario = try await DemoScenario.seed(into: emulator.state)
                // One client for the control API (plain HTTP) and the admin API's /metrics (our CA).
                var tls = TLSConfiguration.makeClientConfiguration()
                tls.additionalTrustRoots = [.file(DemoStory.Files(work).ca.path)]
                let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: tls))
                let outcome: Result<Void, any Error>
                do {
                    let story = try DemoStory(
                        binary: binary, work: work, endpoints: endpoints, emulatorCAPEM: emulator.pki.caCertificatePEM,
                        scenario: scenario, control: DemoControlAPI(baseURL: endpoints.control, http: http))
                    try await story.play(adminHTTP: http, keepRunning: keepRunning)
                    outcome = .success(())
                } catch {
                    outcome = .failure(error)
                }
                try? await http.shutdown()
                try outcome.get()
            }
        } catch let failure as DemoFailure {
            DemoOutput.line("")
            DemoOutput.line("DEMO FAILED: \(failure)")
            DemoOutput.line("Logs and state are in \(work.path).")
            throw ExitCode(1)
        }
    }

    /// The production binary: `--fedbroker`, else `fedbroker` beside this executable (where
    /// `swift build` puts both, since fedbroker-dev depends on it).
    static func locate(_ option: String?) throws -> URL {
        if let option {
            guard FileManager.default.isExecutableFile(atPath: option) else { throw ValidationError("--fedbroker \(option) is not an executable file") }
            return URL(fileURLWithPath: option)
        }
        let selfPath = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let candidate = URL(fileURLWithPath: selfPath).deletingLastPathComponent().appendingPathComponent("fedbroker")
        guard FileManager.default.isExecutableFile(atPath: candidate.path) else {
            throw ValidationError("no fedbroker binary at \(candidate.path): build it (swift build --product fedbroker) or give --fedbroker PATH")
        }
        return candidate
    }

    static func workDirectory(_ option: String?) throws -> URL {
        if let option {
            try FileManager.default.createDirectory(atPath: option, withIntermediateDirectories: true)
            return URL(fileURLWithPath: option, isDirectory: true).standardizedFileURL
        }
        var template = Array("/tmp/fedbroker-demo-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer -> UnsafeMutablePointer<CChar>? in
            guard let base = buffer.baseAddress else { return nil }
            return mkdtemp(base)
        }
        guard let made else {
            throw ValidationError("cannot create a work directory under /tmp (errno \(errno))")
        }
        return URL(fileURLWithPath: String(cString: made), isDirectory: true)
    }
}
