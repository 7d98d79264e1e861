import AzureEmulator
import FedBrokerCore
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The test run's log capture and secret ledger, read by scripts/check-log-secrets.py.
///
/// Why: invariant 3 says no token, assertion or key material is ever logged, and a unit test of
/// one log call proves nothing about the others. So when `FEDBROKER_TEST_LOG_DIR` is set (as
/// scripts/test.sh does), every log line of the test process is written there at the level the
/// logger asks for, with its metadata, and every secret the tests meet is written to a ledger
/// beside it; `scripts/check-log-secrets.py` then looks for each secret in each line. Without
/// the variable nothing is captured and the worlds log warnings to standard error, as before.
///
/// The worlds (end-to-end, admin API, Azure clients) take their logger from `logger(label:)`, at
/// trace level, and hand it to the emulator, `BrokerApp` and `BrokerService`; loggers that
/// libraries make for themselves with `Logger(label:)` are captured too, at info.
public enum TestLogging {
    /// The capture directory, if this run captures.
    public static let directory: String? = {
        guard let dir = ProcessInfo.processInfo.environment["FEDBROKER_TEST_LOG_DIR"], !dir.isEmpty else { return nil }
        return dir
    }()

    static let sink: LineFile? = directory.flatMap { LineFile(path: "\($0)/log-\(getpid()).log") }

    /// Where secrets are written; nil when this run does not capture.
    public static let ledger: SecretLedger? = directory.flatMap { dir in
        LineFile(path: "\(dir)/secrets-\(getpid()).tsv").map(SecretLedger.init)
    }

    /// Installs the capture as the process's logging backend, once, before the first captured
    /// logger exists (later `Logger(label:)` calls in libraries then write to it as well).
    private static let bootstrapped: Bool = {
        guard let sink else { return false }
        LoggingSystem.bootstrap { label in CaptureLogHandler(label: label, sink: sink, logLevel: .info) }
        return true
    }()

    /// The logger a test world gives the emulator and the broker: every line at trace level
    /// into the capture when capturing, `uncapturedLevel` and up to standard error otherwise.
    public static func logger(label: String, uncapturedLevel: Logger.Level = .warning) -> Logger {
        guard bootstrapped, let sink else {
            var logger = Logger(label: label)
            logger.logLevel = uncapturedLevel
            return logger
        }
        return Logger(label: label) { CaptureLogHandler(label: $0, sink: sink, logLevel: .trace) }
    }

    /// For `AzureEmulator.Configuration.secretObserver`: what the emulator signs and wraps goes
    /// to the ledger. nil when not capturing, so the emulator does no extra work.
    public static var secretObserver: (@Sendable (IssuedSecret) -> Void)? {
        guard let ledger else { return nil }
        return { secret in
            switch secret {
            case .token(let token): ledger.record(token: token, kind: "emulator-token")
            case .keyMaterial(let bytes): ledger.record(bytes: bytes, kind: "vault-key-material")
            }
        }
    }
}

/// A file of lines appended under a lock, fully buffered: the process's normal exit flushes it.
final class LineFile: @unchecked Sendable {
    private let lock = NSLock()
    private let file: UnsafeMutablePointer<FILE>

    init?(path: String) {
        guard let file = fopen(path, "a") else { return nil }
        setvbuf(file, nil, _IOFBF, 1 << 16)
        self.file = file
    }

    func write(_ line: String) {
        lock.lock()
        defer { lock.unlock() }
        fputs(line, file)
        fputc(0x0A, file)
    }

    func flush() {
        lock.lock()
        defer { lock.unlock() }
        fflush(file)
    }
}

/// Writes every log event as one line: time, level, label, metadata (sorted), message, source.
/// Line breaks inside are escaped so that one event is one line for the checker.
struct CaptureLogHandler: LogHandler {
    let label: String
    let sink: LineFile
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    init(label: String, sink: LineFile, logLevel: Logger.Level) {
        self.label = label
        self.sink = sink
        self.logLevel = logLevel
        self.metadataProvider = LoggingSystem.metadataProvider
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { _, new in new } }
        if let explicit = event.metadata { all.merge(explicit) { _, new in new } }
        var line = "\(Date().timeIntervalSince1970) \(event.level) \(label):"
        for (key, value) in all.sorted(by: { $0.key < $1.key }) { line += " \(key)=\(value)" }
        line += " \(event.message)"
        if let error = event.error { line += " error=\(String(reflecting: error))" }
        line += " [\(event.source) \(event.file):\(event.line)]"
        sink.write(line.replacingOccurrences(of: "\r", with: "\\r").replacingOccurrences(of: "\n", with: "\\n"))
    }
}

/// The secrets a test run met, one form per line (`kind<TAB>form`), for
/// scripts/check-log-secrets.py. A byte string is written in the forms a careless log line would
/// show it in: hex (both cases), base64 and base64url; a token whole and by its signature, so a
/// token cut short after its signature is still found.
public final class SecretLedger: Sendable {
    private let file: LineFile
    private let seen = Mutex<Set<String>>([])

    init(file: LineFile) { self.file = file }

    /// The shortest form worth looking for: shorter strings turn up in logs by chance.
    public static let minimumLength = 16

    public func record(token: String, kind: String) {
        var forms = [token]
        if let signature = token.split(separator: ".", omittingEmptySubsequences: false).last, signature.count >= 32 {
            forms.append(String(signature))
        }
        write(forms, kind: kind)
    }

    public func record(bytes: [UInt8], kind: String) {
        guard !bytes.isEmpty else { return }
        let hex = bytes.map { String(format: "%02x", $0) }.joined()
        let base64 = Data(bytes).base64EncodedString()
        var forms = [hex, hex.uppercased(), base64, Base64URL.encode(bytes)]
        // Text a test chose as a secret ("a secret key material") could be logged as itself.
        if bytes.allSatisfy({ (0x20...0x7E).contains($0) }) { forms.append(String(decoding: bytes, as: UTF8.self)) }
        write(forms, kind: kind)
    }

    /// A blob: whole, and its RSA-wrapped envelope key and sealed data key on their own, since
    /// those are what a log line about the vault call or the seal would show.
    public func record(blob: [UInt8], kind: String) {
        record(bytes: blob, kind: kind)
        if let envelope = try? WrappedKeyEnvelope(parsing: blob) {
            record(bytes: envelope.wrappedEnvelopeKey, kind: "\(kind)-wrapped-envelope-key")
            record(bytes: envelope.sealedDataKey, kind: "\(kind)-sealed-data-key")
        }
    }

    private func write(_ forms: [String], kind: String) {
        let fresh = seen.withLock { seen in forms.filter { $0.count >= Self.minimumLength && seen.insert($0).inserted } }
        for form in fresh { file.write("\(kind)\t\(form)") }
    }
}
